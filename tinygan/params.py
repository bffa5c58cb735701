"""params.yaml: read and validated in one place, before any work starts.

Every key has a spec (type, range, choices). Unknown keys, missing keys, wrong types, out-of-range values and
unknown choices are rejected with one line naming the key. Numbers written by `dvc exp run -S x=1e-6` arrive
as strings ("1e-06"); they are accepted as numbers.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable

import yaml

from tinygan.errors import TinyGANError
from tinygan.teacher import LATENTS, TEACHER_SAMPLES, TRUNCATION_RANGE

PARAMS_FILE = "params.yaml"


# ---- value specs ------------------------------------------------------------------------------------------

class Spec:
    """One param: ``check(key, value)`` returns the normalised value or raises TinyGANError."""

    def __init__(self, check: Callable[[str, Any], Any], doc: str, help: str = ""):
        self.check, self.doc, self.help = check, doc, help


def _bad(key: str, value: Any, want: str) -> TinyGANError:
    return TinyGANError(f"params: '{key}' is {value!r}, expected {want} (edit params.yaml or pass -S {key}=...)")


def _number(key: str, value: Any, want: str) -> float:
    if isinstance(value, bool):
        raise _bad(key, value, want)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise _bad(key, value, want) from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(key, value, want)
    return value


def Float(lo: float | None = None, hi: float | None = None, optional: bool = False, help: str = "") -> Spec:
    want = "a number" + (f" >= {lo}" if lo is not None else "") + (f" <= {hi}" if hi is not None else "")

    def check(key, v):
        if v is None and optional:
            return None
        v = float(_number(key, v, want))
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise _bad(key, v, want)
        return v
    return Spec(check, want + (" or null" if optional else ""), help)


def Int(lo: int | None = None, hi: int | None = None, optional: bool = False, help: str = "") -> Spec:
    want = "an integer" + (f" >= {lo}" if lo is not None else "") + (f" <= {hi}" if hi is not None else "")

    def check(key, v):
        if v is None and optional:
            return None
        n = _number(key, v, want)
        if float(n) != int(n):
            raise _bad(key, v, want)
        n = int(n)
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            raise _bad(key, v, want)
        return n
    return Spec(check, want + (" or null" if optional else ""), help)


def Bool(help: str = "") -> Spec:
    def check(key, v):
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.lower() in ("true", "false"):
            return v.lower() == "true"
        raise _bad(key, v, "true or false")
    return Spec(check, "true or false", help)


def Str(optional: bool = False, help: str = "") -> Spec:
    def check(key, v):
        if v is None and optional:
            return None
        if not isinstance(v, str) or not v.strip():
            raise _bad(key, v, "a non-empty string" + (" or null" if optional else ""))
        return os.path.expandvars(os.path.expanduser(v))
    return Spec(check, "a string" + (" or null" if optional else ""), help)


def Choice(*choices: str, help: str = "") -> Spec:
    def check(key, v):
        if v not in choices:
            raise TinyGANError(f"params: '{key}' is {v!r}, expected one of {', '.join(choices)}")
        return v
    return Spec(check, "one of " + ", ".join(choices), help)


def Floats(n: int, lo: float | None = None, hi: float | None = None, help: str = "") -> Spec:
    """A list of ``n`` numbers, each within [lo, hi] (``-S key=[a,b,c]`` arrives as a string)."""
    item = Float(lo, hi)
    want = f"a list of {n} numbers" + (f" in [{lo}, {hi}]" if lo is not None and hi is not None else "")

    def check(key, v):
        if isinstance(v, str) and v.strip().startswith("["):
            v = yaml.safe_load(v)
        if not isinstance(v, (list, tuple)) or len(v) != n:
            raise _bad(key, v, want)
        return [item.check(key, x) for x in v]
    return Spec(check, want, help)


def PowerOfTwo(lo: int, hi: int, help: str = "") -> Spec:
    want, integer = f"a power of two {lo}-{hi}", Int(lo, hi)

    def check(key, v):
        n = integer.check(key, v)
        if n & (n - 1):
            raise _bad(key, v, want)
        return n
    return Spec(check, want, help)


def Classes(help: str = "") -> Spec:
    def check(key, v):
        if isinstance(v, str) and v.startswith("["):  # `-S classes=[1,2]` arrives as a string
            v = yaml.safe_load(v)
        return v  # resolved by _resolve_classes once prepare.layout is known
    return Spec(check, "'animals', 'all', or a list of class indices / wnids (folder layouts: indices / folder "
                       "names)", help)


class MapOf:
    """A mapping of user-chosen names to groups that each follow ``schema`` (may be empty)."""

    def __init__(self, schema: dict):
        self.schema = schema


# ---- the schema: every key of params.yaml -----------------------------------------------------------------

SCHEMA: dict[str, Any] = {
    "seed": Int(0, help="seed of every random draw (teacher noise, batches, init, evaluation noise)"),
    "classes": Classes(help="the selected classes: 'animals' (0-397), 'all', or a list of indices / wnids"),
    # loss weights (paper Eq. 6-7); top level so `dvc exp run -S lambda_pix=0.1` works verbatim
    "lambda_pix": Float(0, help="λ1: weight of L_KD_pix (official 0.2), minus lambda_pix_decay per epoch"),
    "lambda_pix_decay": Float(0, help="subtracted from λ1 at the end of each epoch (official 0.01), floor 0"),
    "lambda_kd_s": Float(0, help="λ2: L_KD_S, the student fools D on teacher pairs (official 0.01)"),
    "lambda_gan_s": Float(0, help="λ3: L_GAN_S, the student fools D with real-image statistics (official 0.002)"),
    "lambda_gan_d": Float(0, help="λ4: L_GAN_D, D tells real images from the student's (official 0.2)"),
    "lambda_feat": Float(0, help="weight of L_KD_feat (1 = paper; 0 = Table 2 'without L_KD_feat')"),
    "lambda_kd_d": Float(0, help="weight of L_KD_D (1 = paper; 0 with lambda_kd_s=0: 'without L_KD_S and L_KD_D')"),
    "lambda_dime": Float(0, help="weight of L_DiME, MMD^2 of train.dime_encoder embeddings of T and S "
                                 "(NICKEL & DiME; 0 = off, the paper)"),
    "demo": MapOf({  # name -> an offline demo world ({} at paper scale: no demo stage); checked as a whole by
                     # the demo stage (tinygan.demo.tree.check_sizes)
        "kind": Choice("imagenet", "cifar10", help="imagenet: 128² ImageNet-layout tree (<root>/imagenet/train) + "
                       "BigGAN-shaped SavedModel (<root>/teacher); cifar10: 32² 10-class folders tree "
                       "(<root>/cifar10/train) + z-512 StyleGAN-style TorchScript teacher (<root>/teacher/teacher.pt)"),
        "root": Str(help="where the world is built (tree, teacher, judge)"),
        "images_per_class": Int(1, 100000, help="synthetic real images per class"),
        "min_side": Int(16, 4096, help="smallest image side of the synthetic tree (cifar10: unused, 32²)"),
        "max_side": Int(16, 4096, help="largest image side of the synthetic tree (cifar10: unused, 32²)"),
        "judge_epochs": Int(1, help="training epochs of the demo judge (Inception's stand-in)"),
    }),
    "prepare": {
        "imagenet_train": Str(help="the train dir, laid out as prepare.layout says (ImageNet: "
                                        "<root>/<wnid>/*.JPEG)"),
        "layout": Choice("imagenet", "folders", "flat", help="imagenet: <root>/<wnid>/*; folders: "
                         "<root>/<class name>/* (classes = sorted folder names); flat: <root>/* (unconditional)"),
        "max_per_class": Int(1, optional=True, help="images per class (null = all)"),
        "resolution": PowerOfTwo(8, 1024, help="side of the real shards' images (I128 preprocessing)"),
        "shard_size": Int(1, help="images per HDF5 shard"),
        "jpeg_draft": Bool(help="decode JPEGs reduced by the largest DCT factor (8, 4, 2) that keeps the short "
                                "side >= resolution, then crop + resize as usual: over twice the images/s, pixels "
                                "within the tolerance README 'Shards' states; false: full-size decode (old bytes)"),
    },
    "sample": {
        "teacher": Str(help="the teacher: a local SavedModel dir / TorchScript file, or a TF-Hub URL"),
        "teacher_dep": Str(help="what DVC tracks for the teacher: the local teacher itself, or the conf file "
                                "naming a URL teacher"),
        "format": Choice("tfhub", "torchscript", help="how to load the teacher"),
        "per_class": Int(1, help="teacher samples per class (paper: 3,000)"),
        "truncation": Float(*TRUNCATION_RANGE, help="biggan: z = truncation x truncated normal (official 0.5); "
                                                   "stylegan: the truncation psi"),
        "latent": Choice("auto", *LATENTS, help="the teacher's noise recipe: biggan (truncated normal x truncation) "
                                                "| stylegan (standard normal, truncation as psi) | auto (TF-Hub/"
                                                "SavedModel and attribute-less TorchScript: biggan; TorchScript "
                                                "declaring z_dim/c_dim/img_resolution: stylegan)"),
        "shard_size": Int(1, help="samples per HDF5 shard"),
    },
    "train": {
        "variant": Choice("dw", "std", help="TinyGAN-dw (depthwise-separable) or TinyGAN-std (3x3 convs)"),
        "ch": Int(1, 512, help="generator channel multiplier (paper: 32)"),
        "d_ch": Int(1, 512, help="discriminator channel multiplier (paper: 32)"),
        "batch_size": Int(1, help="batch per process (paper: 32)"),
        "epochs": Int(1, help="passes over the training teacher pairs (paper: 30)"),
        "holdout_per_class": Int(1, help="teacher pairs per class kept out: held-out L1 and the sample grid"),
        "lr_g": Float(0, help="Adam learning rate of G (official 2e-4)"),
        "lr_d": Float(0, help="Adam learning rate of D (official 2e-4)"),
        "beta1": Float(0, 0.9999, help="Adam beta1 (official 0)"),
        "beta2": Float(0, 0.9999, help="Adam beta2 (official 0.9)"),
        "lr_decay_start": Int(0, help="iteration from which the lr decays linearly to 0 (official 300,000)"),
        "g_every": Int(1, help="one G update every g_every iterations (official code 1; paper text 10)"),
        "adv_every": Int(1, help="adversarial G terms (λ2, λ3) every adv_every-th iteration (official 5)"),
        "ema": Bool(help="keep an EMA of G's weights and export it"),
        "ema_decay": Float(0, 1, help="EMA decay per update"),
        "ema_start": Int(0, help="iteration from which the EMA averages (before: a copy)"),
        "sample_every": Int(1, help="iterations between held-out L1 and the sample grid"),
        "snapshot_every": Int(0, help="keep G every N iterations for the FID-over-training curve (0 = off)"),
        "dime_encoder": Str(help="L_DiME's frozen TorchScript image encoder (Inception call signature); "
                                 "loaded only when lambda_dime > 0"),
        "dime_kernel": Choice("gaussian", "polynomial", help="L_DiME's MMD kernel: gaussian (median-heuristic "
                                                             "bandwidth) or polynomial (KID's cubic)"),
        "precision": Choice("fp32", "tf32", "bf16", "fp16",
                            help="fp32 (official: IEEE float32, TF32 off on CUDA) | tf32 (CUDA: float32 with "
                                 "TensorFloat-32 convolutions and matrix products) | bf16 autocast | fp16 autocast "
                                 "with loss scaling (CUDA only)"),
        "compile": Bool(help="torch.compile G and D (fused kernels: faster on CUDA, float results differ slightly)"),
        "g_calls": Choice("separate", "joint", help="separate: G runs once per batch (BatchNorm statistics over "
                                                    "batch_size images, official) | joint: teacher z and z' in one "
                                                    "call (statistics over both)"),
        "g_noise": Choice("fresh", "reuse", help="z' of the adversarial G terms: fresh (a new draw, official) | "
                                                 "reuse (the D step's z' and its student images)"),
        "batches": Choice("shuffled", "balanced", help="the teacher pairs' batches: shuffled (a random order cut "
                                                       "into batches, official) | balanced (every class equally often "
                                                       "in each batch: shards.balanced_epoch_batches)"),
        "embed_init": Str(optional=True, help=".npy [classes, 128] initialising the student's class embedding "
                                               "(row i = class i; the authors' cls_weight_reduce.npy); null = "
                                               "random init"),
        "embed_init_dep": Str(help="what DVC tracks for train.embed_init: the file itself when set, else the "
                                   "placeholder conf/train/no-embed-init.txt"),
    },
    "evaluate": {
        "protocol": Choice("authors", "stylegan2-ada", help="how images and logits reach the metrics: authors "
                           "(TF-GAN: float images, IS over the first 1000 logits) or stylegan2-ada (uint8 images, "
                           "IS over all outputs without output bias); README 'Evaluation protocols'"),
        "extractor": Choice("judge", "inception", "torchscript", help="feature extractor: the demo judge, NVlabs "
                            "Inception, or any TorchScript image encoder (features only: no IS)"),
        "extractor_path": Str(help="the extractor's TorchScript file"),
        "encoder": {  # read only with extractor: torchscript
            "input_size": Int(8, 1024, help="torchscript encoder: square input size it is resized to (e.g. 224)"),
            "input_range": Choice("unit", "signed", "byte", help="torchscript encoder: pixel range before "
                                  "mean/std: unit [0,1], signed [-1,1], byte [0,255]"),
            "mean": Floats(3, -1000, 1000, help="torchscript encoder: per-channel mean subtracted (RGB)"),
            "std": Floats(3, 1e-6, 1000, help="torchscript encoder: per-channel std divided by (RGB)"),
        },
        "n_samples": Int(10, help="generated images for IS / FID / KID (paper: 50,000)"),
        "per_class_samples": Int(2, help="generated images per class for intra-FID (paper: 5,000)"),
        "curve_samples": Int(2, help="images per training snapshot for the FID-over-training curve"),
        "teacher_samples": Choice(*TEACHER_SAMPLES, help="the teacher row's images: fresh (the authors' way: "
                                  "stage teacher_eval samples teacher_per_class new images per class with the "
                                  "evaluation noise stream, the student is evaluated on the same noise) | stored "
                                  "(the training pairs in data/teacher, at most sample.per_class per class)"),
        "teacher_per_class": Int(2, help="fresh teacher images per class (paper: 5,000); at least "
                                         "per_class_samples"),
        "pr_samples": Int(6, help="real and generated feature rows (each; overall and per class) for precision, "
                                  "recall, density and coverage: k-NN cost grows with its square "
                                  "(StyleGAN2-ADA: 50,000); refstats keeps this many real rows"),
    },
    "export": {
        "opset": Int(13, 21, help="ONNX opset"),
        "atol": Float(0, help="max |difference| of each exported float32 format vs the PyTorch model"),
        "quality_samples": Int(2, help="images (fp32 vs int8 / fp16, same z and y) for the quality cost of the "
                                       "reduced-precision exports, measured with the evaluate extractor"),
        "calibration_samples": Int(1, help="latents the int8 quantisation is calibrated on"),
        "page": Bool(help="build the browser page (export/page/: onnxruntime-web, vendored by `tinygan "
                          "fetch-web-runtime`, which needs npm); false: export without it"),
    },
    # Knobs that change speed or logging, never an artifact. No stage lists this group in dvc.yaml, so
    # changing them re-runs nothing (tests/test_dvc.py checks both directions).
    "runtime": {
        "prepare": {"workers": Int(0, help="decode processes (0 = all cores)")},
        "sample": {"batch_size": Int(1, help="teacher batch (every z depends only on seed, class, index)")},
        "train": {
            "device": Choice("auto", "cpu", "cuda", help="where to train (auto: CUDA when visible)"),
            "workers": Int(0, help="DataLoader prefetch processes"),
            "log_every": Int(1, help="iterations between logged losses"),
            "checkpoint_every": Int(1, help="iterations between checkpoints (the last one always)"),
        },
        "evaluate": {
            "device": Choice("auto", "cpu", "cuda", help="where to evaluate (auto: CUDA when visible)"),
            "batch_size": Int(1, help="images per generator / extractor call"),
        },
    },
}


def _validate(tree: Any, schema: dict | MapOf, prefix: str) -> dict:
    if isinstance(schema, MapOf):
        if tree is None:
            return {}
        if not isinstance(tree, dict):
            raise TinyGANError(f"params: '{prefix.rstrip('.')}' must be a mapping of names to groups (or {{}})")
        return {str(k): _validate(v, schema.schema, f"{prefix}{k}.") for k, v in tree.items()}
    if not isinstance(tree, dict):
        raise TinyGANError(f"params: '{prefix.rstrip('.') or 'params.yaml'}' must be a mapping of keys")
    unknown = sorted(set(tree) - set(schema))
    if unknown:
        raise TinyGANError(f"params: unknown key '{prefix}{unknown[0]}' (known here: {', '.join(schema)})")
    out = {}
    for key, spec in schema.items():
        if key not in tree:
            raise TinyGANError(f"params: missing key '{prefix}{key}' ({_doc(spec)}); add it to params.yaml")
        out[key] = (_validate(tree[key], spec, f"{prefix}{key}.") if isinstance(spec, (dict, MapOf))
                    else spec.check(f"{prefix}{key}", tree[key]))
    return out


def describe(schema: dict | MapOf = SCHEMA, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, accepted values, help) of every param, in schema order (``<name>`` stands for a group's names)."""
    if isinstance(schema, MapOf):
        return describe(schema.schema, f"{prefix}<name>.")
    rows = []
    for key, spec in schema.items():
        rows += (describe(spec, f"{prefix}{key}.") if isinstance(spec, (dict, MapOf))
                 else [(f"{prefix}{key}", spec.doc, spec.help)])
    return rows


def _doc(spec) -> str:
    return "a group" if isinstance(spec, (dict, MapOf)) else spec.doc


def _resolve_classes(v: Any, layout: str) -> Any:
    """ImageNet: the sorted class indices. Folder layouts: the selection as given ('all' or a list of indices /
    folder names), which prepare resolves against the tree's folder names (ignored for flat)."""
    from tinygan import classes

    try:
        if layout == "imagenet":
            return classes.resolve(v)
        if v == "all" or (isinstance(v, list) and v and all(
                isinstance(e, (int, str)) and not isinstance(e, bool) for e in v)):
            return v
        raise TinyGANError(f"class selection {v!r} is not understood: with prepare.layout {layout} use 'all' or "
                           f"a list of class indices / folder names")
    except TinyGANError as e:
        raise TinyGANError(f"params: 'classes': {e}") from None


def _cross_checks(p: dict) -> None:
    p["classes"] = _resolve_classes(p["classes"], p["prepare"]["layout"])
    t = p["train"]
    if t["holdout_per_class"] >= p["sample"]["per_class"]:
        raise TinyGANError(f"params: 'train.holdout_per_class' ({t['holdout_per_class']}) must be smaller than "
                           f"'sample.per_class' ({p['sample']['per_class']}): the rest are the training pairs")
    if max(p["lambda_pix"], p["lambda_feat"], p["lambda_kd_s"], p["lambda_kd_d"],
           p["lambda_gan_s"], p["lambda_gan_d"], p["lambda_dime"]) == 0:
        raise TinyGANError("params: every loss weight (lambda_*) is 0, so nothing would be trained")
    e = p["evaluate"]
    if e["teacher_samples"] == "fresh" and e["teacher_per_class"] < e["per_class_samples"]:
        raise TinyGANError(f"params: 'evaluate.teacher_per_class' ({e['teacher_per_class']}) must be at least "
                           f"'evaluate.per_class_samples' ({e['per_class_samples']}): the teacher's intra-FID uses "
                           f"that many fresh images per class")
    _check_teacher_dep(p["sample"])
    _check_embed_init_dep(t)


def _check_embed_init_dep(t: dict) -> None:
    """DVC must track the class-embedding init when one is set: train.embed_init_dep names the same file."""
    if t["embed_init"] is not None and os.path.normpath(t["embed_init_dep"]) != os.path.normpath(t["embed_init"]):
        raise TinyGANError(f"params: 'train.embed_init_dep' ({t['embed_init_dep']}) must equal 'train.embed_init' "
                           f"({t['embed_init']}) so DVC re-trains when the file changes; pass both "
                           f"(-S train.embed_init=F -S train.embed_init_dep=F)")


def _check_teacher_dep(s: dict) -> None:
    """DVC must track the teacher: a local teacher is its own dependency; a URL is pinned by a file."""
    remote = s["teacher"].startswith(("http://", "https://", "gs://"))
    if not remote and os.path.normpath(s["teacher_dep"]) != os.path.normpath(s["teacher"]):
        raise TinyGANError(f"params: 'sample.teacher_dep' ({s['teacher_dep']}) must equal the local teacher "
                           f"'sample.teacher' ({s['teacher']}) so DVC re-samples when the teacher changes")
    if remote and s["teacher_dep"].startswith(("http://", "https://", "gs://")):
        raise TinyGANError("params: 'sample.teacher_dep' must be a file in the repo naming the URL teacher "
                           "(e.g. conf/teacher/biggan-deep-128.yaml), not a URL")


def validate(raw: dict) -> dict:
    """Validate a params mapping (as read from YAML); return normalised nested dicts."""
    p = _validate(raw, SCHEMA, "")
    _cross_checks(p)
    return p


def load(path: str | os.PathLike = PARAMS_FILE) -> dict:
    """Read and validate ``params.yaml``; one clear TinyGANError line on any problem."""
    path = Path(path)
    if not path.is_file():
        raise TinyGANError(f"params: {path} not found; run from the repo root or pass --params PATH")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise TinyGANError(f"params: {path} is not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    return validate(raw or {})
