"""Query the teacher once: exactly ``per_class`` (z, y, image) triples per class, as HDF5 shards + manifest.

The directory is in the shard format of ``tinygan.shards`` (written with ``shards.write_shard`` /
``shards.write_manifest``, checked by ``shards.verify``): ``teacher-00000.h5``, ... (each with a ``.sha256``
sidecar) and ``manifest.json``. Sampling works at the teacher's shape (``tinygan.teacher``: z width Z, c_dim
classes, R x R images). A shard holds ``z`` float32 [n, Z] (the noise actually fed, drawn with the latent
recipe ``latent``: ``tinygan.teacher.draw_z``), ``y`` int64 [n] (class indices 0..c_dim-1; all 0 for an
unconditional teacher, c_dim 0), ``images`` uint8 [n, R, R, 3] (``quantize`` of the teacher output) and the
attrs ``kind="teacher"``, ``fingerprint``, ``shard`` (its index). The manifest adds ``teacher`` (the handle),
``teacher_sha256`` (its content hash, ``tinygan.teacher.content_hash``), ``teacher_info`` (its description,
``tinygan.teacher.describe``: name, size and where the figures come from), ``z_dim``, ``c_dim``, ``latent``
(the recipe used, "auto" resolved), ``truncation``, ``seed`` and ``per_class`` to the common keys
(``resolution`` = R).

Global order is class-major: sorted classes, then sample index 0..per_class-1; shard k holds global items
[k * shard_size, (k + 1) * shard_size). Teacher batches never cross a shard boundary, and every z depends only
on (seed, class, index), so a shard depends only on (teacher content, classes, per_class, truncation, seed,
shard_size, k): any shard can be regenerated alone, by any process, in any order.

Several processes split the work: process ``rank`` of ``world_size`` does the shards with
k % world_size == rank. Each one, when its shards are done, calls ``finalize``, which writes the manifest if
every shard is present (so the last one to finish writes it).

Resumable (``shards.ShardRun``, shared with ``prepare``): shards are written atomically; a rerun keeps shards
whose ``fingerprint`` and checksum match and removes stale ones (other fingerprint, unreadable, no sidecar,
leftover temp files), so an interrupted run (even ``kill -9``) finishes with every file bit-identical to an
uninterrupted run. Stale files are removed only once the new teacher has produced its first batch: a bad teacher
handle fails with the old shards untouched.
"""
from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm import tqdm

from tinygan import shards
from tinygan.errors import TinyGANError
from tinygan.io import write_text
from tinygan.teacher import (LATENTS, Teacher, check_classes, check_truncation, content_hash, describe, draw_z,
                             load_teacher, quantize, resolve_latent)

FORMAT = "tinygan-teacher-shards-v1"
PREFIX = "teacher"
SHAPE_KEYS = ("z_dim", "c_dim", "resolution", "latent")  # the teacher's shape and latent recipe, in the manifest


def fingerprint(teacher_sha256: str, kind: str, classes, per_class: int, truncation: float, seed: int,
                shard_size: int, latent: str = "auto") -> str:
    """Hash of everything that determines the shards' content (not batch size, not world size).

    The teacher enters by its content (``teacher.content_hash``), not its path: a teacher replaced at the
    same path gives new shards, the same teacher moved elsewhere reuses them. Its shape, and the latent
    recipe "auto" picks, follow from that content; an explicit ``latent`` enters as requested ("auto"
    adds nothing, so runs from before the param keep their shards)."""
    extra = {} if latent == "auto" else {"latent": str(latent)}
    return shards.fingerprint({"format": FORMAT, "teacher_sha256": str(teacher_sha256), "kind": kind,
                               "classes": sorted(int(c) for c in classes), "per_class": int(per_class),
                               "truncation": repr(float(truncation)), "seed": int(seed),
                               "shard_size": int(shard_size), **extra})


def _check_args(classes, per_class, truncation, batch_size, shard_size, rank, world_size) -> list[int]:
    try:
        cls = [int(c) for c in classes]
    except (TypeError, ValueError):
        raise TinyGANError(f"sample: classes must be a list of class indices, got {classes!r}") from None
    if not cls:
        raise TinyGANError("sample: the class list is empty; select at least one class")
    if len(set(cls)) != len(cls):
        dup = sorted({c for c in cls if cls.count(c) > 1})
        raise TinyGANError(f"sample: classes listed twice: {dup[:5]}; list each class once")
    for name, v in (("per_class", per_class), ("batch_size", batch_size), ("shard_size", shard_size),
                    ("world_size", world_size)):
        if int(v) != v or v < 1:
            raise TinyGANError(f"sample: {name} is {v!r}, expected an integer >= 1")
    if not 0 <= rank < world_size:
        raise TinyGANError(f"sample: rank {rank} is not in [0, world_size={world_size})")
    check_truncation(truncation, "sample")
    return sorted(cls)


def teacher_shape(teacher: Teacher, latent: str = "auto") -> dict:
    """``{z_dim, c_dim, resolution, latent}`` of a loaded teacher, ``latent`` ("auto" or one of LATENTS)
    resolved (``tinygan.teacher.resolve_latent``)."""
    return {"z_dim": int(teacher.z_dim), "c_dim": int(teacher.c_dim), "resolution": int(teacher.resolution),
            "latent": resolve_latent(latent, teacher)}


def _recorded_shape(out_dir: str, fp: str) -> dict | None:
    """The teacher shape the manifest of this very run (same fingerprint) recorded, if there is one."""
    try:
        m = shards.read_manifest(out_dir)
    except TinyGANError:
        return None
    if m["fingerprint"] != fp or any(k not in m for k in SHAPE_KEYS) or m["latent"] not in LATENTS:
        return None
    return {k: m[k] for k in SHAPE_KEYS}


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


def _shard_run(out_dir: str, teacher_sha256: str, kind: str, classes: list[int], per_class: int,
               truncation: float, seed: int, shard_size: int, rank: int = 0, world_size: int = 1,
               latent: str = "auto") -> tuple[shards.ShardRun, _Plan]:
    """The shards of this run (every one keyed by the run's fingerprint, of a known size), process ``rank``
    owning those with k % world_size == rank."""
    fp = fingerprint(teacher_sha256, kind, classes, per_class, truncation, seed, shard_size, latent)
    plan = _Plan(classes, per_class, shard_size)
    run = shards.ShardRun(out_dir, PREFIX, [fp] * plan.n_shards, fp, own=range(rank, plan.n_shards, world_size),
                          sizes=[plan.size(k) for k in range(plan.n_shards)])
    return run, plan


def _check_finite(handle: str, k: int, start: int, x: np.ndarray) -> None:
    if not np.isfinite(x).all():
        raise TinyGANError(f"teacher {handle}: returned NaN/inf in shard {k} (items "
                           f"{start}..{start + len(x) - 1} of the shard); check the teacher")


class _ShardWriter:
    """Threads that turn teacher batches into shards while the main thread keeps the teacher busy.

    One thread receives float batches (``add``), checks and quantises them into the shard's uint8 buffer and,
    when told (``finish``), hands the complete shard to a second thread that writes it (HDF5, sha256, fsync:
    the slow part at paper scale, ~245 MB a shard) while the next shard's batches are being quantised. The
    queue is bounded (``depth`` batches) and one shard is written at a time, so memory stays flat whatever the
    number of samples (at most two shards' images), and the main thread does nothing but call the teacher.
    Shards are written in order, by the same ``run.write`` calls as one thread would make: the same bytes.
    """

    def __init__(self, handle: str, run: shards.ShardRun, resolution: int, depth: int = 4):
        self.handle, self.run, self.resolution = handle, run, resolution  # finished shards go to run.write
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tinygan-shard-io")
        self.pending = None  # the Future of the shard being written
        self.thread = threading.Thread(target=self._run, name="tinygan-shard-writer", daemon=True)
        self.thread.start()

    def add(self, k: int, n_k: int, start: int, x: np.ndarray) -> None:
        """Teacher output ``x`` for items [start, start + len(x)) of shard k (which has n_k items)."""
        self._put(("batch", k, n_k, start, x))

    def finish(self, k: int, arrays: dict, attrs: dict) -> None:
        """Shard k is complete: write ``arrays`` plus the quantised ``images`` as shard k of the run."""
        self._put(("end", k, arrays, attrs))

    def _run(self) -> None:
        images = None
        while (item := self.queue.get()) is not None:
            try:
                if item[0] == "batch":
                    _, k, n_k, start, x = item
                    if images is None:
                        images = np.empty((n_k, self.resolution, self.resolution, 3), dtype=np.uint8)
                    try:  # checks finiteness too (in the same passes, as a rule)
                        quantize(x, out=images[start:start + len(x)], finite=True)
                    except ValueError:
                        _check_finite(self.handle, k, start, x)  # raises, saying where
                        raise
                else:
                    _, k, arrays, attrs = item
                    self._wait_written()  # one shard in writing at a time (raises its error)
                    self.pending = self.io.submit(self.run.write, k, {**arrays, "images": images}, attrs)
                    images = None
            except BaseException as e:  # noqa: BLE001 - handed to the main thread
                self.error = e
                return

    def _wait_written(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()

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
        try:
            self._wait_written()
        except BaseException as e:  # noqa: BLE001 - reported like the writer thread's errors
            self.error = self.error or e
        self.io.shutdown(wait=True)
        if raise_error:
            self._raise()


def sample(handle: str, kind: str, out_dir: str, classes: list[int], per_class: int, truncation: float,
           seed: int, batch_size: int = 32, shard_size: int = 1000, rank: int = 0, world_size: int = 1,
           progress: bool = True, teacher: Teacher | None = None, latent: str = "auto") -> dict | None:
    """Generate this process's shards of the teacher dataset into ``out_dir``; return the manifest if every
    shard is present afterwards (then it has been written), else None.

    ``handle``/``kind`` name the teacher (see ``tinygan.teacher.load_teacher``); pass an already loaded
    ``teacher`` to skip loading (the content hash of ``handle`` still keys the shards). ``batch_size`` is the
    teacher batch; it does not change which z/y go into a shard. ``latent`` is the noise recipe ("auto":
    the teacher's own, see ``tinygan.teacher.resolve_latent``); class indices must be the teacher's.

    Nothing is deleted until the run is known to work: the teacher is hashed (a missing handle fails here),
    reusable shards are found, and stale files are removed only after the teacher has loaded and produced its
    first (finite) batch; with nothing to redo, only once every owned shard was found reusable.
    """
    classes = _check_args(classes, per_class, truncation, batch_size, shard_size, rank, world_size)
    digest = content_hash(handle, kind)
    run, plan = _shard_run(out_dir, digest, kind, classes, per_class, truncation, seed, shard_size, rank, world_size,
                           latent)
    todo = run.find_reusable()
    shape = _recorded_shape(out_dir, run.fingerprint) if not todo and teacher is None else None
    if shape is None:  # the teacher tells its shape (and is needed anyway when there is work to do)
        teacher = teacher if teacher is not None else load_teacher(handle, kind)
        shape = teacher_shape(teacher, latent)
    check_classes(classes, shape["c_dim"], "sample")
    if not todo:
        run.start()
    else:
        _generate(teacher, run, plan, todo, truncation, seed, shape, batch_size, progress,
                  desc=f"sample {rank}/{world_size}" if world_size > 1 else "sample")
    return finalize(out_dir, handle, kind, classes, per_class, truncation, seed, shard_size, known=run.entries,
                    teacher_sha256=digest, shape=shape, latent=latent)


def _generate(teacher: Teacher, run: shards.ShardRun, plan: _Plan, todo: list[int], truncation: float, seed: int,
              shape: dict, batch_size: int, progress: bool, desc: str) -> None:
    """Run the teacher over shards ``todo`` and write them (``run.write``). ``run.start()`` (stale files go) is
    called once the first batch is out and finite, before anything is written. ``shape``: ``teacher_shape``.

    Three threads overlap: a helper draws the next shard's z, the main thread only calls the teacher (batches
    never cross a shard boundary), and a writer thread quantises its output and writes finished shards.
    """
    total = sum(plan.size(k) for k in run.own)
    bar = tqdm(total=total, initial=total - sum(plan.size(k) for k in todo), unit="img", dynamic_ncols=True,
               desc=desc, disable=not progress)

    def inputs(k: int) -> tuple[np.ndarray, np.ndarray]:
        y, idx = plan.items(k)
        return y, draw_z(shape["latent"], seed, y, idx, truncation, shape["z_dim"])

    writer = _ShardWriter(str(getattr(teacher, "handle", "")), run, shape["resolution"])
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
                        run.start()
                        started = True
                    writer.add(k, len(y), s, x)
                    bar.update(len(x))
                writer.finish(k, {"z": z, "y": y}, {"kind": "teacher", "fingerprint": run.fingerprint, "shard": k})
        ok = True
    finally:
        bar.close()
        writer.close(raise_error=ok)  # on error, still land the shards already finished


def finalize(out_dir: str, handle: str, kind: str, classes: list[int], per_class: int, truncation: float,
             seed: int, shard_size: int, known: dict[int, dict] | None = None,
             teacher_sha256: str | None = None, shape: dict | None = None, latent: str = "auto") -> dict | None:
    """If every shard of this run is present and intact, write ``manifest.json`` and return it; else None.

    Every process may call it (e.g. each rank when its own shards are done): the manifest depends only on
    the shards, has no timestamps and sorted keys, so concurrent writers write the same bytes. ``known``
    (shard index -> entry from ``shards.write_shard``) skips re-hashing shards this process has just handled;
    ``teacher_sha256`` (``teacher.content_hash(handle, kind)``, computed if not given) skips re-hashing the teacher,
    ``shape`` (``teacher_shape``; else recorded by an earlier manifest of this run, else the loaded teacher's)
    loading it.
    """
    classes = sorted(int(c) for c in classes)
    teacher_sha256 = teacher_sha256 or content_hash(handle, kind)
    run, _ = _shard_run(out_dir, teacher_sha256, kind, classes, per_class, truncation, seed, shard_size,
                        latent=latent)
    run.entries.update(known or {})
    entries = run.complete()
    if entries is None:
        return None
    shape = shape or _recorded_shape(out_dir, run.fingerprint) or teacher_shape(load_teacher(handle, kind), latent)
    extra = {"teacher": str(handle), "teacher_sha256": teacher_sha256, "teacher_info": describe(handle, kind),
             "truncation": float(truncation), "seed": int(seed), "per_class": int(per_class),
             **{k: shape[k] for k in SHAPE_KEYS if k != "resolution"}}
    return shards.write_manifest(out_dir, "teacher", entries, {c: per_class for c in classes}, extra,
                                 fingerprint=run.fingerprint, resolution=shape["resolution"])


def process_share(shard: str = "") -> tuple[int, int]:
    """(rank, world size) of this sampling process: ``shard`` "i/n" given by hand, else torchrun's RANK and
    WORLD_SIZE, else (0, 1). A malformed ``shard`` is one TinyGANError line."""
    if not shard:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        rank, world = (int(v) for v in shard.split("/"))
        assert 0 <= rank < world
    except (ValueError, AssertionError):
        raise TinyGANError(f"--shard {shard!r}: expected i/n with 0 <= i < n, e.g. --shard 0/4") from None
    return rank, world


UNUSED = "UNUSED.txt"  # what the teacher_eval stage leaves when evaluate.teacher_samples is "stored"


def mark_unused(out_dir: str, why: str) -> None:
    """The evaluation set is not wanted: say so in ``out_dir`` (the stage's output must exist). Shards a
    former run left are kept (nothing is deleted; switching back to fresh reuses them)."""
    write_text(os.path.join(out_dir, UNUSED), why + "\n")


def clear_unused(out_dir: str) -> None:
    """The evaluation set is wanted again: drop the marker ``mark_unused`` left."""
    try:
        os.unlink(os.path.join(out_dir, UNUSED))
    except FileNotFoundError:
        pass
