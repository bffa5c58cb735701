"""The demo world: tree + procedural teacher + preview, under one root (what the demo stage builds).

``build(root, ...)`` writes ``imagenet/train`` (tinygan.demo.tree), ``teacher`` (tinygan.demo.teacher) and a
``preview.png`` contact sheet (real-tree images beside teacher samples, per class). The same arguments give
byte-identical files, wherever ``root`` is and whatever ran before in the process.
"""
from __future__ import annotations

import io as _io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from tinygan.demo.classes import DEMO_CLASSES, check_classes
from tinygan.demo.render import render_numpy
from tinygan.demo.teacher import save_teacher
from tinygan.demo.tree import make_tree
from tinygan.io import write_bytes
from tinygan.teacher import RESOLUTION, Z_DIM


def _square64(path: Path) -> np.ndarray:
    """Centre-crop the long edge to a square and resize to 64x64 (how the prepare stage sees it)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        return np.asarray(im.resize((64, 64), Image.BICUBIC))


def write_preview(path: str | os.PathLike, tree_root: str | os.PathLike, classes: list[int],
                  per_side: int = 6, truncation: float = 0.5, seed: int = 0) -> None:
    """PNG contact sheet: per class one row, `per_side` real-tree images | `per_side` teacher samples.

    Teacher samples use the official noise, z = truncation * truncated_normal(+-2), at 128² then 64².
    """
    tree_root = Path(tree_root)
    rows = []
    rng = np.random.default_rng(seed)
    for cls in check_classes(classes):
        wnid = DEMO_CLASSES[cls][0]
        files = sorted(tree_root.glob(f"{wnid}/{wnid}_[0-9]*.JPEG"), key=lambda p: int(p.stem.split("_")[1]))
        real = [_square64(f) for f in files[:per_side]]
        real += [np.zeros([64, 64, 3], np.uint8)] * (per_side - len(real))
        z = rng.standard_normal([per_side, Z_DIM]).astype(np.float32)
        while np.any(np.abs(z) > 2.0):
            bad = np.abs(z) > 2.0
            z[bad] = rng.standard_normal(int(bad.sum())).astype(np.float32)
        fake = render_numpy(truncation * z, [cls] * per_side, truncation, RESOLUTION, RESOLUTION)
        fake = [np.asarray(Image.fromarray(f).resize((64, 64), Image.BICUBIC)) for f in fake]
        gap = np.full([64, 8, 3], 255, np.uint8)
        rows.append(np.concatenate(real + [gap] + fake, axis=1))
        rows.append(np.full([2, rows[-1].shape[1], 3], 255, np.uint8))
    sheet = np.concatenate(rows[:-1], axis=0)
    buf = _io.BytesIO()
    Image.fromarray(sheet).save(buf, format="PNG")
    write_bytes(path, buf.getvalue())


def build(root: str | os.PathLike, classes: list[int], images_per_class: int, seed: int,
          min_side: int = 64, max_side: int = 224, progress: bool = True) -> dict:
    """Make the whole demo world under ``root``: ``imagenet/train`` tree (see make_tree), ``teacher``
    SavedModel (see save_teacher) and ``preview.png`` (see write_preview). Returns make_tree's summary."""
    root = Path(root)
    summary = make_tree(root / "imagenet" / "train", classes, images_per_class, seed, min_side=min_side,
                        max_side=max_side, progress=progress)
    save_teacher(root / "teacher")
    write_preview(root / "preview.png", root / "imagenet" / "train", classes, seed=seed)
    return summary
