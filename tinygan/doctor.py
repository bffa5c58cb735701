"""`tinygan doctor`: before a (paper-scale) run, check that what the params point at is in place.

``check(p)`` takes validated params (``tinygan.params.load``'s output) and returns one line per problem, each
saying what is wrong and how to fix it; ``run_checks(p)`` gives the same per check, with a line to print
when it passes. Checks: the teacher loads offline with BigGAN-deep-128's interface, the ImageNet train dir
has a non-empty folder for every selected class, evaluate's feature extractor is in place (the Inception file
with its pinned sha256, or a TorchScript encoder that runs on a probe batch), L_DiME's encoder loads when
lambda_dime > 0, the disk holds the teacher and real shards, and CUDA is visible where a device is set to "cuda".
A teacher or train dir that is not there yet but lies in a demo world (``demo.<world>.root``) passes: the demo stage
builds it before anything reads it.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from tinygan.errors import TinyGANError

REAL_PER_CLASS = 1300  # ImageNet's images per class (at most), when prepare.max_per_class is null


def check(p: dict, data_dir: str | os.PathLike = "data") -> list[str]:
    """Every problem found, one line each (empty: ready to run)."""
    return [line for _, problems in run_checks(p, data_dir) for line in problems]


def run_checks(p: dict, data_dir: str | os.PathLike = "data") -> list[tuple[str, list[str]]]:
    """``(what passed, problems)`` for each check in turn; a check passed when its problems are empty."""
    teacher, train_dir = p["sample"]["teacher"], p["prepare"]["imagenet_train"]
    checks: list[Callable[[], tuple[str, list[str]]]] = [
        lambda: _demo_built(p, "teacher", teacher) or _teacher(
            teacher, p["sample"]["format"], p["classes"] if p["prepare"]["layout"] == "imagenet" else None),
        lambda: _demo_built(p, "prepare.imagenet_train", train_dir) or _imagenet(
            Path(train_dir), p["classes"], p["prepare"]["layout"]),
        lambda: _extractor(p["evaluate"]),
        lambda: _dime_encoder(p["lambda_dime"], p["train"]["dime_encoder"]),
        lambda: _disk(p, Path(data_dir)),
        lambda: _cuda(p),
    ]
    return [c() for c in checks]


def _demo_built(p: dict, what: str, path: str) -> tuple[str, list[str]] | None:
    """A pass when ``path`` does not exist yet but lies in one of the demo stage's worlds (``demo.<world>.root``),
    which ``dvc repro`` builds first; None (check it) otherwise."""
    target = Path(os.path.abspath(path))
    for world in p["demo"].values():
        root = Path(os.path.abspath(world["root"]))
        if not target.exists() and target.is_relative_to(root):
            return f"{what} {path}: the demo stage builds it (its world under {world['root']})", []
    return None


def _teacher(handle: str, kind: str, classes: list[int] | None) -> tuple[str, list[str]]:
    """Loadable offline: a TF-Hub URL must be pre-placed in the TF-Hub cache; then it is loaded and checked,
    and the selected classes (when given as indices) must be the teacher's."""
    from tinygan import teacher

    if kind == "tfhub" and teacher.is_remote(handle):
        cache_dir, sha1 = teacher.tfhub_cache_location(handle)
        module_dir = Path(cache_dir) / sha1
        if not (module_dir / "saved_model.pb").is_file():
            env = "" if os.environ.get("TFHUB_CACHE_DIR") else f" and set TFHUB_CACHE_DIR={cache_dir} (it is unset)"
            return "", [f"teacher {handle}: not pre-placed for offline use ({module_dir}/saved_model.pb is missing); "
                        f"on a connected machine fetch {handle}?tf-hub-format=compressed, extract it into "
                        f"{module_dir}/ ({sha1} = sha1 of the URL){env}, or set sample.teacher to a local "
                        f"SavedModel dir"]
    try:
        t = teacher.load_teacher(handle, kind, device="cpu")
        if classes is not None:
            teacher.check_classes(classes, t.c_dim, f"teacher {handle}")
    except TinyGANError as e:
        return "", [str(e)]
    return (f"teacher {handle} ({kind}) loads offline: z {t.z_dim}, {t.c_dim} classes, {t.resolution}x"
            f"{t.resolution} images, latent {t.latent}"), []


def _imagenet(root: Path, classes: list[int] | list[str] | str, layout: str = "imagenet") -> tuple[str, list[str]]:
    """Every selected class has a folder with image files, as ``prepare.layout`` lays them out (prepare's own
    check): ``<root>/<wnid>/``, ``<root>/<class name>/``, or image files in ``<root>`` itself (flat)."""
    from tinygan.prepare import file_plan

    if not root.is_dir():
        return "", [f"prepare.imagenet_train: {root} is not a directory; set it to your ImageNet train dir "
                    f"(one folder per wnid, e.g. <root>/n01440764/)" if layout == "imagenet" else
                    f"prepare.imagenet_train: {root} is not a directory; set it to your train dir "
                    f"(prepare.layout: {layout})"]
    try:
        plan = file_plan(root, classes, None, layout)
    except TinyGANError as e:
        return "", [f"prepare.imagenet_train: {e}"]
    if layout == "flat":
        return f"train dir {root} (flat): {len(plan.files)} files for the unconditional classes", []
    what = "ImageNet train dir" if layout == "imagenet" else "class-folder train dir"
    return f"{what} {root}: image files for each of the {len(plan.selected)} selected classes", []


def _extractor(e: dict) -> tuple[str, list[str]]:
    """evaluate's feature extractor loads: the Inception file with its pinned sha256, or a TorchScript encoder
    that runs on a probe batch with ``evaluate.encoder``'s settings (tinygan.extractors does the checking)."""
    kind, path = e["extractor"], e["extractor_path"]
    if kind == "judge":
        return "evaluate.extractor is the demo judge: the demo stage builds it", []
    from tinygan.extractors import load_extractor

    try:
        load_extractor(path, kind, device="cpu", encoder=e.get("encoder"))
    except TinyGANError as err:
        return "", [f"evaluate.extractor_path: {err}"]
    if kind == "inception":
        return f"Inception weights at {path} match the pinned sha256 and load", []
    return f"image encoder at {path} loads and runs on a probe batch", []


def _dime_encoder(lambda_dime: float, path: str) -> tuple[str, list[str]]:
    """L_DiME's frozen encoder (train.dime_encoder) loads, when lambda_dime > 0 (else train never opens it)."""
    if lambda_dime <= 0:
        return "lambda_dime is 0: no L_DiME encoder needed", []
    from tinygan.extractors import load_encoder

    try:
        load_encoder(path, device="cpu")
    except TinyGANError as err:
        return "", [f"train.dime_encoder: {err}"]
    return f"L_DiME encoder at {path} loads", []


def _shard_bytes(p: dict) -> tuple[int, int]:
    """Estimated bytes of the teacher shards (the training pairs, plus the fresh evaluation set when
    evaluate.teacher_samples is fresh) and of the real shards at the configured scale."""
    from tinygan.teacher import Z_DIM

    res = p["prepare"]["resolution"]
    n = _n_classes(p)
    e = p["evaluate"]
    per_class = p["sample"]["per_class"] + (e["teacher_per_class"] if e["teacher_samples"] == "fresh" else 0)
    teacher = n * per_class * (res * res * 3 + Z_DIM * 4 + 8)
    real = n * (p["prepare"]["max_per_class"] or REAL_PER_CLASS) * res * res * 3
    return teacher, real


def _n_classes(p: dict) -> int:
    """How many classes prepare will use: the selection (resolved against the folder names for ``folders``,
    1 when they cannot be listed yet), or 1 for ``flat``."""
    from tinygan.prepare import selected_classes

    try:
        return len(selected_classes(Path(p["prepare"]["imagenet_train"]), p["classes"], p["prepare"]["layout"]))
    except TinyGANError:  # reported by the train dir check
        return 1


def _gb(n_bytes: int) -> str:
    return f"{n_bytes / 1e9:.2f} GB"


def _disk(p: dict, data_dir: Path) -> tuple[str, list[str]]:
    """Free space on the disk of ``data_dir`` (its nearest existing parent) for the shards."""
    where = data_dir.absolute()
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    teacher, real = _shard_bytes(p)
    need = f"{_gb(teacher + real)} (teacher shards {_gb(teacher)}, real shards {_gb(real)})"
    if teacher + real > free:
        return "", [f"disk: the shards under {data_dir} need about {need} but only {_gb(free)} is free on {where}; "
                    f"free space there, or lower sample.per_class / prepare.max_per_class / evaluate.teacher_per_class or "
                    f"the class selection"]
    return f"disk: {_gb(free)} free on {where} for about {need}", []


def _devices(p: dict) -> dict[str, str]:
    """The device settings in force, by params key."""
    return {f"runtime.{stage}.device": p["runtime"][stage]["device"] for stage in ("train", "evaluate")}


def _cuda(p: dict) -> tuple[str, list[str]]:
    """CUDA is visible to torch wherever a device is set to "cuda"."""
    wanted = [key for key, device in _devices(p).items() if device == "cuda"]
    if not wanted:
        return "device: no setting requires CUDA (auto uses a GPU when one is visible)", []
    import torch

    if torch.cuda.is_available():
        return f"CUDA is visible ({torch.cuda.get_device_name(0)}) for {', '.join(wanted)}", []
    build = f"torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}"
    return "", [f"{', '.join(wanted)} is cuda but torch sees no CUDA device ({build}); install a CUDA build of "
                f"torch and check the driver / CUDA_VISIBLE_DEVICES, or set it to auto or cpu"]
