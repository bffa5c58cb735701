"""Images from an exported student: class grids, single PNGs and interpolation sheets.

The model is any file ``tinygan.export`` writes (``MODEL_SUFFIXES``): ``generator.safetensors`` (PyTorch),
``generator.torchscript.pt`` (PyTorch, no tinygan model code), ``generator.onnx`` / ``generator.int8.onnx`` /
``generator.fp16.onnx`` (onnxruntime) or ``generator.openvino.xml`` (OpenVINO); this module imports torch
lazily, on the PyTorch paths alone. Its config comes from the sibling ``config.json`` written by
``tinygan.export`` or, failing that, from the config embedded in the file.

Noise: the teacher's latent recipe, recorded as ``latent`` in the config (exports without it: "biggan"):
"biggan" ``z = truncation * truncated_normal(z_dim)`` (standard-normal values outside ±2 redrawn); "stylegan"
standard normal z (the teacher's truncation ψ acted inside the teacher, so it does not touch z). The student
itself takes no truncation input. Image ``k`` of class ``c`` uses ``tinygan.teacher.draw_z(latent, seed, c, k,
truncation)``, so it does not depend on which other classes or how many images are asked for.

Classes are given as an index (``"207"``), a wnid (``"n02099601"``) or a name (``"golden retriever"``,
``"Golden_Retriever"``; case, ``_`` and ``-`` are ignored). ImageNet names are every synonym of the shipped
``tinygan/imagenet_synsets.txt`` (WordNet's names of the ILSVRC-2012 synsets, as ImageNet's
``LOC_synset_mapping.txt``: ``tabby`` and ``tabby cat`` both name class 281) plus, when given, those of another
such file; a name shared by several classes resolves to the class whose main name (``tinygan.classes``) it is,
else is refused as ambiguous; an unknown name lists the classes whose names contain it (``cat``: tabby, tiger
cat, Persian cat, ...). A model of other data (config ``class_names``) is asked by its own class names. A class the model was not trained
on is generated anyway (the embedding is 1000-way) with a warning on stderr: its images are not meaningful.

Memory does not grow with the number of images: they are made a batch at a time (``class_batches``) and turned
into uint8 at once; with ``--no-grid`` each PNG is written as its batch is made, a grid holds only its uint8
pixels, and a grid or sheet above ``MAX_SHEET_PIXELS`` is refused before anything is generated.

Interpolation sheets (paper Fig. 10), one row per fixed item, ``steps`` columns from A to B:

- ``classes:A,B`` — z fixed per row, the shared class embedding mixed linearly from class A to class B. This
  needs the embedding, so the safetensors model; the other formats' graphs take class indices only.
- ``seeds:S1,S2`` — class fixed per row, z interpolated linearly from ``draw_z(S1)`` to ``draw_z(S2)``
  (linear, as BigGAN does: every step stays inside the truncated box the student was trained on).
"""
from __future__ import annotations

import difflib
import functools
import io
import json
import os
import re
import sys
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from tinygan import classes as imagenet
from tinygan.errors import TinyGANError
from tinygan.io import write_bytes
from tinygan.teacher import LATENTS, Z_DIM, check_truncation, draw_z as teacher_z, latent_z, quantize

MODEL_SUFFIXES = {".safetensors": "safetensors", ".pt": "torchscript", ".onnx": "onnx", ".xml": "openvino"}
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}  # what -o may name as a file
JPEG_QUALITY = 95
TORCHSCRIPT_CONFIG = "config.json"  # extra file of the TorchScript archive holding the config
OPENVINO_PRECISION = {"INFERENCE_PRECISION_HINT": "f32"}  # not the CPU plugin's bf16 default on AMX CPUs
SYNSETS = Path(__file__).with_name("imagenet_synsets.txt")
CONFIG_KEYS = ("variant", "ch", "n_classes", "z_dim", "emb_dim", "resolution")
ONNX_CONFIG_KEY = "tinygan_config"  # metadata_props key of the config embedded in the ONNX file
BATCH = 64  # images per forward pass
VARIANTS = ("dw", "std")  # tinygan.models.GENERATOR_VARIANTS (models imports torch, the ONNX path must not)
# upper bounds of the sizes in an exported config (resolution must also be a power of two)
CONFIG_LIMITS = {"ch": 512, "n_classes": 100_000, "z_dim": 4096, "emb_dim": 4096, "resolution": 1024}
# lower bounds where not 1: n_classes 0 is an unconditional generator; tinygan.models.MIN_RESOLUTION
CONFIG_MINIMA = {"n_classes": 0, "resolution": 8}
MAX_SHEET_PIXELS = 1 << 26  # largest grid / interpolation sheet (64 Mpixel, 192 MB as uint8): 4096 images of 128²


# ---- config and model loading ---------------------------------------------------------------------------

_KINDS = "generator.safetensors / .torchscript.pt / .onnx (.int8.onnx, .fp16.onnx) / .openvino.xml"


def _check_model_path(model_path: str | os.PathLike) -> Path:
    path = Path(model_path)
    if path.suffix not in MODEL_SUFFIXES:
        raise TinyGANError(f"model {path} must be a file the export writes: {_KINDS} (see `dvc repro export`)")
    if not path.is_file():
        raise TinyGANError(f"model file {path} does not exist; run the export stage (`dvc repro export`) or "
                           f"pass the path of an exported {_KINDS}")
    return path


def model_format(model_path: str | os.PathLike) -> str:
    """"safetensors", "torchscript", "onnx" or "openvino", by the file's suffix."""
    return MODEL_SUFFIXES[_check_model_path(model_path).suffix]


def _valid_config(cfg, where: str) -> dict:
    """``cfg`` if every size in it is an integer within CONFIG_LIMITS (so a bad file cannot make the model
    allocate gigabytes), the variant is known and the trained classes are indices of the model; else one
    TinyGANError line."""
    if not isinstance(cfg, dict) or any(k not in cfg for k in CONFIG_KEYS):
        missing = [k for k in CONFIG_KEYS if not isinstance(cfg, dict) or k not in cfg]
        raise TinyGANError(f"model config in {where} lacks {missing}; re-run the export stage")

    def bad(what: str) -> TinyGANError:
        return TinyGANError(f"model config in {where}: {what}; re-run the export stage (or fix the file)")

    if cfg["variant"] not in VARIANTS:
        raise bad(f"variant {_short(cfg['variant'])} is unknown, expected one of {list(VARIANTS)}")
    for key, top in CONFIG_LIMITS.items():
        v, low = cfg[key], CONFIG_MINIMA.get(key, 1)
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= top:
            raise bad(f"{key} must be an integer in {low}-{top}, got {_short(v)}")
    if cfg["resolution"] & (cfg["resolution"] - 1):
        raise bad(f"resolution must be a power of two, got {cfg['resolution']}")
    trained = cfg.get("classes")
    if trained is not None and not (isinstance(trained, list) and all(
            isinstance(c, int) and not isinstance(c, bool) and 0 <= c < class_count(cfg) for c in trained)):
        raise bad(f"classes must be a list of class indices 0-{class_count(cfg) - 1}, got {_short(trained)}")
    if cfg.get("latent", "biggan") not in LATENTS:
        raise bad(f"latent must be one of {list(LATENTS)}, got {_short(cfg['latent'])}")
    names = cfg.get("class_names")
    if names is not None and not (isinstance(names, dict) and all(
            k.isdigit() and int(k) < class_count(cfg) and isinstance(v, str) for k, v in names.items())):
        raise bad(f"class_names must map class indices 0-{class_count(cfg) - 1} to names, got {_short(names)}")
    return cfg


def class_count(cfg: dict) -> int:
    """How many class indices the model takes: its n_classes, or 1 for an unconditional model (n_classes 0),
    whose one pseudo-class 0 stands for "no class" (its y input is ignored)."""
    return max(cfg["n_classes"], 1)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _embedded_config(path: Path) -> dict | None:
    """The config stored inside the model file (safetensors metadata, ONNX metadata_props, OpenVINO rt_info,
    TorchScript extra file), if any."""
    kind = MODEL_SUFFIXES[path.suffix]
    try:
        if kind == "safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="numpy") as f:
                text = (f.metadata() or {}).get("config")
        elif kind == "onnx":
            text = onnx_session(path).get_modelmeta().custom_metadata_map.get(ONNX_CONFIG_KEY)
        elif kind == "openvino":
            model = _openvino_core().read_model(str(path))
            key = ["framework", ONNX_CONFIG_KEY]  # the ONNX metadata_props, as OpenVINO keeps them
            text = model.get_rt_info(key).astype(str) if model.has_rt_info(key) else None
        else:
            import torch

            extra = {TORCHSCRIPT_CONFIG: ""}
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
            text = extra[TORCHSCRIPT_CONFIG]
        return json.loads(text) if text else None
    except TinyGANError:
        raise
    except Exception as e:  # truncated / not a model file
        raise TinyGANError(f"model file {path} is corrupt or not a {kind} file "
                           f"({_first_line(e)}); re-run the export stage") from None


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TinyGANError(f"{path} is not a readable JSON file ({_first_line(e)}); re-run the export stage") from None


def read_config(model_path: str | os.PathLike) -> dict:
    """Config of an exported model: sibling ``config.json``, else the config embedded in the file, else
    ``<stem>.json`` (the layout of the train stage's ``data/student/generator.safetensors``)."""
    path = _check_model_path(model_path)
    sibling = path.with_name("config.json")
    if sibling.is_file():
        return _valid_config(_read_json(sibling), str(sibling))
    cfg = _embedded_config(path)
    if cfg is not None:
        return _valid_config(cfg, str(path))
    stem_json = path.with_suffix(".json")
    if stem_json.is_file():
        return _valid_config(_read_json(stem_json), str(stem_json))
    raise TinyGANError(f"no config for {path}: expected {sibling} or a config embedded in the file; "
                       f"re-run the export stage")


def load_generator(model_path: str | os.PathLike):
    """The eval-mode ``tinygan.models.Generator`` stored in a safetensors file (imports torch)."""
    from safetensors import safe_open

    from tinygan.models import Generator

    path = _check_model_path(model_path)
    if path.suffix != ".safetensors":
        raise TinyGANError(f"load_generator needs a .safetensors file, got {path}")
    cfg = read_config(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise TinyGANError(f"model file {path} is corrupt or not a safetensors file ({_first_line(e)}); "
                           f"re-run the export stage") from None
    G = Generator(**{k: cfg[k] for k in CONFIG_KEYS})
    try:
        G.load_state_dict(state)
    except RuntimeError as e:
        raise TinyGANError(f"weights in {path} do not fit its config {dict((k, cfg[k]) for k in CONFIG_KEYS)} "
                           f"({_first_line(e)}); re-run the export stage") from None
    G.eval()
    for p in G.parameters():
        p.requires_grad_(False)
    return G


def onnx_session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise TinyGANError(f"model file {path} is corrupt or not an ONNX file ({_first_line(e)}); "
                           f"re-run the export stage") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


# ---- runners: one calling convention for torch and onnxruntime ------------------------------------------

class TorchRunner:
    """``runner(z, y) -> float32 [N,3,H,W]`` around a torch Generator (numpy in, numpy out, no grad).

    ``embed(y)`` returns class embeddings and ``from_embedding(z, emb)`` runs G on given embeddings
    (used for class interpolation)."""

    can_embed = True

    def __init__(self, G, batch: int = BATCH, z_dim: int | None = None):
        self.G = G
        self.batch = batch
        self.z_dim = G.config["z_dim"] if z_dim is None else z_dim

    def _run(self, fn, *arrays: np.ndarray) -> np.ndarray:
        import torch

        device = next(self.G.parameters()).device
        was_training = self.G.training
        self.G.eval()
        out = []
        try:
            with torch.no_grad():
                for i in range(0, len(arrays[0]), self.batch):
                    chunk = [torch.from_numpy(np.ascontiguousarray(a[i:i + self.batch])).to(device) for a in arrays]
                    out.append(fn(*chunk).float().cpu().numpy())
        finally:
            self.G.train(was_training)
        return np.concatenate(out)

    def __call__(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self._run(self.G, z.astype(np.float32), y.astype(np.int64))

    def embed(self, y: np.ndarray) -> np.ndarray:
        return self._run(self.G.embedding, np.asarray(y, dtype=np.int64))

    def from_embedding(self, z: np.ndarray, emb: np.ndarray) -> np.ndarray:
        return self._run(lambda zz, ee: forward_with_embedding(self.G, zz, ee), z.astype(np.float32),
                         emb.astype(np.float32))


class ScriptRunner(TorchRunner):
    """A ``TorchRunner`` around the exported TorchScript file: the traced graph takes class indices only (no
    class interpolation)."""

    can_embed = False


class OnnxRunner:
    """``runner(z, y) -> float32 [N,3,H,W]`` around an onnxruntime session of an exported ONNX file."""

    can_embed = False

    def __init__(self, session, z_dim: int, batch: int = BATCH):
        self.session = session
        self.z_dim = z_dim
        self.batch = batch

    def _run(self, feeds: dict) -> np.ndarray:
        return self.session.run(["image"], feeds)[0]

    def __call__(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(z), self.batch):
            feeds = {"z": np.ascontiguousarray(z[i:i + self.batch], dtype=np.float32),
                     "y": np.ascontiguousarray(y[i:i + self.batch], dtype=np.int64)}
            out.append(self._run(feeds))
        return np.concatenate(out)


class OpenVinoRunner(OnnxRunner):
    """``runner(z, y)`` around an OpenVINO model compiled for the CPU in float32 (``OPENVINO_PRECISION``)."""

    def _run(self, feeds: dict) -> np.ndarray:
        return self.session(feeds)["image"]


def import_openvino():
    """The ``openvino`` module, imported with its usage telemetry off.

    Importing openvino (and ``convert_model``) sends usage events to Intel unless the user opted out
    (``openvino_telemetry``, a dependency of the openvino wheel). tinygan sends nothing anywhere: before the
    first import, ``openvino_telemetry`` is marked absent (``sys.modules`` entry None), and openvino falls back
    to its own no-op stub. A process that imported openvino_telemetry itself keeps it."""
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)
    import openvino

    return openvino


def _openvino_core():
    return import_openvino().Core()


def _load_script(path: Path):
    import torch

    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:
        raise TinyGANError(f"model file {path} is corrupt or not a TorchScript file ({_first_line(e)}); "
                           f"re-run the export stage") from None


def open_model(model_path: str | os.PathLike) -> tuple[TorchRunner | OnnxRunner, dict]:
    """(runner, config) for an exported model file; ONNX and OpenVINO never import torch."""
    path = _check_model_path(model_path)
    cfg, kind = read_config(path), MODEL_SUFFIXES[path.suffix]
    if kind == "onnx":
        return OnnxRunner(onnx_session(path), cfg["z_dim"]), cfg
    if kind == "openvino":
        try:
            compiled = _openvino_core().compile_model(str(path), "CPU", OPENVINO_PRECISION)
        except Exception as e:
            raise TinyGANError(f"model file {path} is corrupt or not an OpenVINO IR file (with its .bin beside it) "
                               f"({_first_line(e)}); re-run the export stage") from None
        return OpenVinoRunner(compiled, cfg["z_dim"]), cfg
    if kind == "torchscript":
        return ScriptRunner(_load_script(path), z_dim=cfg["z_dim"]), cfg
    return TorchRunner(load_generator(path)), cfg


def forward_with_embedding(G, z, emb):
    """Run Generator ``G`` on noise ``z`` [N,z_dim] with class embeddings ``emb`` [N,emb_dim] given directly
    (e.g. a mix of two classes' embeddings) instead of class indices.

    Implemented with a forward hook that replaces the output of ``G.embedding``: ``G.forward`` looks the
    embedding up once and feeds it to every conditional BatchNorm, so this is exactly G with that embedding.
    """
    import torch

    if not isinstance(getattr(G, "embedding", None), torch.nn.Embedding):
        raise TinyGANError("the generator has no shared class embedding `G.embedding`; class interpolation "
                           "needs it")
    handle = G.embedding.register_forward_hook(lambda module, inputs, output: emb.to(output.dtype))
    try:
        return G(z, torch.zeros(z.shape[0], dtype=torch.long, device=z.device))
    finally:
        handle.remove()


def _as_runner(G) -> TorchRunner | OnnxRunner:
    if isinstance(G, (TorchRunner, OnnxRunner)):  # the subclasses too
        return G
    return TorchRunner(G)  # a torch Generator


# ---- noise, images ----------------------------------------------------------------------------------------

def draw_z(seed: int, truncation: float, dim: int = Z_DIM, latent: str = "biggan") -> np.ndarray:
    """One noise vector for interpolation seed ``seed``, float32 [dim], of the teacher's latent recipe
    (``tinygan.teacher.latent_z``): "biggan" ``truncation * truncated_normal(dim)`` (±2), "stylegan" standard
    normal."""
    return latent_z(latent, np.random.default_rng(int(seed)), truncation, dim)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float NCHW images in [-1, 1] -> uint8 NHWC (``tinygan.teacher.quantize``)."""
    return quantize(np.transpose(images, (0, 2, 3, 1)))


def tile(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """uint8 [rows*cols, H, W, 3] (row-major) -> one uint8 [rows*H, cols*W, 3] sheet, no gaps."""
    _, h, w, c = images.shape
    return images.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


def png_bytes(image: np.ndarray, fmt: str = "PNG") -> bytes:
    """uint8 HxWx3 ``image`` encoded as PNG (or ``fmt`` "JPEG": quality JPEG_QUALITY, deterministic)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, **({"quality": JPEG_QUALITY} if fmt == "JPEG" else {}))
    return buf.getvalue()


def save_png(path: str | os.PathLike, image: np.ndarray) -> str:
    """Write uint8 HxWx3 ``image`` as a PNG (a JPEG when ``path`` ends in .jpg / .jpeg), atomically; return
    the path."""
    path = Path(path)
    _writable_dir(path.parent)
    try:
        write_bytes(path, png_bytes(image, IMAGE_FORMATS.get(path.suffix.lower(), "PNG")))
    except OSError as e:
        raise TinyGANError(f"cannot write {path} ({e.strerror or e}); choose a writable output path") from None
    return str(path)


def _writable_dir(d: Path) -> None:
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TinyGANError(f"cannot create output directory {d} ({e.strerror or e}); choose a writable "
                           f"output path") from None
    if not os.access(d, os.W_OK):
        raise TinyGANError(f"output directory {d} is not writable; choose a writable output path")


# ---- class names ------------------------------------------------------------------------------------------

def _norm(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


def load_synsets(path: str | os.PathLike) -> dict[int, list[str]]:
    """Class index -> names from an ImageNet ``LOC_synset_mapping.txt`` (``<wnid> <name>, <name>, ...``)."""
    path = Path(path)
    if not path.is_file():
        raise TinyGANError(f"synset mapping file {path} does not exist; give ImageNet's LOC_synset_mapping.txt "
                           f"or leave it out to use the shipped class names")
    out: dict[int, list[str]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        wnid, _, names = line.strip().partition(" ")
        if not imagenet.is_wnid(wnid) or not names.strip():
            raise TinyGANError(f"{path}:{n}: expected '<ILSVRC-2012 wnid> <name>, <other names>', got "
                               f"{line.strip()[:60]!r}")
        out[imagenet.index_of(wnid)] = [s.strip() for s in names.split(",") if s.strip()]
    return out


class ClassNames(dict):
    """Normalised name -> class indices; ``own``: the names of a model's own classes (not ImageNet's)."""

    own = False


@functools.lru_cache(maxsize=1)
def _shipped_synsets() -> dict[int, list[str]]:
    """Every ImageNet class's names, main name first (``SYNSETS``; tests check it against ``tinygan.classes``)."""
    return load_synsets(SYNSETS)


def class_names(synsets: str | None = None, cfg: dict | None = None) -> ClassNames:
    """Normalised name -> class indices (a list: a few ImageNet names, e.g. 'crane', name two classes): the
    ``class_names`` an exported model's config records (data other than ImageNet), else ImageNet's."""
    if cfg is not None and "class_names" in cfg:
        table = {int(i): [name] for i, name in cfg["class_names"].items()}
    else:
        table = _shipped_synsets()
        for i, names in (load_synsets(synsets) if synsets else {}).items():
            table[i] = table[i] + names
    out = ClassNames()
    out.own = cfg is not None and "class_names" in cfg
    for i, names in table.items():
        for name in names:
            key = _norm(name)
            if key and i not in out.setdefault(key, []):
                out[key].append(i)
    return out


def resolve_class(spec: str | int, n_classes: int = imagenet.N_CLASSES,
                  names: dict[str, list[int]] | None = None) -> int:
    """Class index of an index (``"207"``), a wnid (``"n02099601"``) or a name (``"golden retriever"``)."""
    s = str(spec).strip()
    if s.isdigit():
        i = int(s)
        if i >= n_classes:
            raise TinyGANError(f"class index {i} is out of range: the model has classes 0-{n_classes - 1}")
        return i
    names = class_names() if names is None else names
    own = getattr(names, "own", False)
    hits = names.get(_norm(s), [])  # first: a model's own class may be a folder named like a wnid
    if len(hits) > 1 and not own:  # a synonym of other classes too: the class whose main name it is
        hits = [i for i in hits if _norm(imagenet.name_of(i)) == _norm(s)] or hits
    if not hits and re.fullmatch(r"n\d{8}", s) and not own:
        i = imagenet.index_of(s)  # TinyGANError if not an ILSVRC-2012 wnid
    else:
        if len(hits) > 1:
            options = ", ".join(f"{i} ({imagenet.wnid_of(i)}, {imagenet.name_of(i)})" for i in hits)
            raise TinyGANError(f"class name {s!r} is ambiguous: it names classes {options}; give the index or wnid")
        if not hits:
            raise TinyGANError(_unknown_class(s, n_classes, names, own))
        i = hits[0]
    if i >= n_classes:
        raise TinyGANError(f"class {s!r} (index {i}) is out of range: the model has classes 0-{n_classes - 1}")
    return i


def _unknown_class(s: str, n_classes: int, names: dict[str, list[int]], own: bool) -> str:
    """The message for an unknown class name: the classes one of whose names holds it as a word ("cat":
    tabby cat, tiger cat, ...) or is close to it, and what else may be given."""
    key = _norm(s)
    word = re.compile(rf"\b{re.escape(key)}\b")
    matched = ([name for name in names if word.search(name)]
               or difflib.get_close_matches(key, list(names), n=5, cutoff=0.6))
    found = {i: name for name in reversed(matched) for i in names[name]}  # the first name matched per class
    shown = [f"{i} ({name if own else imagenet.name_of(i)})" for i, name in sorted(found.items())[:12]]
    hint = f"; did you mean: {', '.join(shown)}{', ...' if len(found) > 12 else ''}" if found else ""
    what = "one of the model's class names" if own else "a wnid (e.g. n02099601) or an ImageNet class name"
    return f"unknown class {s!r}{hint}; give a class index (0-{n_classes - 1}) or {what}"


def _label(i: int, cfg: dict) -> str:
    """How messages name class ``i`` of a model: its recorded name, else its ImageNet wnid and name."""
    if "class_names" in cfg:
        return cfg["class_names"].get(str(i), "unnamed")
    return f"{imagenet.wnid_of(i)}, {imagenet.name_of(i)}"


def _warn_untrained(indices: Sequence[int], cfg: dict) -> None:
    trained = cfg.get("classes")
    if not trained:
        return
    for i in indices:
        if i not in trained:
            print(f"warning: class {i} ({_label(i, cfg)}) is not one of the "
                  f"{len(trained)} classes the model was trained on; its images will not be meaningful",
                  file=sys.stderr)


# ---- sheets -----------------------------------------------------------------------------------------------

def class_grid(G, indices: Sequence[int], n: int, truncation: float, seed: int,
               latent: str = "biggan") -> np.ndarray:
    """uint8 [len(indices)*n, H, W, 3]: ``n`` images per class, image k of class c from the noise
    ``draw_z(latent, seed, c, k)`` of ``tinygan.teacher``.

    A class's images are bit-identical whichever other classes are asked for (see ``class_batches``)."""
    return np.concatenate([images for _, _, images in
                           class_batches(_as_runner(G), indices, n, truncation, seed, latent)])


def class_batches(runner, indices: Sequence[int], n: int, truncation: float,
                  seed: int, latent: str = "biggan") -> Iterator[tuple[int, int, np.ndarray]]:
    """``(j, k0, images)``: uint8 [b, H, W, 3] images k0 .. k0+b-1 of class ``indices[j]``, b <= runner.batch,
    converted as soon as they are made: memory holds one batch of float images, whatever ``n``.

    Image k of class c comes from ``tinygan.teacher.draw_z(latent, seed, c, k)``; a class is cut into batches
    from k = 0 (the cut the runner itself makes), so its images do not depend on the other classes (kernels may
    round differently for other batch shapes)."""
    for j, c in enumerate(indices):
        for k0 in range(0, n, runner.batch):
            ks = np.arange(k0, min(n, k0 + runner.batch))
            z = teacher_z(latent, seed, np.full(len(ks), c), ks, truncation, runner.z_dim)
            yield j, k0, to_uint8(runner(z, np.full(len(ks), c, dtype=np.int64)))


def _fill_sheet(batches: Iterable[tuple[int, int, np.ndarray]], rows: int, cols: int) -> np.ndarray:
    """uint8 [rows*H, cols*W, 3]: the ``class_batches`` images placed batch by batch (row j, columns k0...)."""
    sheet = None
    for j, k0, images in batches:
        b, h, w, _ = images.shape
        if sheet is None:
            sheet = np.empty((rows * h, cols * w, 3), np.uint8)
        sheet[j * h:(j + 1) * h, k0 * w:(k0 + b) * w] = tile(images, 1, b)
    return sheet


def _check_sheet(rows: int, cols: int, resolution: int, hint: str) -> None:
    """Refuse, before generating anything, a sheet larger than MAX_SHEET_PIXELS."""
    pixels = rows * cols * resolution * resolution
    if pixels > MAX_SHEET_PIXELS:
        raise TinyGANError(f"a sheet of {rows} x {cols} images of {resolution}x{resolution} px would have "
                           f"{pixels / 2 ** 20:,.0f} Mpixel, more than the {MAX_SHEET_PIXELS >> 20} Mpixel one PNG "
                           f"may have; {hint}")


def interpolation_sheet(G, kind: str, a: int, b: int, fixed: Sequence[int], steps: int = 8,
                        truncation: float = 0.5, latent: str = "biggan") -> np.ndarray:
    """Interpolation sheet (paper Fig. 10): uint8 [len(fixed)*H, steps*W, 3], one row per entry of ``fixed``.

    ``kind="classes"``: ``a``, ``b`` are class indices; each row keeps z = ``draw_z(seed, truncation)`` for a
    seed in ``fixed`` and mixes the class embedding linearly from a to b.
    ``kind="seeds"``: ``a``, ``b`` are seeds; each row keeps a class index from ``fixed`` and moves z linearly
    from ``draw_z(a)`` to ``draw_z(b)``.
    ``G`` is a torch Generator (any device) or a runner from ``open_model`` (an ONNX runner can do "seeds" only).
    ``latent``: the teacher's latent recipe (see ``draw_z``).
    """
    runner = _as_runner(G)
    if steps < 2:
        raise TinyGANError(f"interpolation needs at least 2 steps, got {steps}")
    fixed = [int(f) for f in fixed]
    if not fixed:
        raise TinyGANError("interpolation needs at least one row (a seed for 'classes', a class for 'seeds')")
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    if kind == "classes":
        if not runner.can_embed:
            raise TinyGANError("interpolation between classes needs the class embedding, which this exported "
                               "graph does not expose: use the exported generator.safetensors instead")
        ea, eb = runner.embed(np.array([a, b]))
        emb = np.tile((1 - t) * ea + t * eb, (len(fixed), 1))
        z = np.repeat(np.stack([draw_z(s, truncation, runner.z_dim, latent) for s in fixed]), steps, axis=0)
        images = runner.from_embedding(z, emb)
    elif kind == "seeds":
        za, zb = draw_z(a, truncation, runner.z_dim, latent), draw_z(b, truncation, runner.z_dim, latent)
        z = np.tile((1 - t) * za + t * zb, (len(fixed), 1)).astype(np.float32)
        y = np.repeat(np.asarray(fixed, dtype=np.int64), steps)
        images = runner(z, y)
    else:
        raise TinyGANError(f"unknown interpolation kind {kind!r}: use 'classes' or 'seeds'")
    return tile(to_uint8(images), len(fixed), steps)


def _parse_interpolate(spec: str, n_classes: int, names) -> tuple[str, int, int]:
    kind, _, rest = spec.partition(":")
    parts = [p.strip() for p in rest.split(",")]
    if kind not in ("classes", "seeds") or len(parts) != 2 or not all(parts):
        raise TinyGANError(f"interpolate {spec!r} is not understood: use 'classes:A,B' (class index, wnid or "
                           f"name) or 'seeds:S1,S2' (integers)")
    if kind == "classes":
        return kind, resolve_class(parts[0], n_classes, names), resolve_class(parts[1], n_classes, names)
    try:
        return kind, int(parts[0]), int(parts[1])
    except ValueError:
        raise TinyGANError(f"interpolate {spec!r}: seeds must be integers, e.g. 'seeds:0,1'") from None


# ---- the command ------------------------------------------------------------------------------------------

def generate(model_path: str, out: str, classes: list[str], n: int, truncation: float, seed: int,
             grid: bool = True, interpolate: str | None = None, steps: int = 8,
             synsets: str | None = None) -> list[str]:
    """Generate PNGs with an exported model; return the written paths.

    - ``grid=True``: one grid, a row per class, ``n`` columns; ``out`` is a ``.png`` or ``.jpg`` / ``.jpeg``
      path (a JPEG) or a directory (``<out>/grid.png``); another image suffix (.webp) is refused.
    - ``grid=False``: ``<out>/<wnid>_<k>.png`` for k < n; ``out`` is a directory.
    - ``interpolate="classes:A,B"``: a sheet of ``n`` rows (z from seeds ``seed .. seed+n-1``), ``steps``
      columns from class A to B; ``classes`` is ignored. ``interpolate="seeds:S1,S2"``: a row per class in
      ``classes``, z moving from seed S1 to S2. ``out`` is a ``.png`` / ``.jpg`` path or a directory
      (``<out>/interp_<kind>_<A>_<B>.png``). Needs the safetensors model for "classes".
    """
    check_truncation(truncation, "generate --truncation")
    if n < 1:
        raise TinyGANError(f"n (images per class / interpolation rows) must be at least 1, got {n}")
    if interpolate and steps < 2:
        raise TinyGANError(f"steps must be at least 2, got {steps}")
    cfg = read_config(model_path)
    names = class_names(synsets, cfg)
    n_classes, latent = class_count(cfg), cfg.get("latent", "biggan")  # exports before `latent`: BigGAN's
    out_path = Path(out)
    as_file = _output_is_file(out_path)

    if interpolate:
        kind, a, b = _parse_interpolate(interpolate, n_classes, names)
        if kind == "seeds":
            fixed = [resolve_class(c, n_classes, names) for c in classes]
            if not fixed:
                raise TinyGANError("seed interpolation needs at least one class (one row per class)")
            _warn_untrained(fixed, cfg)
        else:
            fixed = [seed + i for i in range(n)]
            _warn_untrained([a, b], cfg)
        if kind == "classes" and cfg["n_classes"] == 0:
            raise TinyGANError("interpolation between classes needs a class-conditional model; this one is "
                               "unconditional (n_classes 0): use seeds:S1,S2")
        if kind == "classes" and model_format(model_path) != "safetensors":
            raise TinyGANError(f"interpolation between classes needs the class embedding, which the "
                               f"{model_format(model_path)} graph does not expose: use the exported "
                               f"generator.safetensors instead")
        target = out_path if as_file else out_path / f"interp_{kind}_{a}_{b}.png"
        _check_sheet(len(fixed), steps, cfg["resolution"], "use fewer rows (-n, or fewer classes) or --steps")
        _writable_dir(target.parent)
        runner, _ = open_model(model_path)
        return [save_png(target, interpolation_sheet(runner, kind, a, b, fixed, steps, truncation,
                                                              latent))]

    indices = [resolve_class(c, n_classes, names) for c in classes]
    if not indices:
        raise TinyGANError("no classes given: name at least one class (index, wnid or name)")
    _warn_untrained(indices, cfg)
    if not grid and as_file:
        raise TinyGANError(f"output {out} is an image file, but individual images (no grid) need a directory")
    if grid:
        _check_sheet(len(indices), n, cfg["resolution"], "use --no-grid for one PNG per image, or fewer classes "
                                                         "or a smaller -n")
    _writable_dir(out_path.parent if as_file else out_path)
    runner, _ = open_model(model_path)
    return _write_images(runner, out_path, as_file, grid, indices, n, truncation, seed, cfg)


def _output_is_file(out: Path) -> bool:
    """True for a .png / .jpg / .jpeg path; a directory for no suffix or one that is not an image format's;
    TinyGANError for another image format's (.webp, .gif, ...), which would otherwise become a directory."""
    suffix = out.suffix.lower()
    if suffix in IMAGE_FORMATS:
        return True
    from PIL import Image

    if suffix and suffix in Image.registered_extensions() and not out.is_dir():
        raise TinyGANError(f"output {out}: generate writes .png or .jpg / .jpeg images; give such a path or a "
                           f"directory")
    return False


def _write_images(runner, out_path: Path, as_file: bool, grid: bool, indices: list[int], n: int,
                  truncation: float, seed: int, cfg: dict) -> list[str]:
    """The grid (filled batch by batch), or one PNG per image (``<wnid>_<k>.png``; ``<index>_<k>.png`` for a
    model of other data than ImageNet) written as soon as its batch is made."""
    batches = class_batches(runner, indices, n, truncation, seed, cfg.get("latent", "biggan"))
    if grid:
        target = out_path if as_file else out_path / "grid.png"
        return [save_png(target, _fill_sheet(batches, len(indices), n))]
    written = []
    for j, k0, images in batches:
        for i, image in enumerate(images):
            stem = indices[j] if "class_names" in cfg else imagenet.wnid_of(indices[j])
            written.append(save_png(out_path / f"{stem}_{k0 + i}.png", image))
    return written
