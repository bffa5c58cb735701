"""Export the trained student generator: safetensors + TorchScript + ONNX, parity checks and a model card.

Written to ``out_dir`` as a whole (``tinygan.io.atomic_dir``): every file new, or, when the export fails or
is killed, the previous export untouched:

- ``generator.safetensors``  weights of the eval-mode generator (BatchNorm running statistics included) with the
  config in its metadata; no pickle.
- ``config.json``            architecture, trained classes, default truncation, input/output contract.
- ``generator.torchscript.pt``  ``torch.jit.trace`` of the eval-mode generator (a zip of code + tensors).
- ``generator.onnx``         one self-contained file (no external data), dynamic batch; inputs ``z`` float32
  [N, z_dim] and ``y`` int64 [N], output ``image`` float32 [N, 3, R, R] in [-1, 1] (NCHW), R = resolution; the
  config is embedded in its metadata_props under ``tinygan_config``. An unconditional generator (n_classes 0)
  has the same inputs (in every format): its ``y`` is ignored, and its one "class" is 0 (config ``classes`` [0]).
- ``parity.json``            max |difference| of each format vs the PyTorch eager model on fixed inputs.
- ``samples.png``            the sample grid (copied from ``grid_png``, or rendered from the model).
- ``README.md``              the model card (``tinygan.card``: Hugging Face-style, YAML metadata first),
  generated from the artifacts above, so the folder reads as a model repository.
- ``page/``                  the student in the browser (``tinygan.page``), when ``page_vendor`` is given.

Truncation is not a model input: the student maps the z it is given. Draw z as the teacher's z was drawn
(``tinygan.teacher.draw_z`` with the teacher's latent recipe, config ``latent``, "biggan" when absent):
``truncation * truncated_normal`` (values outside ±2 redrawn) for BigGAN, standard normal for StyleGAN (its ψ
acted inside the teacher); ``tinygan generate`` does this. Data other than ImageNet: config ``class_names``.
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from tinygan import classes as imagenet
from tinygan import card, page
from tinygan.errors import TinyGANError
from tinygan.generate import (CONFIG_KEYS, ONNX_CONFIG_KEY, class_count, class_grid, load_generator, png_bytes,
                              tile)
from tinygan.io import atomic_dir, sha256_file, torchscript_bytes, write_bytes, write_json, write_text
from tinygan.models import save_weights
from tinygan.teacher import check_latent, check_truncation, truncated_z

FORMAT_VERSION = 1
FORMATS = ("safetensors", "torchscript", "onnx")
FILES = {"safetensors": "generator.safetensors", "torchscript": "generator.torchscript.pt",
         "onnx": "generator.onnx"}
OUT_FILES = (*FILES.values(), "config.json", "parity.json", "samples.png", "README.md", "page/")  # all of out_dir
PARITY_BATCHES = (1, 5, 2)  # 8 fixed (z, y) pairs, run as batches of 1, 5 and 2 (dynamic batch)


def export(generator_path: str, out_dir: str, classes: list[int], metrics_path: str | None = None,
           train_summary: dict | None = None, params_snapshot: dict | None = None, grid_png: str | None = None,
           opset: int = 17, atol: float = 1e-4, truncation: float = 0.5, teacher: str | None = None,
           seed: int = 0, latent: str = "biggan", class_names: dict[int, str] | None = None,
           page_vendor: str | None = None, teacher_manifest: dict | None = None,
           real_manifest: dict | None = None, dataset: dict | None = None) -> dict:
    """Export the generator at ``generator_path`` (the train stage's safetensors) into ``out_dir``.

    ``classes``: the class indices the student was trained on (recorded in config.json and the card).
    ``metrics_path``: evaluation metrics JSON (its ``extractor`` and ``extractor_note`` entries are shown
    prominently in the card).
    ``train_summary``: the train stage's summary (data counts, held-out L1); ``params_snapshot``: the training
    params to list in the card; ``grid_png``: a sample grid to copy to ``samples.png`` (else one is rendered
    from the model, ``seed``-seeded). ``truncation``: the default truncation recorded in config.json (use the
    teacher's). ``teacher``: the teacher handle; ``teacher_manifest`` / ``real_manifest``: the shards'
    manifests (teacher content hash, data counts); ``dataset``: ``tinygan.card.dataset_info``; all for the
    card. ``latent``: the teacher's latent recipe (its shard manifest's); ``class_names``: names of the data's
    own classes (None: ImageNet's); see ``make_config``. ``page_vendor``: the onnxruntime-web files for the
    browser page ``page/`` (``tinygan.page``); None: no page.
    Raises TinyGANError if any format differs from the eager model by more than ``atol``.
    Returns {"safetensors": diff, "torchscript": diff, "onnx": diff, "atol": atol} (also in parity.json).
    """
    out = Path(out_dir)
    check_truncation(truncation, "export (sample.truncation)")
    check_latent(latent)
    metrics = _read_metrics(metrics_path)  # check every input before writing anything
    if page_vendor is not None:
        page.vendor_files(page_vendor)
    if grid_png and not Path(grid_png).is_file():
        raise TinyGANError(f"sample grid {grid_png} does not exist; run the train stage first")
    G = load_generator(generator_path)
    cfg = G.config
    class_list = sorted({int(c) for c in classes})
    if not class_list or class_list[-1] >= class_count(cfg) or class_list[0] < 0:
        raise TinyGANError(f"export: classes must be a non-empty list of indices 0-{class_count(cfg) - 1}"
                           f"{' (0: an unconditional model)' if not cfg['n_classes'] else ''}, got {classes}")
    config = make_config(cfg, class_list, truncation, latent, class_names)
    with atomic_dir(out, OUT_FILES) as tmp:  # all files new, or (on any error) the previous export untouched
        report = _write_formats(G, tmp, config, opset, atol)
        if page_vendor is not None:
            page.build(tmp / "page", config, (tmp / FILES["onnx"]).stat().st_size, page_vendor)
        if grid_png:
            write_bytes(tmp / "samples.png", Path(grid_png).read_bytes())
        else:
            shown = class_list[:8]
            write_bytes(tmp / "samples.png",
                        png_bytes(tile(class_grid(G, shown, 8, truncation, seed, latent), len(shown), 8)))
        write_text(tmp / "README.md", card.model_card(
            config, tmp, parity_v2(report, tmp), metrics, metrics_path, model_size(G), train_summary,
            params_snapshot, teacher, teacher_manifest, real_manifest, dataset))
    return report


def _write_formats(G: torch.nn.Module, out: Path, config: dict, opset: int, atol: float) -> dict:
    """The three formats and config.json into ``out``, checked against G (parity.json); the parity report."""
    save_weights(G, out / FILES["safetensors"], config)
    write_json(out / "config.json", config)
    save_torchscript(G, out / FILES["torchscript"])
    save_onnx(G, out / FILES["onnx"], config, opset)
    report = check_parity(G, out, config["classes"], config["truncation"], atol)
    write_json(out / "parity.json", report)
    return report


# ---- the three formats -----------------------------------------------------------------------------------

Z_DISTRIBUTIONS = {"biggan": "truncation * truncated_normal (standard normal, values outside +-2 redrawn)",
                   "stylegan": "standard normal (truncation is the teacher's psi, applied inside the teacher: the "
                               "student is fed the untruncated z the teacher got)"}


def make_config(cfg: dict, class_list: list[int], truncation: float, latent: str = "biggan",
                class_names: dict[int, str] | None = None) -> dict:
    """config.json: what a consumer needs to rebuild and call the model. ``latent``: the teacher's latent
    recipe (recorded unless "biggan", which readers assume when it is absent, so a BigGAN-teacher export is
    unchanged); ``class_names``: the names of the data's own classes (None: ImageNet's, recorded as wnids)."""
    own = {} if class_names is None else {"class_names": {str(c): class_names.get(c, "") for c in class_list}}
    return {
        **{k: cfg[k] for k in CONFIG_KEYS},
        "classes": class_list,
        **(own or {"class_wnids": [imagenet.wnid_of(c) for c in class_list]}),
        "truncation": float(truncation),
        **({} if latent == "biggan" else {"latent": latent}),
        "z_distribution": Z_DISTRIBUTIONS[latent],
        "inputs": {"z": ["N", cfg["z_dim"]], "y": ["N"]},
        "input_dtypes": {"z": "float32", "y": "int64"},
        "output": ["N", 3, cfg["resolution"], cfg["resolution"]],
        "output_range": [-1.0, 1.0],
        "layout": "NCHW",
        "format_version": FORMAT_VERSION,
    }


def _example_inputs(G: torch.nn.Module, n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, G.config["z_dim"], generator=g) * 0.5
    y = torch.arange(n, dtype=torch.long)
    return z, y


def save_torchscript(G: torch.nn.Module, path: Path) -> None:
    """``torch.jit.trace`` of the eval-mode G (batch size is not baked in: the reshape uses -1).

    Reproducible bytes (``tinygan.io.torchscript_bytes``: no debug records with absolute paths). Class names (``___torch_mangle_<n>``) are numbered per process,
    so the same generator gives the same bytes when exported by a fresh process (the export stage)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(G.eval(), _example_inputs(G), check_trace=False)
    write_bytes(path, torchscript_bytes(traced))


def _onnx_bytes(G: torch.nn.Module, opset: int, shape_fc: bool) -> bytes:
    """Run the TorchScript-based exporter into memory (so nothing, e.g. external data, lands beside the file)."""
    handle = None
    if shape_fc:
        c0, s0 = G.c0, G.s0
        handle = G.fc.register_forward_hook(lambda module, inputs, output: output.unflatten(1, (c0, s0, s0)))
    buf = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(G.eval(), _example_inputs(G), buf, input_names=["z", "y"], output_names=["image"],
                              dynamic_axes={"z": {0: "N"}, "y": {0: "N"}, "image": {0: "N"}},
                              opset_version=opset, do_constant_folding=True, dynamo=False)
    finally:
        if handle is not None:
            handle.remove()
    return buf.getvalue()


def save_onnx(G: torch.nn.Module, path: Path, config: dict, opset: int) -> None:
    """ONNX with the TorchScript-based exporter (``dynamo=False``; the dynamo one needs onnxscript), one file.

    If the generator reshapes the fc output with ``view(-1, C, 4, 4)``, the legacy exporter cannot infer the
    channel count with a dynamic batch (and refuses the BatchNorm that follows); then the export is retried
    with a forward hook on ``G.fc`` that returns the output already shaped [N, C, 4, 4], so that the reshape
    changes nothing and the graph still computes exactly G.
    An unconditional generator keeps the input ``y`` (ignored), so every export has the same two inputs.
    """
    import onnx

    try:
        try:
            data = _onnx_bytes(G, opset, shape_fc=False)
        except Exception as e:
            if "unknown channel size" not in str(e):
                raise
            data = _onnx_bytes(G, opset, shape_fc=True)
    except Exception as e:
        raise TinyGANError(f"ONNX export failed with opset {opset} ({str(e).splitlines()[0][:200]}); "
                           f"try another export.opset") from None
    model = onnx.load_from_string(data)
    if not any(i.name == "y" for i in model.graph.input):  # an unconditional G: the exporter drops the unused y
        model.graph.input.append(onnx.helper.make_tensor_value_info("y", onnx.TensorProto.INT64, ["N"]))
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise TinyGANError("ONNX export produced external data; the model must be one self-contained file")
    entry = model.metadata_props.add()
    entry.key, entry.value = ONNX_CONFIG_KEY, json.dumps(config, sort_keys=True)
    model.producer_name = "tinygan"
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:
        raise TinyGANError(f"exported ONNX graph fails onnx.checker ({str(e).splitlines()[0][:200]})") from None
    write_bytes(path, model.SerializeToString())


# ---- parity ------------------------------------------------------------------------------------------------

def parity_inputs(class_list: list[int], truncation: float, z_dim: int, n: int = 8,
                  seed: int = 12345) -> tuple[np.ndarray, np.ndarray]:
    """``n`` fixed (z, y) pairs: classes cycled from the trained list, z = truncated_z(seed, y, k)."""
    y = np.array([class_list[k % len(class_list)] for k in range(n)], dtype=np.int64)
    z = np.stack([truncated_z(seed, int(c), k, truncation, z_dim) for k, c in enumerate(y)])
    return z, y


def check_parity(G: torch.nn.Module, out: Path, class_list: list[int], truncation: float,
                 atol: float) -> dict:
    """Max |format - eager| over 8 fixed pairs, run as batches of 1, 5 and 2; TinyGANError above ``atol``."""
    import onnxruntime as ort

    z, y = parity_inputs(class_list, truncation, G.config["z_dim"], n=sum(PARITY_BATCHES))
    reloaded = load_generator(out / FILES["safetensors"])
    scripted = torch.jit.load(str(out / FILES["torchscript"]), map_location="cpu")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(out / FILES["onnx"]), opts, providers=["CPUExecutionProvider"])

    def torch_fn(model):
        def run(zb, yb):
            with torch.no_grad():
                return model(torch.from_numpy(zb), torch.from_numpy(yb)).numpy()
        return run

    runners = {"safetensors": torch_fn(reloaded), "torchscript": torch_fn(scripted),
               "onnx": lambda zb, yb: session.run(["image"], {"z": zb, "y": yb})[0]}
    eager = torch_fn(G.eval())
    diffs = {name: 0.0 for name in FORMATS}
    start = 0
    for b in PARITY_BATCHES:
        zb, yb = z[start:start + b], y[start:start + b]
        ref = eager(zb, yb)
        for name, fn in runners.items():
            got = fn(zb, yb)
            if got.shape != ref.shape:
                raise TinyGANError(f"parity: {name} gives shape {got.shape} for batch {b}, eager {ref.shape}")
            diffs[name] = max(diffs[name], float(np.max(np.abs(got.astype(np.float32) - ref))))
        start += b
    for name, d in diffs.items():
        if not d <= atol:  # also catches NaN
            raise TinyGANError(f"parity check failed: {name} ({FILES[name]}) differs from the PyTorch model by "
                               f"{d:.3g} > atol {atol:g}; the export is broken (no files were kept)")
    return {**diffs, "atol": float(atol)}


# ---- model card ----------------------------------------------------------------------------------------------

def _read_metrics(metrics_path: str | None) -> dict | None:
    if not metrics_path:
        return None
    path = Path(metrics_path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TinyGANError(f"metrics file {path} does not exist; run the evaluate stage first") from None
    except (OSError, json.JSONDecodeError) as e:
        raise TinyGANError(f"metrics file {path} is not readable JSON ({e})") from None


def model_size(G: torch.nn.Module) -> tuple[int, int, int]:
    """(residual blocks, parameters, MACs per image) of G, measured by ``tinygan.summary``."""
    from tinygan.summary import count_macs, count_params

    z, y = _example_inputs(G, 1)
    return len(G.blocks), count_params(G), count_macs(G, z, y)


def parity_v2(report: dict, out: Path) -> dict:
    """The parity report in the parity.json v2 layout the card reads (``formats``: file, bytes, sha256,
    max_abs_diff). BRIDGE until the export writes v2 itself (helper "deploy", issue 13): drop at the merge."""
    if "formats" in report:
        return report
    formats = {name: {"file": FILES[name], "bytes": (out / FILES[name]).stat().st_size,
                      "sha256": sha256_file(out / FILES[name]), "max_abs_diff": report[name]} for name in FORMATS}
    return {"parity_version": 2, "atol": report["atol"], "formats": formats,
            "inputs": {"n": sum(PARITY_BATCHES), "batches": list(PARITY_BATCHES), "seed": 12345}}
