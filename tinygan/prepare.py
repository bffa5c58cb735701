"""Turn an ImageNet-layout train directory into real-image shards (BigGAN-PyTorch "I128" preprocessing).

Input: ``<train_dir>/<wnid>/<files>``. Each image is opened with PIL, converted to RGB (grayscale,
CMYK, palette and RGBA included), centre-cropped to a square on its long edge and resized to
``resolution`` with PIL BILINEAR (antialiased), as BigGAN-PyTorch's ``CenterCropLongEdge`` +
``Resize`` do.

Output: ``real-00000.h5``, ... (see ``tinygan.shards``) in (class index, file name) order, plus
``manifest.json`` with per-class counts, skipped files with their reason, notes (non-JPEG formats,
non-RGB modes) and checksums.

Shard ``k`` is made from input files ``[k * shard_size, (k + 1) * shard_size)`` of the sorted file
plan, so a shard with skipped (unreadable) files holds fewer than ``shard_size`` images. Because the
plan is fixed by the file list, a rerun reuses every shard whose fingerprint (file names, sizes,
resolution, preprocessing version) and checksum still match, and rewrites the others: a run killed at
any point resumes and ends with the same bytes as an uninterrupted run.
"""
from __future__ import annotations

import collections
import json
import multiprocessing
import os
import warnings
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from tinygan import classes as imagenet
from tinygan.errors import TinyGANError

PREFIX = "real"
PREPROCESS_VERSION = 1  # bump when the pixels a file turns into change


# ---- one image ------------------------------------------------------------------------------------------

def center_crop_resize(img: Image.Image, resolution: int) -> np.ndarray:
    """RGB, centre crop of the long edge to a square, BILINEAR resize: uint8 [resolution, resolution, 3].

    The crop offset is ``int(round((w - s) / 2))`` like torchvision's ``center_crop``.
    """
    img = img.convert("RGB")
    w, h = img.size
    s = min(w, h)
    left, top = int(round((w - s) / 2.0)), int(round((h - s) / 2.0))
    img = img.crop((left, top, left + s, top + s))
    img = img.resize((resolution, resolution), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def load_image(path: str, resolution: int) -> tuple[np.ndarray | None, tuple[str, ...] | str]:
    """Decode and preprocess one file.

    Returns ``(image, notes)`` for a readable image, where ``notes`` lists what was unusual about it
    (``format_PNG``, ``mode_CMYK``, ...), or ``(None, reason)`` for a file that is skipped:
    ``not_a_file``, ``unreadable``, ``empty``, ``not_an_image``, ``truncated``, ``too_large``, ``corrupt``.
    """
    if not os.path.isfile(path):
        return None, "not_a_file"
    try:
        if os.path.getsize(path) == 0:
            return None, "empty"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF / palette warnings: the pixels are what matter
            with Image.open(path) as im:
                fmt, mode = im.format, im.mode
                im.load()
                arr = center_crop_resize(im, resolution)
    except PermissionError:
        return None, "unreadable"
    except Image.DecompressionBombError:
        return None, "too_large"
    except UnidentifiedImageError:
        return None, "not_an_image"
    except OSError as e:
        msg = str(e)
        return None, "truncated" if ("truncated" in msg or "broken data stream" in msg) else "corrupt"
    except Exception:  # noqa: BLE001 - decoders raise SyntaxError, ValueError, ... on garbage
        return None, "corrupt"
    notes = []
    if fmt != "JPEG":
        notes.append(f"format_{fmt}")
    if mode != "RGB":
        notes.append(f"mode_{mode}")
    return arr, tuple(notes)


def _decode(task: tuple[str, int]):
    return load_image(*task)


# ---- scanning -------------------------------------------------------------------------------------------

def _scan_root(root: Path, selected: Sequence[int]) -> tuple[dict[int, str], list[str]]:
    """One scandir of the root: class index -> wnid dir name for selected classes, and ignored dir names."""
    found, ignored = {}, []
    try:
        with os.scandir(root) as it:
            for entry in it:
                if not entry.is_dir():
                    continue
                if imagenet.is_wnid(entry.name):
                    found[imagenet.index_of(entry.name)] = entry.name
                else:
                    ignored.append(entry.name)
    except OSError as e:
        raise TinyGANError(f"cannot list train dir {root} ({e.strerror}); check the path") from None
    missing = [imagenet.wnid_of(c) for c in selected if c not in found]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise TinyGANError(f"train dir {root} lacks the class dirs of {len(missing)} selected classes ({shown}); "
                           f"point it at an ImageNet-layout train dir (<root>/<wnid>/<images>) or change the "
                           f"class selection")
    return {c: found[c] for c in selected}, sorted(ignored)


def _list_class(class_dir: Path, max_per_class: int | None) -> list[str]:
    """File names in a class dir (one scandir pass), sorted, the first ``max_per_class`` if given."""
    try:
        with os.scandir(class_dir) as it:
            names = sorted(entry.name for entry in it)
    except OSError as e:
        raise TinyGANError(f"cannot list class dir {class_dir} ({e.strerror}); check permissions") from None
    return names[:max_per_class] if max_per_class is not None else names


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


# ---- the stage ------------------------------------------------------------------------------------------

def _check_args(train_dir, classes, max_per_class, resolution, shard_size, workers) -> list[int]:
    if not Path(train_dir).is_dir():
        raise TinyGANError(f"train dir {train_dir} does not exist or is not a directory; set it to the ImageNet "
                           f"train dir (<root>/<wnid>/<images>)")
    for name, value, low in (("resolution", resolution, 8), ("shard_size", shard_size, 1), ("workers", workers, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise TinyGANError(f"prepare: {name} must be an integer >= {low}, got {value!r}")
    if max_per_class is not None and (isinstance(max_per_class, bool) or not isinstance(max_per_class, int)
                                      or max_per_class < 1):
        raise TinyGANError(f"prepare: max_per_class must be a positive integer or null (all), got {max_per_class!r}")
    return imagenet.resolve(classes)


def _decoded(todo: list[tuple[int, list[str]]], resolution: int, workers: int) -> Iterator[tuple[int, Iterable]]:
    """Yield ``(shard index, iterator of load_image results)`` for each shard to build, in order.

    With a pool, the next shard is queued before the current one is handed out, so decoding goes on
    while the caller writes; at most about two shards of decoded images are held in memory.
    """
    if not todo:
        return
    if workers == 1:
        for k, paths in todo:
            yield k, map(_decode, [(p, resolution) for p in paths])
        return
    per_shard = max(len(p) for _, p in todo)
    chunksize = max(1, min(16, per_shard // (4 * workers)))
    with multiprocessing.Pool(workers) as pool:
        pending = collections.deque()
        for k, paths in todo:
            pending.append((k, pool.imap(_decode, [(p, resolution) for p in paths], chunksize)))
            if len(pending) > 1:
                yield pending.popleft()
        while pending:
            yield pending.popleft()


def prepare(train_dir: str | os.PathLike, out_dir: str | os.PathLike, classes: Sequence[int] | str,
            max_per_class: int | None, resolution: int = 128, shard_size: int = 1000, workers: int = 0,
            progress: bool = True) -> dict:
    """Write real-image shards of the selected classes of an ImageNet train dir; return the manifest.

    ``classes``: class indices (or anything ``tinygan.classes.resolve`` accepts). ``max_per_class``:
    use the first N files (sorted by name) of each class, None for all. ``workers``: decoding
    processes, 0 = all cores. Finished shards from an earlier (interrupted) run are reused.
    """
    from tqdm import tqdm

    from tinygan import shards

    selected = _check_args(train_dir, classes, max_per_class, resolution, shard_size, workers)
    root, out = Path(train_dir), Path(out_dir)
    class_dirs, ignored = _scan_root(root, selected)

    plan: list[tuple[int, str]] = []  # (class index, "wnid/name") in (class, name) order
    for c in selected:
        wnid = class_dirs[c]
        plan += [(c, f"{wnid}/{name}") for name in _list_class(root / wnid, max_per_class)]
    if not plan:
        raise TinyGANError(f"the class dirs of the {len(selected)} selected classes in {root} are empty; "
                           f"check the train dir")
    groups = [plan[a:a + shard_size] for a in range(0, len(plan), shard_size)]
    names = [shards.shard_name(PREFIX, k) for k in range(len(groups))]

    out.mkdir(parents=True, exist_ok=True)
    (out / shards.MANIFEST).unlink(missing_ok=True)  # rewritten at the end; absent means "incomplete"
    shards.remove_stale(out, PREFIX, keep=names)

    fps, entries, todo = [], [None] * len(groups), []
    for k, group in enumerate(groups):
        files = [[c, rel, _size(str(root / rel))] for c, rel in group]
        fp = shards.fingerprint({"kind": PREFIX, "version": PREPROCESS_VERSION, "resolution": resolution,
                                 "files": files})
        fps.append(fp)
        entries[k] = shards.existing_shard(out / names[k], fp)
        if entries[k] is None:
            todo.append((k, [str(root / rel) for _, rel in group]))

    n_todo = sum(len(paths) for _, paths in todo)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n_workers = max(1, min(workers or cores, n_todo))
    bar = tqdm(total=n_todo, unit="img", desc="prepare", disable=not progress, dynamic_ncols=True)
    for k, results in _decoded(todo, resolution, n_workers):
        images, ys, kept, skipped, notes = [], [], [], [], collections.Counter()
        for (c, rel), (arr, info) in zip(groups[k], results):
            bar.update(1)
            if arr is None:
                skipped.append([rel, info])
                continue
            images.append(arr)
            ys.append(c)
            kept.append(rel.split("/", 1)[1])
            notes.update(info)
        arrays = {
            "images": np.stack(images) if images else np.zeros((0, resolution, resolution, 3), np.uint8),
            "y": np.asarray(ys, dtype=np.int64),
            "names": np.asarray(kept, dtype=object),
        }
        attrs = {"kind": "real", "fingerprint": fps[k], "resolution": resolution,
                 "skipped": json.dumps(skipped), "notes": json.dumps(dict(sorted(notes.items())))}
        entries[k] = shards.write_shard(out / names[k], arrays, attrs)
    bar.close()

    # the manifest, from the shards themselves (so a resumed run gives the same bytes)
    import h5py

    counts = {c: 0 for c in selected}
    skipped_files, reasons, notes = [], collections.Counter(), collections.Counter()
    for k, entry in enumerate(entries):
        with h5py.File(out / entry["file"], "r") as f:
            for c, n in zip(*np.unique(f["y"][:], return_counts=True)):
                counts[int(c)] += int(n)
            for rel, why in json.loads(f.attrs["skipped"]):
                skipped_files.append({"file": rel, "reason": why})
                reasons[why] += 1
            notes.update(json.loads(f.attrs["notes"]))
    if not sum(counts.values()):
        raise TinyGANError(f"none of the {len(plan)} files of the selected classes in {root} could be read "
                           f"({dict(reasons)}); check the train dir")
    extra = {
        "source": "imagenet-train",
        "files": len(plan),
        "max_per_class": max_per_class,
        "shard_size": shard_size,
        "preprocess": f"I128: RGB, centre-crop long edge, PIL BILINEAR resize (v{PREPROCESS_VERSION})",
        "skipped": dict(sorted(reasons.items())),
        "skipped_files": skipped_files,
        "notes": dict(sorted(notes.items())),
        "ignored_dirs": {"count": len(ignored), "examples": ignored[:10]},
    }
    fingerprint = shards.fingerprint({"kind": "real", "classes": selected, "max_per_class": max_per_class,
                                      "resolution": resolution, "shard_size": shard_size, "shards": fps})
    return shards.write_manifest(out, "real", entries, counts, extra, fingerprint=fingerprint,
                                 resolution=resolution)
