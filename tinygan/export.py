"""Export the trained student generator: safetensors + TorchScript + ONNX + OpenVINO IR (+ int8 and fp16 ONNX),
parity checks and a model card.

Written to ``out_dir`` as a whole (``tinygan.io.atomic_dir``): every file new, or, when the export fails or
is killed, the previous export untouched:

- ``generator.safetensors``  weights of the eval-mode generator (BatchNorm running statistics included) with the
  config in its metadata; no pickle.
- ``config.json``            architecture, trained classes, default truncation, input/output contract.
- ``generator.torchscript.pt``  ``torch.jit.trace`` of the eval-mode generator (a zip of code + tensors; the
  config as its extra file ``config.json``).
- ``generator.onnx``         one self-contained file (no external data), dynamic batch; inputs ``z`` float32
  [N, z_dim] and ``y`` int64 [N], output ``image`` float32 [N, 3, R, R] in [-1, 1] (NCHW), R = resolution; the
  config is embedded in its metadata_props under ``tinygan_config``. An unconditional generator (n_classes 0)
  has the same inputs (in every format): its ``y`` is ignored, and its one "class" is 0 (config ``classes`` [0]).
- ``generator.openvino.xml`` + ``generator.openvino.bin``  OpenVINO IR converted from the ONNX file (float32
  weights; the ONNX metadata, the config included, in its rt_info ``framework``), same inputs and output.
- ``generator.int8.onnx``, ``generator.fp16.onnx``  reduced-precision ONNX (``tinygan.quantize``): int8 static
  quantisation calibrated on ``calibration_samples`` latents, and float16; not held to ``atol``.
- ``parity.json``            per file: size, sha256, max |difference| vs the PyTorch eager model on fixed inputs;
  for the reduced-precision files also the quality cost (FID / KID vs the fp32 model's images, the evaluation's
  extractor). Schema: ``parity_report``.
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
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from tinygan import classes as imagenet
from tinygan import card, page, quantize
from tinygan.errors import TinyGANError
from tinygan.generate import (CONFIG_KEYS, ONNX_CONFIG_KEY, TORCHSCRIPT_CONFIG, TorchRunner, class_count, class_grid,
                              import_openvino, load_generator, open_model, png_bytes, tile)
from tinygan.io import atomic_dir, sha256_file, torchscript_bytes, write_bytes, write_json, write_text
from tinygan.models import save_weights
from tinygan.teacher import check_latent, check_truncation

FORMAT_VERSION = 1
PARITY_VERSION = 2  # parity.json schema (see parity_report)
FORMATS = ("safetensors", "torchscript", "onnx", "openvino")  # float32: each within atol of the eager model
FILES = {"safetensors": "generator.safetensors", "torchscript": "generator.torchscript.pt",
         "onnx": "generator.onnx", "openvino": "generator.openvino.xml"}
OPENVINO_WEIGHTS = "generator.openvino.bin"  # beside the .xml, which names it
QUANTIZED = {"onnx-int8": "generator.int8.onnx", "onnx-fp16": "generator.fp16.onnx"}  # not held to atol
OUT_FILES = (*FILES.values(), OPENVINO_WEIGHTS, *QUANTIZED.values(), "config.json", "parity.json", "samples.png",
             "README.md", "page/")  # all of out_dir
PARITY_BATCHES = (1, 5, 2)  # 8 fixed (z, y) pairs, run as batches of 1, 5 and 2 (dynamic batch)
PARITY_SEED = 12345


def export(generator_path: str, out_dir: str, classes: list[int], metrics_path: str | None = None,
           train_summary: dict | None = None, params_snapshot: dict | None = None, grid_png: str | None = None,
           opset: int = 17, atol: float = 1e-4, truncation: float = 0.5, teacher: str | None = None,
           seed: int = 0, latent: str = "biggan", class_names: dict[int, str] | None = None,
           extractor: str | None = None, extractor_path: str | None = None, quality_samples: int = 64,
           calibration_samples: int = 32, page_vendor: str | None = None, teacher_manifest: dict | None = None,
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
    own classes (None: ImageNet's); see ``make_config``. ``extractor`` / ``extractor_path``: the evaluation's
    feature extractor (kind, file) that measures the quality cost of the int8 / fp16 files on
    ``quality_samples`` images (None: not measured, the figures are null); ``calibration_samples``: latents the
    int8 quantisation is calibrated on. ``page_vendor``: the onnxruntime-web files for the browser page
    ``page/`` (``tinygan.page``); None: no page.
    Raises TinyGANError if any float32 format differs from the eager model by more than ``atol``.
    Returns the parity report (``parity_report``; also written to parity.json).
    """
    out = Path(out_dir)
    check_truncation(truncation, "export (sample.truncation)")
    check_latent(latent)
    metrics = _read_metrics(metrics_path)  # check every input before writing anything
    if page_vendor is not None:
        page.vendor_files(page_vendor)
    if grid_png and not Path(grid_png).is_file():
        raise TinyGANError(f"sample grid {grid_png} does not exist; run the train stage first")
    if quality_samples < 2 or calibration_samples < 1:
        raise TinyGANError(f"export: quality_samples must be >= 2 and calibration_samples >= 1, got "
                           f"{quality_samples} and {calibration_samples}")
    G = load_generator(generator_path)
    cfg = G.config
    class_list = sorted({int(c) for c in classes})
    if not class_list or class_list[-1] >= class_count(cfg) or class_list[0] < 0:
        raise TinyGANError(f"export: classes must be a non-empty list of indices 0-{class_count(cfg) - 1}"
                           f"{' (0: an unconditional model)' if not cfg['n_classes'] else ''}, got {classes}")
    ext = _load_extractor(extractor, extractor_path)
    config = make_config(cfg, class_list, truncation, latent, class_names)
    with atomic_dir(out, OUT_FILES) as tmp:  # all files new, or (on any error) the previous export untouched
        diffs = _write_formats(G, tmp, config, opset, atol)
        quality = _write_quantized(G, tmp, config, ext, seed, quality_samples, calibration_samples)
        report = parity_report(tmp, diffs, atol, quality)
        write_json(tmp / "parity.json", report)
        if page_vendor is not None:
            page.build(tmp / "page", config, (tmp / FILES["onnx"]).stat().st_size, page_vendor)
        if grid_png:
            write_bytes(tmp / "samples.png", Path(grid_png).read_bytes())
        else:
            shown = class_list[:8]
            write_bytes(tmp / "samples.png",
                        png_bytes(tile(class_grid(G, shown, 8, truncation, seed, latent), len(shown), 8)))
        write_text(tmp / "README.md", card.model_card(
            config, tmp, report, metrics, metrics_path, model_size(G), train_summary,
            params_snapshot, teacher, teacher_manifest, real_manifest, dataset))
    return report


def _load_extractor(kind: str | None, path: str | None):
    if kind is None:
        return None
    from tinygan.extractors import load_extractor

    if not path:
        raise TinyGANError(f"export: the {kind} extractor needs its file (evaluate.extractor_path)")
    return load_extractor(path, kind)


def _write_formats(G: torch.nn.Module, out: Path, config: dict, opset: int, atol: float) -> dict:
    """The float32 formats and config.json into ``out``, checked against G; {format: max |diff|}."""
    save_weights(G, out / FILES["safetensors"], config)
    write_json(out / "config.json", config)
    save_torchscript(G, out / FILES["torchscript"], config)
    save_onnx(G, out / FILES["onnx"], config, opset)
    save_openvino(out / FILES["onnx"], out / FILES["openvino"])
    return check_parity(G, out, config["classes"], config["truncation"], atol)


def _write_quantized(G: torch.nn.Module, out: Path, config: dict, ext, seed: int, quality_samples: int,
                     calibration_samples: int) -> dict:
    """The int8 and fp16 ONNX files, and per file {max_abs_diff (vs eager), quality cost, how it was made}."""
    latent, t, z_dim = config.get("latent", "biggan"), config["truncation"], config["z_dim"]
    cz, cy = quantize.labelled_z(config["classes"], calibration_samples, latent, seed + 1, t, z_dim)
    quantize.save_int8(out / FILES["onnx"], out / QUANTIZED["onnx-int8"], cz, cy)
    quantize.save_fp16(out / FILES["onnx"], out / QUANTIZED["onnx-fp16"])
    qz, qy = quantize.labelled_z(config["classes"], quality_samples, latent, seed, t, z_dim)
    if ext is not None:
        fp32 = quantize.features(open_model(out / FILES["onnx"])[0], qz, qy, ext, "fp32 features")
    report = {}
    for name, method in (("onnx-int8", quantize.INT8_METHOD), ("onnx-fp16", quantize.FP16_METHOD)):
        fn = open_model(out / QUANTIZED[name])[0]
        cost = (quantize.quality_cost(fp32, quantize.features(fn, qz, qy, ext, f"{name} features"), seed)
                if ext is not None else {"fid_vs_fp32": None, "kid_vs_fp32": None})
        report[name] = {"max_abs_diff": parity_diffs(G, {name: fn}, config["classes"], t)[name],
                        "method": method, **cost, "extractor": ext.name if ext is not None else None,
                        "n_images": quality_samples, "seed": seed, "bound": None}
        if name == "onnx-int8":
            report[name]["calibration"] = {"n": calibration_samples, "seed": seed + 1}
    return report


def _file_entry(out: Path, name: str) -> dict:
    f = out / name
    return {"file": name, "bytes": f.stat().st_size, "sha256": sha256_file(f)}


def parity_report(out: Path, diffs: dict, atol: float, quality: dict) -> dict:
    """parity.json: {"parity_version", "atol", "inputs": the fixed pairs, "formats": {format: {file, bytes,
    sha256, max_abs_diff}} (openvino also weights_file / weights_sha256, bytes of both files), "quantized":
    {"onnx-int8" / "onnx-fp16": {file, bytes, sha256, max_abs_diff, method, fid_vs_fp32, kid_vs_fp32,
    extractor, n_images, seed, bound (null: no failure bound), int8 also calibration {n, seed}}}}."""
    formats = {name: {**_file_entry(out, FILES[name]), "max_abs_diff": diffs[name]} for name in FORMATS}
    weights = out / OPENVINO_WEIGHTS
    formats["openvino"].update(weights_file=OPENVINO_WEIGHTS, weights_sha256=sha256_file(weights),
                               bytes=formats["openvino"]["bytes"] + weights.stat().st_size)
    return {"parity_version": PARITY_VERSION, "atol": float(atol),
            "inputs": {"n": sum(PARITY_BATCHES), "batches": list(PARITY_BATCHES), "seed": PARITY_SEED},
            "formats": formats,
            "quantized": {name: {**_file_entry(out, QUANTIZED[name]), **q} for name, q in quality.items()}}


# ---- the formats -----------------------------------------------------------------------------------

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


def save_torchscript(G: torch.nn.Module, path: Path, config: dict | None = None) -> None:
    """``torch.jit.trace`` of the eval-mode G (batch size is not baked in: the reshape uses -1); ``config`` is
    stored as the archive's extra file ``config.json`` (``tinygan.generate`` reads it).

    Reproducible bytes (``tinygan.io.torchscript_bytes``: no debug records with absolute paths). Class names (``___torch_mangle_<n>``) are numbered per process,
    so the same generator gives the same bytes when exported by a fresh process (the export stage)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(G.eval(), _example_inputs(G), check_trace=False)
    extra = None if config is None else {TORCHSCRIPT_CONFIG: json.dumps(config, sort_keys=True)}
    write_bytes(path, torchscript_bytes(traced, extra))


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


def save_openvino(onnx_path: Path, xml_path: Path) -> None:
    """OpenVINO IR (``xml_path`` + the .bin beside it) converted from the ONNX file, float32 weights.

    Read with the runtime's ONNX frontend (``Core.read_model``); openvino is imported with its usage telemetry
    off (``tinygan.generate.import_openvino``). OpenVINO names the nodes it creates with a per-process counter
    (``Constant_1938``); they are renumbered by their place in the graph so that the same ONNX file gives the
    same bytes within one process too."""
    ov = import_openvino()
    try:
        model = ov.Core().read_model(str(onnx_path))
    except Exception as e:
        raise TinyGANError(f"OpenVINO conversion of {onnx_path.name} failed ({str(e).splitlines()[0][:200]})") from None
    for k, op in enumerate(model.get_ordered_ops()):
        made = _OV_MADE_NAME.match(op.get_friendly_name())
        if made:
            op.set_friendly_name(f"{made.group(1)}_{k}")
    try:
        ov.save_model(model, str(xml_path), compress_to_fp16=False)
    except Exception as e:
        raise TinyGANError(f"cannot write {xml_path} ({str(e).splitlines()[0][:200]}); free some space or choose "
                           f"another output directory") from None


_OV_MADE_NAME = re.compile(r"^([A-Za-z][A-Za-z0-9]*)_\d+$")  # OpenVINO's own node names: "<Type>_<counter>"


# ---- parity ------------------------------------------------------------------------------------------------

def parity_inputs(class_list: list[int], truncation: float, z_dim: int, n: int = 8,
                  seed: int = PARITY_SEED) -> tuple[np.ndarray, np.ndarray]:
    """``n`` fixed (z, y) pairs: classes cycled from the trained list, z = truncated_z(seed, y, k)."""
    return quantize.labelled_z(class_list, n, "biggan", seed, truncation, z_dim)


def parity_diffs(G: torch.nn.Module, runners: dict, class_list: list[int], truncation: float) -> dict:
    """{name: max |runner - eager G|} over the 8 fixed pairs, run as batches of 1, 5 and 2."""
    z, y = parity_inputs(class_list, truncation, G.config["z_dim"], n=sum(PARITY_BATCHES))
    eager = TorchRunner(G.eval())
    diffs = {name: 0.0 for name in runners}
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
    return diffs


def check_parity(G: torch.nn.Module, out: Path, class_list: list[int], truncation: float,
                 atol: float) -> dict:
    """{format: max |format - eager|} for the float32 FORMATS in ``out``, each run as `tinygan generate` runs it
    (``generate.open_model``); TinyGANError above ``atol``."""
    runners = {name: open_model(out / FILES[name])[0] for name in FORMATS}
    diffs = parity_diffs(G, runners, class_list, truncation)
    for name, d in diffs.items():
        if not d <= atol:  # also catches NaN
            raise TinyGANError(f"parity check failed: {name} ({FILES[name]}) differs from the PyTorch model by "
                               f"{d:.3g} > atol {atol:g}; the export is broken (no files were kept)")
    return diffs


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


