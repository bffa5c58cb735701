"""The export folder's ``README.md``: a Hugging Face-style model card, generated from the exported artifacts.

YAML front matter (the Hub's model-card metadata: ``license``, ``library_name``, ``tags``, ``datasets`` where
the data is a known Hub dataset, ``pipeline_tag`` for an unconditional model, and a ``model-index`` whose metric
values are exactly those of the evaluate stage's ``metrics.json``, each naming the feature extractor), then:
the model, the teacher (handle and content sha256 from the teacher shards' manifest), the data counts, the
evaluation table (metrics only, one row per metric, student and teacher side by side, the protocol named),
the compression vs the teacher, the files with their parity/size (``parity.json``), the run's params, how to
load it, the browser page, and the known limitations. Nothing is invented: what was not measured or recorded is
left out or said to be unknown.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from tinygan import classes as imagenet
from tinygan.teacher import PUBLISHED

IMAGENET_HUB_ID = "ILSVRC/imagenet-1k"
# metrics.json key (student; "teacher_" + key for the teacher) -> (Hub metric type, row label, better, protocol)
METRICS = {
    "is": ("inception_score", "IS", "higher", "class probabilities of the generated images, 10 splits (± std)"),
    "fid": ("fid", "FID", "lower", "Fréchet distance to the real images' overall feature statistics"),
    "intra_fid": ("intra-fid", "intra-FID", "lower", "mean over the classes of each class's FID"),
    "kid": ("kid", "KID", "lower", "kernel inception distance to the real images (unbiased; can be < 0)"),
}
NOTE_KEYS = ("teacher_note", "reference_note", "fid_curve_note")


def dataset_info(train_dir: str, layout: str, teacher: str) -> dict:
    """What the real images were: ``{"hub_id": Hub dataset id or None, "name": words}``. ImageNet-1k (Hub id)
    only for the ImageNet layout with a published ImageNet teacher; any other data is named by its path."""
    if layout == "imagenet" and str(teacher).rstrip("/") in PUBLISHED:
        return {"hub_id": IMAGENET_HUB_ID, "name": f"ImageNet-1k (ILSVRC2012) train images from `{train_dir}`"}
    return {"hub_id": None, "name": f"the images of `{train_dir}` ({layout} layout)"}


def model_name(config: dict) -> str:
    return f"tinygan-{config['variant']}-ch{config['ch']}-{config['resolution']}px"


def front_matter(config: dict, metrics: dict | None, dataset: dict | None) -> dict:
    """The YAML metadata (see the module docstring)."""
    meta = {"license": "mit", "library_name": "tinygan",
            "tags": ["gan", "knowledge-distillation", "tinygan", "image-generation",
                     "class-conditional" if config["n_classes"] else "unconditional", "onnx", "safetensors",
                     "pytorch"]}
    if dataset and dataset.get("hub_id"):
        meta["datasets"] = [dataset["hub_id"]]
    if not config["n_classes"]:
        meta["pipeline_tag"] = "unconditional-image-generation"
    if metrics:
        meta["model-index"] = [{"name": model_name(config), "results": [_result(config, metrics, dataset)]}]
    return meta


def _result(config: dict, metrics: dict, dataset: dict | None) -> dict:
    extractor = metrics.get("extractor") or "not recorded"
    kind = "Class-conditional" if config["n_classes"] else "Unconditional"
    r = config["resolution"]
    data = {"type": (dataset or {}).get("hub_id") or "custom",
            "name": f"{len(config['classes'])} classes at {r}x{r}" + (f", {dataset['name']}" if dataset else "")}
    rows = [{"type": hub, "value": metrics[key], "name": f"{label}, features: {extractor}",
             "args": {"feature_extractor": extractor}}
            for key, (hub, label, _, _) in METRICS.items() if isinstance(metrics.get(key), (int, float))]
    return {"task": {"type": "unconditional-image-generation" if not config["n_classes"] else "image-generation",
                     "name": f"{kind} image generation ({r}x{r})"},
            "dataset": data, "metrics": rows}


def _fmt(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    if v is None:
        return "—"
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v[:12]) + (f", … ({len(v)} in all)" if len(v) > 12 else "")
    return str(v).replace("|", "/")


def table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows])


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows = []
    for k, v in d.items():
        rows += _flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]
    return rows


# ---- sections ------------------------------------------------------------------------------------------------

def model_section(config: dict, blocks: int, params: int, macs: int) -> list[str]:
    v, n_cls, r = config["variant"], config["n_classes"], config["resolution"]
    convs = "depthwise-separable" if v == "dw" else "standard 3×3"
    norm = "conditional BatchNorm from a shared class embedding" if n_cls else "BatchNorm; unconditional"
    rows = [["architecture", f"TinyGAN-{v}: fc → {blocks} residual up-blocks ({convs} convs, {norm}) → "
                             "BN-ReLU-conv3×3-tanh"],
            ["channel multiplier", config["ch"]],
            ["parameters", params], ["MACs per image", f"{macs:,} ({macs / 1e9:.3f} G)"],
            ["class embedding", f"{n_cls} × {config['emb_dim']}" if n_cls else "none"],
            ["trained classes", _classes_text(config)],
            ["input", f"z float32 [N, {config['z_dim']}], y int64 [N] "
                      + (f"(class index 0-{n_cls - 1})" if n_cls else "(ignored)")],
            ["output", f"image float32 [N, 3, {r}, {r}] (NCHW) in [-1, 1]"],
            ["noise", _noise_text(config)]]
    return ["## Model", "", table(["", ""], rows), ""]


def _classes_text(config: dict) -> str:
    if not config["n_classes"]:
        return "none (unconditional: y is ignored)"
    cls, names = config["classes"], config.get("class_names")
    shown = ", ".join(f"{c} ({names[str(c)]})" if names is not None else
                      f"{c} {imagenet.wnid_of(c)} ({imagenet.name_of(c)})" for c in cls[:10])
    more = f", … ({len(cls)} in all; see config.json)" if len(cls) > 10 else ""
    return f"{len(cls)}: {shown}{more}"


def _noise_text(config: dict) -> str:
    if config.get("latent", "biggan") == "stylegan":
        return ("z = standard normal (the teacher's StyleGAN latent: its truncation ψ "
                f"{config['truncation']} acted inside the teacher, so z is not truncated)")
    return (f"z = truncation × truncated normal (±2); default truncation {config['truncation']}. "
            "Truncation is not a model input: apply it when drawing z")


def teacher_section(teacher: str | None, manifest: dict | None, real: dict | None, dataset: dict | None,
                    summary: dict | None) -> list[str]:
    """The teacher (handle, content hash, description) and the data counts."""
    m = manifest or {}
    info = m.get("teacher_info") or {}
    rows = [["teacher", f"`{m.get('teacher', teacher) or 'not recorded'}`" + (f" ({info['name']})" if info else "")],
            ["teacher content sha256", f"`{m['teacher_sha256']}`" if m.get("teacher_sha256") else "not recorded"]]
    if m:
        rows += [["teacher pairs (z, y, image)", f"{m['n']:,}: {m.get('per_class', '?')} per class × "
                                                 f"{len(m['classes'])} classes, truncation {m.get('truncation')}, "
                                                 f"seed {m.get('seed')}"]]
    if real:
        rows += [["real images", f"{real['n']:,} of {len(real['classes'])} classes"
                                 + (f": {dataset['name']}" if dataset else "")]]
    s = summary or {}
    for key, label in (("train_pairs", "teacher pairs used for training"), ("heldout_pairs", "held-out pairs"),
                       ("steps", "training steps"), ("epochs", "epochs"),
                       ("heldout_l1_start", "held-out L1 to the teacher, start"),
                       ("heldout_l1_end", "held-out L1 to the teacher, end")):
        if s.get(key) is not None:
            rows.append([label, s[key]])
    return ["## Teacher and data", "", table(["", ""], rows), ""]


def evaluation_section(metrics: dict | None, metrics_path: str | None) -> list[str]:
    if metrics is None:
        return ["## Evaluation", "", "No metrics were given to the export (run the evaluate stage).", ""]
    s = ["## Evaluation", "", extractor_line(metrics, metrics_path), ""]
    rows = [[f"{label} ({better} is better)", _pm(metrics, key), _pm(metrics, f"teacher_{key}"), protocol]
            for key, (_, label, better, protocol) in METRICS.items()
            if metrics.get(key) is not None or metrics.get(f"teacher_{key}") is not None]
    s += [table(["metric (unitless)", "student", "teacher (its stored samples)", "protocol"], rows), ""]
    s += [f"Protocol: `tinygan evaluate` (the evaluate stage), features from `{metrics.get('extractor')}`; "
          f"student images from fresh noise, teacher figures from the teacher's stored samples; source "
          f"`{metrics_path}`."]
    s += [f"- {metrics[k]}" for k in NOTE_KEYS if metrics.get(k)]
    return s + [""]


def _pm(metrics: dict, key: str) -> str:
    v = metrics.get(key)
    if v is None:
        return "not measured"
    std = metrics.get(f"{key}_std")
    return f"{v:.4g} ± {std:.2g}" if isinstance(std, float) else f"{v:.4g}"


def extractor_line(metrics: dict, metrics_path: str | None) -> str:
    name = metrics.get("extractor") or metrics.get("feature_extractor")
    if not name:
        return (f"**Feature extractor: not recorded in `{metrics_path}`** — do not compare these numbers with "
                f"published Inception-based figures.")
    line = f"**Feature extractor: `{name}`**"
    if metrics.get("extractor_note"):  # the extractor's own caveat, recorded by evaluate
        line += (f" — {metrics['extractor_note']}: these figures are NOT comparable with the paper's "
                 f"IS / FID / intra-FID.")
    return line


def compression_section(params: int, macs: int, metrics: dict | None, manifest: dict | None) -> list[str]:
    """Student vs teacher size: the teacher's figures from metrics.json, else its manifest's description."""
    m, info = metrics or {}, (manifest or {}).get("teacher_info") or {}
    t_params = m.get("teacher_g_params", info.get("g_params"))
    t_macs = m.get("teacher_g_macs", info.get("g_macs"))
    source = m.get("teacher_figures") or info.get("source") or "not recorded"
    if t_params or t_macs:
        rows = [["generator parameters", params, t_params or "unknown", f"{t_params / params:.1f}×" if t_params
                 else "—"], ["generator MACs per image", macs, t_macs or "unknown",
                             f"{t_macs / macs:.1f}×" if t_macs else "—"]]
        head = ["", "student", "teacher", "teacher / student"]
    else:
        rows, head = [["generator parameters", params], ["generator MACs per image", macs]], ["", "student"]
    s = ["## Compression", "", table(head, rows), "",
         f"Student figures measured by `tinygan.summary` (multiply-adds of conv and linear layers); the "
         f"teacher's: {source}."]
    if m.get("d_params"):
        s.append(f"The training discriminator (not exported) has {m['d_params']:,} parameters.")
    return s + [""]


def files_section(out: Path, parity: dict) -> list[str]:
    """Formats, sizes and parity vs the PyTorch eager model (parity.json, parity_version 2)."""
    inp = parity.get("inputs", {})
    s = ["## Files, size and parity", "",
         f"Every fp32 format was run on {inp.get('n', '?')} fixed (z, y) pairs (batches "
         f"{', '.join(map(str, inp.get('batches', [])))}) and compared with the PyTorch eager model; the export "
         f"fails above the tolerance {parity['atol']:g}.", ""]
    rows = [[f"`{e['file']}`" + (f" + `{e['weights_file']}`" if e.get("weights_file") else ""), name,
             f"{e['bytes'] / 1e6:.2f} MB", f"{e['max_abs_diff']:.2e}", f"`{e['sha256'][:16]}…`"]
            for name, e in parity["formats"].items()]
    s += [table(["file", "format", "size", "max abs diff (fp32)", "sha256"], rows), ""]
    if parity.get("quantized"):
        s += quantized_rows(parity["quantized"])
    s += ["`config.json`: architecture, trained classes and the input/output contract. `samples.png`: a sample "
          "grid of the trained classes. Speed is not an export artifact (timings are not reproducible bytes): "
          "`python benchmarks/bench_generate.py` measures images/s of each format side by side, and the "
          "browser page (`page/`) shows the time of each generation on the viewer's machine.", ""]
    return s


def quantized_rows(quantized: dict) -> list[str]:
    rows = []
    for name, e in quantized.items():
        cost = (f"FID {e['fid_vs_fp32']:.4g} / KID {e['kid_vs_fp32']:.3g} vs fp32 images "
                f"({e.get('n_images', '?')} images, `{e['extractor']}` features)"
                if e.get("fid_vs_fp32") is not None else "not measured (export ran without an extractor)")
        rows.append([f"`{e['file']}`", name, f"{e['bytes'] / 1e6:.2f} MB", f"{e['max_abs_diff']:.3g}", cost,
                     e.get("method", "")])
    return ["Reduced precision (not held to the tolerance; the quality cost is measured instead, same z and y "
            "as the fp32 model):", "",
            table(["file", "format", "size", "max abs diff vs fp32", "quality cost", "method"], rows), ""]


def params_section(params_snapshot: dict | None) -> list[str]:
    if not params_snapshot:
        return []
    return ["## Training parameters", "", "The run's params (`params.yaml`) that shape the weights:", "",
            table(["param", "value"], [[f"`{k}`", v] for k, v in _flatten(params_snapshot)]), ""]


def usage_section(config: dict, page: bool) -> list[str]:
    z, r = config["z_dim"], config["resolution"]
    s = ["## How to use", "", "safetensors (PyTorch + tinygan):", "", "```python",
         "from tinygan.generate import load_generator",
         "G = load_generator('generator.safetensors')  # eval mode",
         f"img = G(z, y)  # z float32 [N,{z}] drawn as config.json's z_distribution says, y int64 [N]", "```", "",
         "TorchScript (PyTorch only, no tinygan needed):", "", "```python", "import torch",
         "G = torch.jit.load('generator.torchscript.pt')",
         f"img = G(z, y)  # [N,3,{r},{r}] in [-1,1]", "```", "",
         "ONNX (onnxruntime, no PyTorch):", "", "```python", "import onnxruntime as ort",
         "sess = ort.InferenceSession('generator.onnx', providers=['CPUExecutionProvider'])",
         "img = sess.run(['image'], {'z': z, 'y': y})[0]  # numpy float32 z, int64 y", "```", "",
         "Or from the command line: `tinygan generate` (see `tinygan generate --help`).", ""]
    if page:
        s += ["## In the browser", "",
              "`page/` runs `generator.onnx` in the browser with a vendored onnxruntime-web (WebAssembly, one "
              "thread): class picker, seed, truncation, an interpolation strip, the model's size and the measured "
              "generation time. Nothing is fetched from elsewhere or sent anywhere. Serve this folder and open "
              "the page:", "", "```bash", "python3 -m http.server -b 127.0.0.1 -d . 8000   # then open "
              "http://127.0.0.1:8000/page/", "```", "",
              "Seed s at truncation t gives exactly the z of `tinygan generate --interpolate seeds:s,…` (the "
              "noise table `page/z.bin` is drawn by the export with numpy).", ""]
    return s


def limitations_section(config: dict, metrics: dict | None, quantized: bool) -> list[str]:
    n = len(config["classes"])
    s = ["## Intended use and limitations", "",
         "- Research and teaching: a small, fast stand-in for its teacher on the trained classes "
         "(knowledge-distillation experiments, demos, CPU/edge/browser inference)."]
    if config["n_classes"]:
        s.append(f"- Only the {n} trained classes are meaningful; the embedding table has {config['n_classes']} "
                 "rows, but untrained rows are random.")
    if metrics and metrics.get("extractor_note"):
        s.append(f"- The evaluation figures come from `{metrics['extractor']}`: they compare runs of this "
                 "pipeline; they are not Inception IS/FID and say nothing about quality on real ImageNet.")
    if quantized:
        s.append("- Reduced-precision files trade quality for size; their measured cost is in the table above.")
    s += ["- The student imitates its teacher, including its failure modes and the biases of the teacher's "
          "training data (for ImageNet: class imbalance, photographer and geographic bias); it is not a model "
          "of the real world.",
          "- Quality is below the teacher's (paper Table 1: FID 24.2 vs 19.8 on 398 animal classes for the "
          "full-scale model); small or briefly trained students are far worse.",
          "- Outputs are synthetic images; do not present them as photographs. The teacher and its data carry "
          "their own licence terms (ImageNet: non-commercial research).", ""]
    return s


def model_card(config: dict, out: Path, parity: dict, metrics: dict | None, metrics_path: str | None,
               size: tuple[int, int, int], train_summary: dict | None = None, params_snapshot: dict | None = None,
               teacher: str | None = None, teacher_manifest: dict | None = None, real_manifest: dict | None = None,
               dataset: dict | None = None) -> str:
    """README.md text. ``size``: (residual blocks, parameters, MACs per image) of the generator."""
    blocks, params, macs = size
    m = teacher_manifest or {}
    t_name = (m.get("teacher_info") or {}).get("name") or teacher or "its teacher"
    kind = "Class-conditional" if config["n_classes"] else "Unconditional"
    r = config["resolution"]
    body = [f"# {model_name(config)}: a TinyGAN student of {t_name}", "",
            f"{kind} {r}×{r} image generator distilled from **{t_name}** by black-box knowledge distillation "
            "(TinyGAN, Chang & Lu, ACCV 2020). Generated by `tinygan export` from the trained weights.", "",
            "![samples from the student](samples.png)", ""]
    body += model_section(config, blocks, params, macs)
    body += teacher_section(teacher, teacher_manifest, real_manifest, dataset, train_summary)
    body += evaluation_section(metrics, metrics_path) + compression_section(params, macs, metrics, m)
    body += files_section(out, parity) + params_section(params_snapshot)
    body += usage_section(config, (out / "page").is_dir())
    body += limitations_section(config, metrics, bool(parity.get("quantized")))
    meta = yaml.safe_dump(front_matter(config, metrics, dataset), sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{meta}---\n\n" + "\n".join(body)


def read_front_matter(text: str) -> dict:
    """The YAML metadata of a model card's text (``---`` lines around it)."""
    head, sep, _ = text.removeprefix("---\n").partition("\n---\n")
    if not text.startswith("---\n") or not sep:
        raise ValueError("no YAML front matter")
    return yaml.safe_load(head)
