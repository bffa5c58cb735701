"""`tinygan score`: IS, FID and KID of any image source against reference statistics, outside the pipeline.

Sources (``source_kind``):

- an exported generator (``generator.safetensors``, ``generator.onnx``, or the TorchScript export; loaded by
  ``tinygan.generate.open_model``): ``n`` images, labels round-robin over the classes, image k of class c from
  ``draw_z(latent, noise_seed, c, k, truncation)`` (``EvalConfig.noise_seed``) with the model's latent
  recipe: the noise evaluate gives the student, so the same settings score the same images;
- a folder of images (.png, .jpg, .jpeg, .webp, .bmp; sorted by name; all of one size; RGB): unreadable files
  are skipped and counted (``skipped`` in the output);
- an ``.npz`` of uint8 images [N, H, W, 3] under the key ``images`` or ``arr_0`` (the guided-diffusion / ADM
  sample-batch format), streamed from the file a batch at a time (never loaded whole).

The measurement is evaluate's own (``tinygan.evaluate``: the extractor under ``evaluate.protocol``, the streaming
statistics, IS over splits, FID, KID against the reference reservoir); reference statistics are a refstats stage
output or a ``tinygan refstats import``. Generated float images reach the extractor as floats, so the protocol
decides whether they are quantised (stylegan2-ada) or not (authors); folder and npz images are uint8 already.
An imported mu/sigma file without a KID reservoir gives IS and FID, and ``kid_note`` says why KID is missing.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import numpy as np
import torch

from tinygan import runtime
from tinygan.errors import TinyGANError
from tinygan.evaluate import EvalConfig, is_fid_kid, load_refstats, student_labels
from tinygan.extractors import load_extractor
from tinygan.generate import class_count, open_model
from tinygan.reference import npy_header
from tinygan.teacher import draw_z

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
NPZ_KEYS = ("images", "arr_0")
MAX_IMAGES = 10_000_000
MAX_SIDE = 4096


def source_kind(source: str | os.PathLike) -> str:
    """"folder", "npz" or "generator" (.safetensors, .onnx, .pt), else one TinyGANError line."""
    path = Path(source)
    if path.is_dir():
        return "folder"
    if not path.is_file():
        raise TinyGANError(f"score: {path} does not exist; give an exported generator, a folder of images or an "
                           f".npz of images")
    if path.suffix == ".npz":
        return "npz"
    if path.suffix in (".safetensors", ".onnx", ".pt"):
        return "generator"
    raise TinyGANError(f"score: {path} is not a generator (.safetensors, .onnx, .pt), a folder or an .npz")


def score(source: str | os.PathLike, refstats_dir: str | os.PathLike, cfg: EvalConfig,
          n: int | None = None) -> dict:
    """The metrics of ``source`` as a flat dict (what `tinygan score` prints). ``n``: images to generate
    (generators; default cfg.n_samples) or the most to read (folders, npz; default all)."""
    kind = source_kind(source)
    dev = runtime.device(cfg.device, "runtime.evaluate.device")
    ext = load_extractor(cfg.extractor_path, cfg.extractor_kind, sha256=cfg.extractor_sha256, device=dev,
                         protocol=cfg.protocol, encoder=cfg.encoder)
    _, overall = load_refstats(Path(refstats_dir), ext, cfg.extractor_path, [], need_reservoir=False)
    batches, count, extra = _open_source(Path(source), kind, cfg, n)
    if count < cfg.is_splits:
        raise TinyGANError(f"score: {source} gives {count} images; IS needs at least {cfg.is_splits}")
    inp = SimpleNamespace(cfg=cfg, ext=ext, ref_overall=overall, device=dev)  # what evaluate's measurement reads
    metrics = is_fid_kid(inp, batches, count, f"scoring {Path(source).name}", "")
    if overall.reservoir is None:  # an imported mu/sigma file without raw features
        metrics["kid_note"] = "KID n/a: the reference statistics hold no KID reservoir (an imported mu/sigma file)"
    if not ext.has_probs:
        metrics["is_note"] = f"IS n/a: {ext.name} gives features only"
    return {"source": str(source), "source_kind": kind, "n": count, **extra, **metrics, "extractor": ext.name,
            "protocol": ext.protocol, "preprocessing": ext.preprocessing}


def _open_source(path: Path, kind: str, cfg: EvalConfig, n: int | None) -> tuple[Iterator[torch.Tensor], int, dict]:
    if kind == "generator":
        count = cfg.n_samples if n is None else n
        return _generated(path, cfg, count), count, {}
    if kind == "folder":
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        files = files[:n] if n is not None else files
        size = _first_size(files, path)
        skipped: list[str] = []
        good = [f for f in files if _image_size(f, skipped) == size]
        if len(good) < len(files) - len(skipped):
            raise TinyGANError(f"score: the images in {path} are not all {size[0]}x{size[1]}; resize them to one "
                               f"size first")
        return _folder_batches(good, cfg.batch_size), len(good), {"skipped": len(skipped)}
    shape, key = _npz_shape(path)
    count = shape[0] if n is None else min(n, shape[0])
    return _npz_batches(path, key, shape, count, cfg.batch_size), count, {}


def _generated(path: Path, cfg: EvalConfig, n: int) -> Iterator[torch.Tensor]:
    runner, mcfg = open_model(path)
    if max(cfg.classes) >= class_count(mcfg):
        raise TinyGANError(f"score: class {max(cfg.classes)} is out of range for {path} ({class_count(mcfg)} "
                           f"classes); set classes")
    ys, ks = student_labels(cfg.classes, n)
    for a in range(0, n, cfg.batch_size):
        y, k = ys[a:a + cfg.batch_size], ks[a:a + cfg.batch_size]
        z = draw_z(mcfg.get("latent", "biggan"), cfg.noise_seed, y, k, cfg.truncation, mcfg["z_dim"])
        yield torch.from_numpy(np.ascontiguousarray(runner(z, y), dtype=np.float32))


def _image_size(path: Path, skipped: list[str]) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError, Image.DecompressionBombError):
        skipped.append(path.name)
        return None


def _first_size(files: list[Path], folder: Path) -> tuple[int, int]:
    for f in files:
        size = _image_size(f, [])
        if size is not None:
            if max(size) > MAX_SIDE:
                raise TinyGANError(f"score: {f} is {size[0]}x{size[1]}, larger than {MAX_SIDE} pixels a side")
            return size
    raise TinyGANError(f"score: {folder} holds no readable images ({', '.join(IMAGE_SUFFIXES)})")


def _folder_batches(files: list[Path], batch: int) -> Iterator[torch.Tensor]:
    from PIL import Image

    for a in range(0, len(files), batch):
        images = []
        for f in files[a:a + batch]:
            try:
                with Image.open(f) as im:
                    images.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
            except (OSError, ValueError) as e:
                raise TinyGANError(f"score: cannot decode {f} ({str(e)[:120]}); remove or repair it") from None
        yield torch.from_numpy(np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2)))


def _npz_member(zf: zipfile.ZipFile, path: Path) -> str:
    names = {m.filename[:-4]: m.filename for m in zf.infolist() if m.filename.endswith(".npy")}
    for key in NPZ_KEYS:
        if key in names:
            return names[key]
    raise TinyGANError(f"score: {path} has no images array (keys {sorted(names)[:10]}; expected one of {NPZ_KEYS})")


def _npz_shape(path: Path) -> tuple[tuple[int, ...], str]:
    try:
        with zipfile.ZipFile(path) as zf:
            member = _npz_member(zf, path)
            with zf.open(member) as f:
                shape, fortran, dtype = npy_header(f)
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise TinyGANError(f"score: {path} is not a readable .npz ({str(e)[:160]})") from None
    if fortran or dtype != np.uint8 or len(shape) != 4 or shape[3] != 3 or not 1 <= shape[0] <= MAX_IMAGES \
            or not 1 <= max(shape[1:3]) <= MAX_SIDE:
        raise TinyGANError(f"score: {path}: images must be a C-order uint8 array [N, H, W, 3] (H, W <= "
                           f"{MAX_SIDE}), got {dtype} {list(shape)}{' (Fortran order)' if fortran else ''}")
    return shape, member


def _npz_batches(path: Path, member: str, shape: tuple[int, ...], count: int, batch: int) -> Iterator[torch.Tensor]:
    """Rows of the (C-order) array read straight from the zip stream, ``batch`` images at a time."""
    row = int(np.prod(shape[1:]))
    with zipfile.ZipFile(path) as zf, zf.open(member) as f:
        npy_header(f)  # positions the stream at the data
        for a in range(0, count, batch):
            b = min(batch, count - a)
            data = f.read(b * row)
            if len(data) != b * row:
                raise TinyGANError(f"score: {path} is truncated (image {a + len(data) // row} of {count})")
            x = np.frombuffer(data, np.uint8).reshape((b, *shape[1:]))
            yield torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
