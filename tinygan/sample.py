"""Query the teacher once: exactly ``per_class`` (z, y, image) triples per class, as HDF5 shards + manifest.

The directory is in the shard format of ``tinygan.shards`` (written with ``shards.write_shard`` /
``shards.write_manifest``, checked by ``shards.verify``): ``teacher-00000.h5``, ... (each with a ``.sha256``
sidecar) and ``manifest.json``. A shard holds ``z`` float32 [n, 128] (the noise actually fed), ``y`` int64 [n],
``images`` uint8 [n, 128, 128, 3] (``quantize`` of the teacher output) and the attrs ``kind="teacher"``,
``fingerprint``, ``shard`` (its index). The manifest adds ``teacher`` (the handle), ``teacher_sha256`` (its
content hash, ``tinygan.teacher.content_hash``), ``teacher_info`` (its description, ``tinygan.teacher.describe``:
name, size and where the figures come from), ``truncation``, ``seed`` and ``per_class`` to the common keys.

Global order is class-major: sorted classes, then sample index 0..per_class-1; shard k holds global items
[k * shard_size, (k + 1) * shard_size). Teacher batches never cross a shard boundary, and every z depends only
on (seed, class, index), so a shard depends only on (teacher content, classes, per_class, truncation, seed,
shard_size, k): any shard can be regenerated alone, by any process, in any order.

Several processes split the work: process ``rank`` of ``world_size`` does the shards with
k % world_size == rank. Each one, when its shards are done, calls ``finalize``, which writes the manifest if
every shard is present (so the last one to finish writes it).

Resumable: shards are written atomically; a rerun keeps shards whose ``fingerprint`` and checksum match and
removes stale ones (other fingerprint, unreadable, no sidecar, leftover temp files), so an interrupted run (even
``kill -9``) finishes with every file bit-identical to an uninterrupted run. Stale files are removed only once the
new teacher has produced its first batch: a bad teacher handle fails with the old shards untouched.
"""
from __future__ import annotations

import functools
import json
import queue
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from tinygan import shards
from tinygan.errors import TinyGANError
from tinygan.teacher import (N_CLASSES, RESOLUTION, Teacher, content_hash, describe, load_teacher, quantize,
                             truncated_z_batch)

FORMAT = "tinygan-teacher-shards-v1"
PREFIX = "teacher"
_NAME = re.compile(r"^(\.?)teacher-(\d{5})\.h5(\.sha256)?(\.[A-Za-z0-9_]+\.tmp)?$")


def shard_name(k: int) -> str:
    return shards.shard_name(PREFIX, k)


def _shard_index(name: str) -> int | None:
    """Index k of ``teacher-0000k.h5``, its ``.sha256`` sidecar, or their atomic-write temp files
    (``.teacher-0000k.h5[.sha256].<random>.tmp``); None for any other name."""
    m = _NAME.match(name)
    if m is None or bool(m.group(1)) != bool(m.group(4)):
        return None
    return int(m.group(2))


def fingerprint(teacher_sha256: str, kind: str, classes, per_class: int, truncation: float, seed: int,
                shard_size: int) -> str:
    """Hash of everything that determines the shards' content (not batch size, not world size).

    The teacher enters by its content (``teacher.content_hash``), not its path: a teacher replaced at the
    same path gives new shards, the same teacher moved elsewhere reuses them."""
    return shards.fingerprint({"format": FORMAT, "teacher_sha256": str(teacher_sha256), "kind": kind,
                               "classes": sorted(int(c) for c in classes), "per_class": int(per_class),
                               "truncation": repr(float(truncation)), "seed": int(seed),
                               "shard_size": int(shard_size)})


def _check_args(classes, per_class, truncation, batch_size, shard_size, rank, world_size) -> list[int]:
    try:
        cls = [int(c) for c in classes]
    except (TypeError, ValueError):
        raise TinyGANError(f"sample: classes must be a list of class indices, got {classes!r}") from None
    if not cls:
        raise TinyGANError("sample: the class list is empty; select at least one class")
    bad = [c for c in cls if not 0 <= c < N_CLASSES]
    if bad:
        raise TinyGANError(f"sample: class indices {bad[:5]} out of range [0, {N_CLASSES})")
    if len(set(cls)) != len(cls):
        dup = sorted({c for c in cls if cls.count(c) > 1})
        raise TinyGANError(f"sample: classes listed twice: {dup[:5]}; list each class once")
    for name, v in (("per_class", per_class), ("batch_size", batch_size), ("shard_size", shard_size),
                    ("world_size", world_size)):
        if int(v) != v or v < 1:
            raise TinyGANError(f"sample: {name} is {v!r}, expected an integer >= 1")
    if not 0 <= rank < world_size:
        raise TinyGANError(f"sample: rank {rank} is not in [0, world_size={world_size})")
    if not (np.isfinite(truncation) and truncation > 0):
        raise TinyGANError(f"sample: truncation is {truncation!r}, expected a number > 0 (BigGAN: 0.5)")
    return sorted(cls)


class _Plan:
    """Which global items (class-major: sorted classes, then index 0..per_class-1) each shard holds."""

    def __init__(self, classes: list[int], per_class: int, shard_size: int):
        self.classes, self.per_class, self.shard_size = classes, per_class, shard_size
        self.n = len(classes) * per_class
        self.n_shards = (self.n + shard_size - 1) // shard_size

    def size(self, k: int) -> int:
        return min(self.shard_size, self.n - k * self.shard_size)

    def items(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(class, index within class) of shard k's items."""
        g = np.arange(k * self.shard_size, k * self.shard_size + self.size(k))
        return np.asarray(self.classes, dtype=np.int64)[g // self.per_class], g % self.per_class


def _reusable(out: Path, k: int, fp: str, plan: _Plan) -> dict | None:
    """The manifest entry of shard k if it is finished and belongs to this run (fingerprint, checksum, n)."""
    entry = shards.existing_shard(out / shard_name(k), fp)
    return entry if entry is not None and entry["n"] == plan.size(k) else None


def _reusable_own(out: Path, fp: str, plan: _Plan, own: list[int]) -> dict[int, dict]:
    """The shards this process owns that are finished and belong to this run (reads only)."""
    return {k: e for k in own if (e := _reusable(out, k, fp, plan)) is not None}


def _remove_stale(out: Path, fp: str, plan: _Plan, own: list[int], done: set[int]) -> None:
    """Remove stale files; called only once this run is known to work (see ``sample``).

    Stale: a manifest of another run, or any manifest while some of this process's shards are to be redone;
    shard files (and sidecars, temp files) beyond the last shard; and, for the shards this process owns,
    temp files of interrupted writes and shards that are not reusable (``done`` are the reusable ones).
    Shards owned by other processes are left alone (they may be being written right now).
    """
    man = out / shards.MANIFEST
    if len(done) < len(own) or _manifest_fingerprint(man) != fp:
        man.unlink(missing_ok=True)
    for p in sorted(out.iterdir()):
        k = _shard_index(p.name)
        if k is not None and (k >= plan.n_shards or (k in own and k not in done)):
            p.unlink(missing_ok=True)


def _manifest_fingerprint(man: Path) -> str | None:
    try:
        m = json.loads(man.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return None
    return m.get("fingerprint") if isinstance(m, dict) else None


def _check_finite(handle: str, k: int, start: int, x: np.ndarray) -> None:
    if not np.isfinite(x).all():
        raise TinyGANError(f"teacher {handle}: returned NaN/inf in shard {k} (items "
                           f"{start}..{start + len(x) - 1} of the shard); check the teacher")


class _ShardWriter:
    """A thread that turns teacher batches into shards while the main thread keeps the teacher busy.

    It receives float batches (``add``), checks and quantises them into the shard's uint8 buffer, and writes
    the shard when told (``finish``). The queue is bounded (``depth`` batches), so memory stays flat whatever
    the number of samples, and the main thread does nothing but call the teacher.
    """

    def __init__(self, handle: str, depth: int = 4):
        self.handle = handle
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.entries: dict[int, dict] = {}  # shard index -> manifest entry of the shards written
        self.thread = threading.Thread(target=self._run, name="tinygan-shard-writer", daemon=True)
        self.thread.start()

    def add(self, k: int, n_k: int, start: int, x: np.ndarray) -> None:
        """Teacher output ``x`` for items [start, start + len(x)) of shard k (which has n_k items)."""
        self._put(("batch", k, n_k, start, x))

    def finish(self, k: int, path: Path, arrays: dict, attrs: dict) -> None:
        """Shard k is complete: write ``arrays`` plus the quantised ``images`` to ``path``."""
        self._put(("end", k, path, arrays, attrs))

    def _run(self) -> None:
        images = None
        while (item := self.queue.get()) is not None:
            try:
                if item[0] == "batch":
                    _, k, n_k, start, x = item
                    if images is None:
                        images = np.empty((n_k, RESOLUTION, RESOLUTION, 3), dtype=np.uint8)
                    _check_finite(self.handle, k, start, x)
                    images[start:start + len(x)] = quantize(x)
                else:
                    _, k, path, arrays, attrs = item
                    self.entries[k] = shards.write_shard(path, {**arrays, "images": images}, attrs)
                    images = None
            except BaseException as e:  # noqa: BLE001 - handed to the main thread
                self.error = e
                return

    def _raise(self) -> None:
        if isinstance(self.error, TinyGANError):
            raise self.error
        if self.error is not None:
            raise TinyGANError(f"sample: cannot write a shard ({type(self.error).__name__}: {self.error})")

    def _put(self, item) -> None:
        while True:
            self._raise()
            try:
                self.queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def close(self, raise_error: bool = True) -> None:
        """Finish everything queued, stop the thread, raise if something failed (and ``raise_error``)."""
        while self.thread.is_alive():
            try:
                self.queue.put(None, timeout=0.2)
                break
            except queue.Full:
                continue
        self.thread.join()
        if raise_error:
            self._raise()


def sample(handle: str, kind: str, out_dir: str, classes: list[int], per_class: int, truncation: float,
           seed: int, batch_size: int = 32, shard_size: int = 1000, rank: int = 0, world_size: int = 1,
           progress: bool = True, teacher: Teacher | None = None) -> dict | None:
    """Generate this process's shards of the teacher dataset into ``out_dir``; return the manifest if every
    shard is present afterwards (then it has been written), else None.

    ``handle``/``kind`` name the teacher (see ``tinygan.teacher.load_teacher``); pass an already loaded
    ``teacher`` to skip loading (the content hash of ``handle`` still keys the shards). ``batch_size`` is the
    teacher batch; it does not change which z/y go into a shard.

    Nothing is deleted until the run is known to work: the teacher is hashed (a missing handle fails here),
    reusable shards are found, and stale files are removed only after the teacher has loaded and produced its
    first (finite) batch; with nothing to redo, only once every owned shard was found reusable.
    """
    classes = _check_args(classes, per_class, truncation, batch_size, shard_size, rank, world_size)
    digest = content_hash(handle, kind)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fp = fingerprint(digest, kind, classes, per_class, truncation, seed, shard_size)
    plan = _Plan(classes, per_class, shard_size)
    own = [k for k in range(plan.n_shards) if k % world_size == rank]
    entries = _reusable_own(out, fp, plan, own)
    todo = [k for k in own if k not in entries]
    clean = functools.partial(_remove_stale, out, fp, plan, own, set(entries))
    if not todo:
        clean()
    else:
        entries.update(_generate(teacher if teacher is not None else load_teacher(handle, kind), out, fp, plan,
                                 todo, own, truncation, seed, batch_size, progress, on_start=clean,
                                 desc=f"sample {rank}/{world_size}" if world_size > 1 else "sample"))
    return finalize(out, handle, kind, classes, per_class, truncation, seed, shard_size, known=entries,
                    teacher_sha256=digest)


def _generate(teacher: Teacher, out: Path, fp: str, plan: _Plan, todo: list[int], own: list[int],
              truncation: float, seed: int, batch_size: int, progress: bool, desc: str,
              on_start: Callable[[], None]) -> dict[int, dict]:
    """Run the teacher over shards ``todo``; return their manifest entries. ``on_start`` is called once the
    first batch is out (and finite), before anything is written.

    Three threads overlap: a helper draws the next shard's z, the main thread only calls the teacher (batches
    never cross a shard boundary), and a writer thread quantises its output and writes finished shards.
    """
    total = sum(plan.size(k) for k in own)
    bar = tqdm(total=total, initial=total - sum(plan.size(k) for k in todo), unit="img", dynamic_ncols=True,
               desc=desc, disable=not progress)

    def inputs(k: int) -> tuple[np.ndarray, np.ndarray]:
        y, idx = plan.items(k)
        return y, truncated_z_batch(seed, y, idx, truncation)

    writer = _ShardWriter(str(getattr(teacher, "handle", "")))
    ok = started = False
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tinygan-z") as pool:
            pending = pool.submit(inputs, todo[0])
            for i, k in enumerate(todo):
                y, z = pending.result()
                if i + 1 < len(todo):
                    pending = pool.submit(inputs, todo[i + 1])
                for s in range(0, len(y), batch_size):
                    x = teacher(z[s:s + batch_size], y[s:s + batch_size], truncation)
                    if not started:  # the teacher works: now stale files may go
                        _check_finite(writer.handle, k, s, x)
                        on_start()
                        started = True
                    writer.add(k, len(y), s, x)
                    bar.update(len(x))
                writer.finish(k, out / shard_name(k), {"z": z, "y": y},
                              {"kind": "teacher", "fingerprint": fp, "shard": k})
        ok = True
    finally:
        bar.close()
        writer.close(raise_error=ok)  # on error, still land the shards already finished
    return writer.entries


def finalize(out_dir: str, handle: str, kind: str, classes: list[int], per_class: int, truncation: float,
             seed: int, shard_size: int, known: dict[int, dict] | None = None,
             teacher_sha256: str | None = None) -> dict | None:
    """If every shard of this run is present and intact, write ``manifest.json`` and return it; else None.

    Every process may call it (e.g. each rank when its own shards are done): the manifest depends only on
    the shards, has no timestamps and sorted keys, so concurrent writers write the same bytes. ``known``
    (shard index -> entry from ``shards.write_shard``) skips re-hashing shards this process has just handled;
    ``teacher_sha256`` (``teacher.content_hash(handle, kind)``, computed if not given) skips re-hashing the teacher.
    """
    classes = sorted(int(c) for c in classes)
    out = Path(out_dir)
    teacher_sha256 = teacher_sha256 or content_hash(handle, kind)
    fp = fingerprint(teacher_sha256, kind, classes, per_class, truncation, seed, shard_size)
    plan = _Plan(classes, per_class, shard_size)
    known = known or {}
    entries = []
    for k in range(plan.n_shards):
        entry = known.get(k) or _reusable(out, k, fp, plan)
        if entry is None:
            return None
        entries.append(entry)
    for p in sorted(out.iterdir()):  # shard files beyond the last one (a previous, larger run)
        k = _shard_index(p.name)
        if k is not None and k >= plan.n_shards and not p.name.startswith("."):
            p.unlink(missing_ok=True)
    extra = {"teacher": str(handle), "teacher_sha256": teacher_sha256, "teacher_info": describe(handle, kind),
             "truncation": float(truncation),
             "seed": int(seed), "per_class": int(per_class)}
    return shards.write_manifest(out, "teacher", entries, {c: per_class for c in classes}, extra,
                                 fingerprint=fp, resolution=RESOLUTION)
