"""The demo's "real" ImageNet-layout train tree: synthetic photos drawn by the demo renderer, plus bad files.

``make_tree(root, ...)`` writes ``<root>/<wnid>/<wnid>_<k>.JPEG`` "real" images (untruncated z, more
variety, noise, JPEG artefacts, varied sizes) plus a handful of deliberately bad files, the odd inputs a
real ImageNet copy holds and the prepare stage must handle.
"""
from __future__ import annotations

import io as _io
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from tinygan.demo.classes import DEMO_CLASSES, check_classes
from tinygan.demo.render import render_numpy
from tinygan.errors import TinyGANError
from tinygan.io import write_bytes
from tinygan.teacher import Z_DIM


def _random_size(rng: np.random.Generator, min_side: int, max_side: int) -> tuple[int, int]:
    """(height, width) with aspect width/height in [0.6, 1.7] and both sides within [min_side, max_side]."""
    aspect = math.exp(rng.uniform(math.log(0.6), math.log(1.7)))
    ratio = min(max(aspect, 1.0 / aspect), max_side / min_side)
    long_side = int(rng.integers(math.ceil(min_side * ratio), max_side + 1))
    short_side = max(min_side, min(max_side, round(long_side / ratio)))
    return (short_side, long_side) if aspect >= 1.0 else (long_side, short_side)


def _jpeg_bytes(img: Image.Image, quality: int) -> bytes:
    buf = _io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _real_image(cls: int, rng: np.random.Generator, min_side: int, max_side: int) -> np.ndarray:
    """One 'real' photo: untruncated z, truncation 1, random size, brightness jitter and sensor noise."""
    h, w = _random_size(rng, min_side, max_side)
    z = rng.standard_normal([1, Z_DIM]).astype(np.float32)
    img = render_numpy(z, [cls], 1.0, h, w)[0].astype(np.float32)
    img = img * rng.uniform(0.88, 1.12) + rng.uniform(-12, 12)
    img = img + rng.uniform(0.0, 6.0) * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def make_tree(root: str | os.PathLike, classes: list[int], images_per_class: int, seed: int,
              min_side: int = 64, max_side: int = 224, progress: bool = True) -> dict:
    """Write an ImageNet-layout train tree ``<root>/<wnid>/<wnid>_<k>.JPEG`` of synthetic photos.

    Also writes six deliberately bad files, spread over the class dirs: ``<wnid>_bad_truncated.JPEG``
    (cut JPEG), ``<wnid>_bad_empty.JPEG`` (0 bytes), ``<wnid>_bad_gray.JPEG`` (mode L),
    ``<wnid>_bad_cmyk.JPEG`` (CMYK), ``<wnid>_bad_png.JPEG`` (PNG bytes) and ``<wnid>_notes.JPEG`` (text).
    Returns ``{class index: number of good RGB images, "bad_files": {"<wnid>/<file>": kind}}`` with kinds
    from READABLE_BAD_KINDS / UNREADABLE_BAD_KINDS. Deterministic given ``seed`` (each image has its own
    stream seeded by (seed, class, k)). Files of the same name are replaced; other files under ``root``
    are left alone (run it on an empty or fresh dir).
    """
    classes = check_classes(classes)
    check_sizes(images_per_class, min_side, max_side)
    root = Path(root)
    summary: dict = {}
    bar = tqdm(total=len(classes) * images_per_class, desc="demo tree", unit="img", disable=not progress)
    for cls in classes:
        wnid = DEMO_CLASSES[cls][0]
        for k in range(images_per_class):
            rng = np.random.default_rng([seed, cls, k])
            img = _real_image(cls, rng, min_side, max_side)
            quality = int(rng.integers(70, 96))
            write_bytes(root / wnid / f"{wnid}_{k}.JPEG", _jpeg_bytes(Image.fromarray(img), quality))
            bar.update(1)
        summary[cls] = images_per_class
    bar.close()
    summary["bad_files"] = _write_bad_files(root, classes, seed, min_side, max_side)
    return summary


def check_sizes(images_per_class, min_side, max_side, where: str = "demo") -> None:
    """The tree's size arguments: integers, images_per_class >= 1, 16 <= min_side <= max_side; else one
    TinyGANError line starting with ``where`` (the demo stage passes the params key of its world)."""
    for name, value in (("images_per_class", images_per_class), ("min_side", min_side), ("max_side", max_side)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TinyGANError(f"{where}: {name} must be an integer, got {value!r}")
    if images_per_class < 1:
        raise TinyGANError(f"{where}: images_per_class is {images_per_class}; it must be at least 1")
    if not 16 <= min_side <= max_side:
        raise TinyGANError(f"{where}: min_side ({min_side}) must be at least 16 and at most max_side ({max_side})")


def _write_bad_files(root: Path, classes: list[int], seed: int, min_side: int, max_side: int) -> dict[str, str]:
    """The six bad files of ``make_tree``, one per class dir in turn; returns {"<wnid>/<file>": kind}."""
    bad: dict[str, str] = {}
    kinds = ["truncated", "empty", "grayscale", "cmyk", "png", "text"]
    for i, kind in enumerate(kinds):
        cls = classes[i % len(classes)]
        wnid = DEMO_CLASSES[cls][0]
        rng = np.random.default_rng([seed, cls, 10_000 + i])
        rgb = Image.fromarray(_real_image(cls, rng, min_side, max_side))
        if kind == "truncated":
            data = _jpeg_bytes(rgb, 90)
            name, data = f"{wnid}_bad_truncated.JPEG", data[: len(data) // 2]
        elif kind == "empty":
            name, data = f"{wnid}_bad_empty.JPEG", b""
        elif kind == "grayscale":
            name, data = f"{wnid}_bad_gray.JPEG", _jpeg_bytes(rgb.convert("L"), 90)
        elif kind == "cmyk":
            name, data = f"{wnid}_bad_cmyk.JPEG", _jpeg_bytes(rgb.convert("CMYK"), 90)
        elif kind == "png":
            buf = _io.BytesIO()
            rgb.save(buf, format="PNG")
            name, data = f"{wnid}_bad_png.JPEG", buf.getvalue()
        else:
            name = f"{wnid}_notes.JPEG"
            data = b"Not an image: notes about this class folder, saved with the wrong extension.\n"
        write_bytes(root / wnid / name, data)
        bad[f"{wnid}/{name}"] = kind
    return bad
