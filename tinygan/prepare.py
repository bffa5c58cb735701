"""Turn a train directory into real-image shards (BigGAN-PyTorch "I128" preprocessing).

Input, by ``layout``:

- ``imagenet``: ``<train_dir>/<wnid>/<files>``; the class index of a wnid is its ImageNet index.
- ``folders``: any class-folder tree ``<train_dir>/<class name>/<files>`` (e.g. CIFAR-10 exported to PNG);
  the classes are the sorted folder names (hidden ones ignored), class index = position in that list; the
  manifest records them as ``class_names`` (index -> name) and ``c_dim`` (their number).
- ``flat``: one folder of images ``<train_dir>/<files>`` for unconditional data: every image is class 0 and
  the manifest records ``c_dim: 0``.

Each image is opened with PIL, converted to RGB (grayscale,
CMYK, palette and RGBA included), centre-cropped to a square on its long edge and resized to
``resolution`` with PIL BILINEAR (antialiased), as BigGAN-PyTorch's ``CenterCropLongEdge`` +
``Resize`` do. ``resolution`` is a power of two 8-1024; smaller images are upscaled, and images
with a side below 8 px are skipped (``too_small``). With ``jpeg_draft`` (param ``prepare.jpeg_draft``) a JPEG
is decoded by libjpeg reduced by the largest DCT factor (8, 4, 2 or none) that keeps its short side >=
``resolution`` (PIL's ``Image.draft``), then cropped and resized the same way: over twice as fast for
ImageNet-sized photos, and within a few grey levels of the full decode (README "Shards" states the measured tolerance;
tests/test_prepare.py pins it). It changes the output pixels, so it is part of every shard's fingerprint.

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
import functools
import json
import multiprocessing
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from tinygan import classes as imagenet
from tinygan.errors import TinyGANError

if TYPE_CHECKING:  # shards imports torch: loaded only when shards are written
    from tinygan.shards import ShardRun

PREFIX = "real"
PREPROCESS_VERSION = 1  # bump when the pixels a file turns into change
LAYOUTS = ("imagenet", "folders", "flat")
MIN_SIDE, MAX_RESOLUTION = 8, 1024  # images with a side below MIN_SIDE are skipped; resolution <= MAX_RESOLUTION
_RESOLUTIONS = frozenset(1 << k for k in range(MIN_SIDE.bit_length() - 1, MAX_RESOLUTION.bit_length()))
_HINTS = {  # what a train dir of each layout looks like, for error messages
    "imagenet": "an ImageNet-layout train dir (<root>/<wnid>/<images>)",
    "folders": "a class-folder tree (<root>/<class name>/<images>)",
    "flat": "a folder of images (<root>/<images>)",
}


# ---- one image ------------------------------------------------------------------------------------------

def center_crop_resize(img: Image.Image, resolution: int, scale: int = 1,
                       size: tuple[int, int] | None = None) -> np.ndarray:
    """RGB, centre crop of the long edge to a square, BILINEAR resize: uint8 [resolution, resolution, 3].

    The crop offset is ``int(round((w - s) / 2))`` like torchvision's ``center_crop``. ``scale`` > 1: ``img``
    is a JPEG draft decode of an image of ``size`` (w, h) at 1/scale; the same crop, in that image's
    coordinates (a fractional box, so the draft does not shift the geometry), is resized in one step.
    """
    img = img.convert("RGB")
    w, h = size if scale > 1 else img.size
    s = min(w, h)
    left, top = int(round((w - s) / 2.0)), int(round((h - s) / 2.0))
    if scale > 1:
        box = (left / scale, top / scale, (left + s) / scale, (top + s) / scale)
        return np.asarray(img.resize((resolution, resolution), Image.BILINEAR, box=box), dtype=np.uint8)
    img = img.crop((left, top, left + s, top + s))
    img = img.resize((resolution, resolution), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


SHOW_CLASSES = 8  # classes named in a one-line error about missing images


def load_image(path: str, resolution: int, draft: bool = False) -> tuple[np.ndarray | None, tuple[str, ...] | str]:
    """Decode and preprocess one file (``draft``: JPEGs decoded at a reduced DCT scale, see the module docstring).

    Returns ``(image, notes)`` for a readable image, where ``notes`` lists what was unusual about it
    (``format_PNG``, ``mode_CMYK``, ...), or ``(None, reason)`` for a file that is skipped:
    ``not_a_file``, ``unreadable``, ``empty``, ``not_an_image``, ``truncated``, ``too_large``, ``too_small``
    (a side below ``MIN_SIDE`` px), ``corrupt``.
    """
    if not os.path.isfile(path):
        return None, "not_a_file"
    try:
        if os.path.getsize(path) == 0:
            return None, "empty"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF / palette warnings: the pixels are what matter
            with Image.open(path) as im:
                fmt, mode, size, scale = im.format, im.mode, im.size, 1
                if draft and fmt == "JPEG" and (reduced := im.draft(None, (resolution, resolution))):
                    scale = round(size[0] / reduced[1][2])  # the largest 1/scale keeping min(size)/scale >= res
                im.load()
                if min(size) < MIN_SIDE:
                    return None, "too_small"
                arr = center_crop_resize(im, resolution, scale, size)
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


def _decode(task: tuple[str, int, bool]):
    return load_image(*task)


# ---- scanning -------------------------------------------------------------------------------------------

class FilePlan(NamedTuple):
    """The files ``prepare`` reads: ``files`` (class index, path relative to the root) in (class, name) order."""
    files: list[tuple[int, str]]
    ignored: list[str]  # names of the root's dirs that are not classes
    selected: list[int]  # the selected class indices
    class_names: list[str] | None  # folders: class index -> folder name; None for imagenet (the table) and flat


def _scandir(d: Path, what: str) -> list[tuple[str, bool, bool]]:
    """(name, is regular file, is dir) of every entry of ``d``, in one scandir pass."""
    try:
        with os.scandir(d) as it:
            return [(entry.name, entry.is_file(), entry.is_dir()) for entry in it]
    except OSError as e:
        raise TinyGANError(f"cannot list {what} {d} ({e.strerror}); check the path and permissions") from None


def _scan_root(root: Path, layout: str) -> tuple[dict[int, str], list[str], list[str] | None]:
    """The root's class dirs (class index -> dir name), its ignored dir names and, for ``folders``, the class
    names: wnid dirs by ImageNet index (other dirs ignored), or the sorted non-hidden dirs (hidden ignored)."""
    dirs = sorted(name for name, _, is_dir in _scandir(root, "train dir") if is_dir)
    if layout == "imagenet":
        return ({imagenet.index_of(d): d for d in dirs if imagenet.is_wnid(d)},
                [d for d in dirs if not imagenet.is_wnid(d)], None)
    names = folder_classes(root, dirs)
    return dict(enumerate(names)), [d for d in dirs if d.startswith(".")], names


def folder_classes(root: Path, dirs: Sequence[str] | None = None) -> list[str]:
    """The class names of a class-folder tree: its sorted non-hidden dirs (``dirs``: the root's dir names,
    if already listed); one line if there are none or more than the 1000 a manifest allows."""
    if dirs is None:
        dirs = [name for name, _, is_dir in _scandir(root, "train dir") if is_dir]
    names = sorted(d for d in dirs if not d.startswith("."))
    if not names or len(names) > imagenet.N_CLASSES:
        raise TinyGANError(f"train dir {root} has {len(names)} class folders, expected 1-{imagenet.N_CLASSES}; "
                           f"point it at {_HINTS['folders']}, or set prepare.layout: flat for one folder of images")
    return names


def selected_classes(root: Path, classes: Sequence[int | str] | str, layout: str) -> list[int]:
    """The class indices ``prepare`` uses for the selection ``classes``: resolved against ImageNet's table,
    against the folder names of ``root`` (``folders``; one scandir), or ``[0]`` (``flat``)."""
    if layout == "flat":
        return [0]
    return imagenet.resolve(classes, folder_classes(root) if layout == "folders" else None)


def param_classes(p: dict) -> list[int]:
    """The class indices validated params select: ``classes`` resolved for ``prepare.layout`` against the
    tree ``prepare.imagenet_train`` (``selected_classes``); the selection of sample, evaluate and export."""
    q = p["prepare"]
    return selected_classes(Path(q["imagenet_train"]), p["classes"], q["layout"])


@functools.lru_cache(maxsize=1)
def _image_extensions() -> frozenset[str]:
    return frozenset(ext.lower() for ext in Image.registered_extensions())


def _has_images(names: Iterable[str]) -> bool:
    """Whether any of these (regular file) names has an image extension such as .JPEG."""
    return any(os.path.splitext(name)[1].lower() in _image_extensions() for name in names)


def _list_class(class_dir: Path, max_per_class: int | None) -> tuple[list[str], bool]:
    """File names in a class dir (one scandir pass), sorted, the first ``max_per_class`` if given; and
    whether the dir holds any image file at all (a regular file with an image extension such as .JPEG)."""
    entries = _scandir(class_dir, "class dir")
    names = sorted(name for name, _, _ in entries)
    has_images = _has_images(name for name, is_file, _ in entries if is_file)
    return (names[:max_per_class] if max_per_class is not None else names), has_images


def _label(layout: str, names: list[str] | None, c: int) -> str:
    """The class dir of class ``c`` as messages show it: its wnid, its folder name, or '.' (flat)."""
    return imagenet.wnid_of(c) if layout == "imagenet" else names[c] if names else "."


def _no_images_error(root: Path, problems: dict[int, str], layout: str = "imagenet",
                     names: list[str] | None = None) -> TinyGANError:
    """One line naming every selected class (index and class dir) that would have no images, and why."""
    items = sorted(problems.items())
    shown = ", ".join(f"{c} ({_label(layout, names, c)}: {why})" for c, why in items[:SHOW_CLASSES])
    shown += f", ... ({len(items) - SHOW_CLASSES} more)" if len(items) > SHOW_CLASSES else ""
    return TinyGANError(f"train dir {root}: {len(problems)} selected classes have no images: {shown}; point it at "
                        f"{_HINTS[layout]}, fix those class dirs or change the class selection")


def file_plan(root: Path, classes: Sequence[int | str] | str, max_per_class: int | None,
              layout: str = "imagenet") -> FilePlan:
    """The files to use (see ``FilePlan``) for the class selection ``classes`` (anything
    ``tinygan.classes.resolve`` accepts, against the folder names for ``folders``; ignored for ``flat``).

    Fails (one line, nothing touched) if a selected class has no dir or no image file in it."""
    if layout == "flat":
        return _flat_plan(root, max_per_class)
    class_dirs, ignored, names = _scan_root(root, layout)
    selected = imagenet.resolve(classes, names)
    plan, problems = [], {}
    for c in selected:
        if c not in class_dirs:
            problems[c] = "no class dir"
            continue
        files, has_images = _list_class(root / class_dirs[c], max_per_class)
        if not has_images:
            problems[c] = "no image files"
        plan += [(c, f"{class_dirs[c]}/{name}") for name in files]
    if problems:
        raise _no_images_error(root, problems, layout, names)
    return FilePlan(plan, ignored, selected, names)


def _flat_plan(root: Path, max_per_class: int | None) -> FilePlan:
    """Every entry of the root that is not a dir, sorted (the first ``max_per_class``), as class 0."""
    entries = _scandir(root, "train dir")
    files = sorted(name for name, _, is_dir in entries if not is_dir)
    if not _has_images(name for name, is_file, _ in entries if is_file):
        raise _no_images_error(root, {0: "no image files"}, "flat")
    files = files[:max_per_class] if max_per_class is not None else files
    return FilePlan([(0, name) for name in files], sorted(n for n, _, d in entries if d), [0], None)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


# ---- the stage ------------------------------------------------------------------------------------------

def _check_args(train_dir, layout, max_per_class, resolution, shard_size, workers) -> None:
    if layout not in LAYOUTS:
        raise TinyGANError(f"prepare: layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if not Path(train_dir).is_dir():
        raise TinyGANError(f"train dir {train_dir} does not exist or is not a directory; set it to "
                           f"{_HINTS[layout]}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution not in _RESOLUTIONS:
        raise TinyGANError(f"prepare: resolution must be a power of two {MIN_SIDE}-{MAX_RESOLUTION}, got "
                           f"{resolution!r}")
    for name, value, low in (("shard_size", shard_size, 1), ("workers", workers, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise TinyGANError(f"prepare: {name} must be an integer >= {low}, got {value!r}")
    if max_per_class is not None and (isinstance(max_per_class, bool) or not isinstance(max_per_class, int)
                                      or max_per_class < 1):
        raise TinyGANError(f"prepare: max_per_class must be a positive integer or null (all), got {max_per_class!r}")


def _decoded(todo: list[tuple[int, list[str]]], resolution: int, workers: int,
             draft: bool = False) -> Iterator[tuple[int, Iterable]]:
    """Yield ``(shard index, iterator of load_image results)`` for each shard to build, in order.

    With a pool, the next shard is queued before the current one is handed out, so decoding goes on
    while the caller writes; at most about two shards of decoded images are held in memory.
    """
    if not todo:
        return
    if workers == 1:
        for k, paths in todo:
            yield k, map(_decode, [(p, resolution, draft) for p in paths])
        return
    per_shard = max(len(p) for _, p in todo)
    chunksize = max(1, min(16, per_shard // (4 * workers)))
    with multiprocessing.Pool(workers) as pool:
        pending = collections.deque()
        for k, paths in todo:
            pending.append((k, pool.imap(_decode, [(p, resolution, draft) for p in paths], chunksize)))
            if len(pending) > 1:
                yield pending.popleft()
        while pending:
            yield pending.popleft()


def prepare(train_dir: str | os.PathLike, out_dir: str | os.PathLike, classes: Sequence[int | str] | str,
            max_per_class: int | None, resolution: int = 128, shard_size: int = 1000, workers: int = 0,
            progress: bool = True, layout: str = "imagenet", jpeg_draft: bool = False) -> dict:
    """Write real-image shards of the selected classes of a train dir of ``layout`` (see the module
    docstring); return the manifest.

    ``classes``: class indices (or anything ``tinygan.classes.resolve`` accepts; for ``folders`` against the
    folder names; ignored for ``flat``). ``max_per_class``:
    use the first N files (sorted by name) of each class, None for all. ``workers``: decoding
    processes, 0 = all cores. ``jpeg_draft``: decode JPEGs at a reduced DCT scale (faster, slightly different
    pixels; see the module docstring). Finished shards from an earlier (interrupted) run are reused.

    Validates before deleting: a selected class without a dir or without image files fails at once, and
    the old manifest and stale shards go only once a new shard has decoded at least one image (or every
    shard to redo is decoded and the reused ones hold images), so a tree where nothing decodes fails with
    the previous output untouched.
    """
    from tinygan import shards

    _check_args(train_dir, layout, max_per_class, resolution, shard_size, workers)
    root, out = Path(train_dir), Path(out_dir)
    fplan = file_plan(root, classes, max_per_class, layout)
    plan = fplan.files
    groups = [plan[a:a + shard_size] for a in range(0, len(plan), shard_size)]
    draft = {"jpeg_draft": True} if jpeg_draft else {}  # (absent when off: older shards keep their fingerprint)
    fps = [shards.fingerprint({"kind": PREFIX, "version": PREPROCESS_VERSION, "resolution": resolution, **draft,
                               "files": [[c, rel, _size(str(root / rel))] for c, rel in group]}) for group in groups]
    args = {"max_per_class": max_per_class, "shard_size": shard_size, **draft}
    described = {"kind": "real", "classes": fplan.selected, **args, "resolution": resolution, "shards": fps}
    if layout != "imagenet":  # (the ImageNet fingerprint stays as it was: its shards are reused)
        described.update(layout=layout, class_names=fplan.class_names)
    run = shards.ShardRun(out, PREFIX, fps, shards.fingerprint(described))
    _build_shards(run, root, groups, run.find_reusable(), (resolution, jpeg_draft), workers, progress)
    return _write_manifest(run, root, fplan, layout, args, resolution)


def _build_shards(run: ShardRun, root: Path, groups, todo: list[int], decode: tuple[int, bool], workers: int,
                  progress: bool) -> None:
    """Decode the shards ``todo`` (``decode``: resolution, jpeg_draft) and write them (``run.write``).

    ``run.start()`` (stale outputs go, the shards held back so far are written) comes once a shard with a
    readable image has been decoded: shards without images decoded before that are held back (they hold no
    pixels). If nothing decodes and no reused shard has images, fail without touching the output.
    """
    from tqdm import tqdm

    resolution = decode[0]
    n_todo = sum(len(groups[k]) for k in todo)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n_workers = max(1, min(workers or cores, n_todo))
    bar = tqdm(total=n_todo, unit="img", desc="prepare", disable=not progress, dynamic_ncols=True)
    reasons = collections.Counter()  # why files were skipped
    if not todo:
        run.start()
    for k, results in _decoded([(k, [str(root / rel) for _, rel in groups[k]]) for k in todo], resolution,
                               n_workers, decode[1]):
        shard = _decode_shard(groups[k], results, resolution, bar)
        reasons.update(why for _, why in shard.skipped)
        shard.write(run, k, resolution)
        if shard.n_images:
            run.start()
    bar.close()
    if not run.started and not any(e["n"] for e in run.entries.values()):  # nothing decoded, nothing reused
        raise TinyGANError(f"none of the {n_todo} files of the selected classes in {root} could be read "
                           f"({dict(sorted(reasons.items()))}); check the train dir (the previous output in "
                           f"{run.out} is left as it was)")
    run.start()


class _DecodedShard(NamedTuple):
    images: list[np.ndarray]
    y: list[int]
    names: list[str]  # file names (without the class dir) of the kept images
    skipped: list[list[str]]  # [relative path, reason] of the files skipped
    notes: collections.Counter

    @property
    def n_images(self) -> int:
        return len(self.y)

    def write(self, run: ShardRun, k: int, resolution: int) -> None:
        """Write as shard ``k`` of ``run`` (a ``shards.ShardRun``)."""
        arrays = {
            "images": np.stack(self.images) if self.images else np.zeros((0, resolution, resolution, 3), np.uint8),
            "y": np.asarray(self.y, dtype=np.int64),
            "names": np.asarray(self.names, dtype=object),
        }
        attrs = {"kind": "real", "fingerprint": run.fingerprints[k], "resolution": resolution,
                 "skipped": json.dumps(self.skipped), "notes": json.dumps(dict(sorted(self.notes.items())))}
        run.write(k, arrays, attrs)


def _decode_shard(group: list[tuple[int, str]], results: Iterable, resolution: int, bar) -> _DecodedShard:
    """Collect the ``load_image`` results of one shard's files: kept images, skipped files, notes."""
    shard = _DecodedShard([], [], [], [], collections.Counter())
    for (c, rel), (arr, info) in zip(group, results):
        bar.update(1)
        if arr is None:
            shard.skipped.append([rel, info])
            continue
        shard.images.append(arr)
        shard.y.append(c)
        shard.names.append(rel.rpartition("/")[2])
        shard.notes.update(info)
    return shard


def _write_manifest(run: ShardRun, root: Path, fplan: FilePlan, layout: str, args: dict, resolution: int) -> dict:
    """The manifest, from the shards themselves (so a resumed run gives the same bytes). Fails, one line
    naming them, if some selected classes ended up without a single readable image."""
    import h5py

    from tinygan import shards

    out, entries = run.out, run.complete()  # every shard is reused or written by now
    counts = {c: 0 for c in fplan.selected}
    skipped_files, reasons, notes = [], collections.Counter(), collections.Counter()
    for entry in entries:
        with h5py.File(out / entry["file"], "r") as f:
            for c, n in zip(*np.unique(f["y"][:], return_counts=True)):
                counts[int(c)] += int(n)
            for rel, why in json.loads(f.attrs["skipped"]):
                skipped_files.append({"file": rel, "reason": why})
                reasons[why] += 1
            notes.update(json.loads(f.attrs["notes"]))
    empty = [c for c in fplan.selected if not counts[c]]
    if empty:
        why = collections.defaultdict(collections.Counter)  # class dir -> skip reason -> files
        for s in skipped_files:
            why[s["file"].rpartition("/")[0] or "."][s["reason"]] += 1
        raise _no_images_error(root, {c: "none readable, skipped " + " ".join(
            f"{r}={n}" for r, n in sorted(why[_label(layout, fplan.class_names, c)].items())) for c in empty},
            layout, fplan.class_names)
    extra = {
        "source": "imagenet-train" if layout == "imagenet" else layout,
        "files": len(fplan.files),
        **args,
        "preprocess": f"I128: RGB, centre-crop long edge, PIL BILINEAR resize (v{PREPROCESS_VERSION})",
        "skipped": dict(sorted(reasons.items())),
        "skipped_files": skipped_files,
        "notes": dict(sorted(notes.items())),
        "ignored_dirs": {"count": len(fplan.ignored), "examples": fplan.ignored[:10]},
        **_class_fields(layout, fplan.class_names),
    }
    return shards.write_manifest(out, "real", entries, counts, extra, fingerprint=run.fingerprint,
                                 resolution=resolution)


def _class_fields(layout: str, names: list[str] | None) -> dict:
    """Manifest fields naming the classes: none for ImageNet (its table names them), the folder names and
    their number for ``folders``, ``c_dim: 0`` (unconditional) for ``flat``."""
    if layout == "imagenet":
        return {}
    if layout == "flat":
        return {"layout": layout, "c_dim": 0}
    return {"layout": layout, "c_dim": len(names), "class_names": {str(i): n for i, n in enumerate(names)}}
