"""Random-batch shard reader vs a sequential h5py read of the same data (images/s, side by side).

Writes teacher-layout shards (z, y, 128x128 images) to a temp dir, warms the page cache, then times
alternately (best of --repeats):

  seq_h5py_raw      h5py slices f["images"][a:a+B], f["z"][...], f["y"][...] shard by shard (uint8)
  random_raw        ShardDataset.read(random batch, raw=True)               (uint8, same arrays)
  seq_h5py_tensor   the sequential read + the reader's conversion to float NCHW [-1, 1] tensors
  random_tensor     ShardDataset.__getitems__(random batch)                   (what training gets)
  random_loader     train.step_loader over train.StepBatches, workers=0 (what training runs)

Goal: random / sequential >= 0.8.

Then, start-up at scale (``--gb``, default 10; 0 skips it): writes that many GB of teacher shards (5,000
128x128 samples, ~245 MB each, as the paper profile) to a temp dir outside the repository (deleted afterwards,
also on error), and times opening them with ``ShardDataset`` as a new train / evaluate start does, the
in-process caches cleared before each open: ``first_open_s`` (no verify record: every shard hashed),
``cached_open_s`` (the record written by the first open: no shard hashed), their ratio, and random-batch read
throughput over the whole set. The shards were just written, so the first open hashes from the page cache
where it holds them (a cold-cache first open is slower still: disk-bound). Prints one JSON object.

    python benchmarks/bench_shards.py [--n 4096] [--shard-size 1024] [--batch-size 32] [--gb 10]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tinygan import shards  # noqa: E402


def write_data(d: Path, n: int, shard_size: int) -> None:
    rng = np.random.default_rng(0)
    entries, counts = [], {}
    for k, a in enumerate(range(0, n, shard_size)):
        m = min(shard_size, n - a)
        y = rng.integers(0, 398, m)
        arrays = {"z": rng.standard_normal((m, 128)).astype(np.float32), "y": y,
                  "images": rng.integers(0, 256, (m, 128, 128, 3), dtype=np.uint8)}
        entries.append(shards.write_shard(d / shards.shard_name("teacher", k), arrays,
                                          {"kind": "teacher", "fingerprint": "bench"}))
        for c in y.tolist():
            counts[c] = counts.get(c, 0) + 1
    shards.write_manifest(d, "teacher", entries, counts, fingerprint="bench", resolution=128)


def seq_h5py(d: Path, batch: int, tensors: bool) -> int:
    files = [d / e["file"] for e in shards.read_manifest(d)["shards"]]
    n = 0
    for p in files:
        with h5py.File(p, "r") as f:
            images, z, y = f["images"], f["z"], f["y"]
            for a in range(0, images.shape[0], batch):
                b = {"z": z[a:a + batch], "y": y[a:a + batch], "images": images[a:a + batch]}
                if tensors:
                    b = shards._to_tensors(b)
                n += len(b["y"])
    return n


def random_read(ds: shards.ShardDataset, batch: int, tensors: bool, epoch: int) -> int:
    n = 0
    for idx in shards.epoch_batches(len(ds), batch, seed=0, epoch=epoch):
        b = ds.__getitems__(idx) if tensors else ds.read(idx, raw=True)
        n += len(b["y"])
    return n


def random_loader(ds: shards.ShardDataset, batch: int, epoch: int, workers: int) -> int:
    from tinygan.train import StepBatches, step_loader

    source = StepBatches(ds, np.arange(len(ds)), batch, rank=0, world=1, seed=0, stream=1)
    first = epoch * source.steps_per_epoch
    return sum(len(b["t"]["y"]) for b in step_loader({"t": source}, first, first + source.steps_per_epoch, workers))


def write_gb(d: Path, gb: float, shard_size: int = 5000) -> int:
    """Teacher shards totalling about ``gb`` GB (one random image block reused, z differing per shard)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (shard_size, 128, 128, 3), dtype=np.uint8)
    y = np.repeat(np.arange(398), shard_size // 398 + 1)[:shard_size]
    n_shards = max(1, round(gb * 1e9 / images.nbytes))
    entries = []
    for k in range(n_shards):
        arrays = {"z": rng.standard_normal((shard_size, 128)).astype(np.float32), "y": y, "images": images}
        entries.append(shards.write_shard(d / shards.shard_name("teacher", k), arrays,
                                          {"kind": "teacher", "fingerprint": "bench"}))
    counts = {int(c): int(m) * n_shards for c, m in zip(*np.unique(y, return_counts=True))}
    shards.write_manifest(d, "teacher", entries, counts, fingerprint="bench", resolution=128)
    return n_shards


def timed_open(d: Path) -> tuple[float, shards.ShardDataset]:
    """Seconds to open ``d`` as a fresh process would (this process's checksum / layout caches cleared)."""
    shards._HASHES.clear()
    shards._INFOS.clear()
    t = time.perf_counter()
    ds = shards.ShardDataset(d)
    return time.perf_counter() - t, ds


def open_at_scale(gb: float, batch: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_shards_gb_") as tmp:
        d, records = Path(tmp) / "teacher", Path(tmp) / "records"
        os.environ[shards.RECORD_ENV] = str(records)  # a fresh, private verify-record dir
        t = time.perf_counter()
        n_shards = write_gb(d, gb)
        write_s = time.perf_counter() - t
        size = sum(p.stat().st_size for p in d.glob("*.h5"))
        first, _ = timed_open(d)
        cached, ds = timed_open(d)
        t, n = time.perf_counter(), 0
        for idx in shards.epoch_batches(len(ds), batch, seed=0, epoch=0)[:max(1, 20000 // batch)]:
            n += len(ds.read(idx, raw=True)["y"])
        read_s = time.perf_counter() - t
    return {"gb": round(size / 1e9, 2), "shards": n_shards, "samples": len(ds), "write_s": round(write_s, 1),
            "first_open_s": round(first, 2), "first_open_gb_per_s": round(size / 1e9 / first, 2),
            "cached_open_s": round(cached, 4), "ratio_first_over_cached": round(first / cached, 1),
            "random_read_images_per_s": round(n / read_s, 1),
            "random_read_mb_per_s": round(n * (128 * 128 * 3 + 128 * 4 + 8) / 2**20 / read_s, 1),
            "note": "first open hashes every shard (no verify record); cached open trusts the record; "
                    "random reads: batches of a uniform permutation, 20k samples"}


def rate(fn) -> tuple[float, float]:
    """(images per wall second, images per CPU second of this process). The CPU figure is the stable
    one on a busy machine; it leaves out DataLoader worker processes."""
    t, c = time.perf_counter(), time.process_time()
    n = fn()
    return n / (time.perf_counter() - t), n / max(time.process_time() - c, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--shard-size", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2, help="also time the DataLoader with this many workers")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (DataLoader workers use 1)")
    ap.add_argument("--gb", type=float, default=10, help="GB of shards for the start-up test (0: skip it)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_shards_") as tmp:
        d = Path(tmp) / "small"
        os.environ[shards.RECORD_ENV] = str(Path(tmp) / "records")  # never the user's cache
        d.mkdir()
        write_data(d, args.n, args.shard_size)
        ds = shards.ShardDataset(d)
        seq_h5py(d, args.batch_size, False)  # warm the page cache
        cases = {
            "seq_h5py_raw": lambda e: seq_h5py(d, args.batch_size, False),
            "random_raw": lambda e: random_read(ds, args.batch_size, False, e),
            "seq_h5py_tensor": lambda e: seq_h5py(d, args.batch_size, True),
            "random_tensor": lambda e: random_read(ds, args.batch_size, True, e),
            "random_loader": lambda e: random_loader(ds, args.batch_size, e, 0),
        }
        wall: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for epoch in range(args.repeats):  # interleaved, best of repeats
            for name, fn in cases.items():
                w, c = rate(lambda: fn(epoch))
                wall[name], cpu[name] = max(wall.get(name, 0.0), w), max(cpu.get(name, 0.0), c)
        if args.workers:
            wall[f"random_loader_{args.workers}w"] = max(
                rate(lambda: random_loader(ds, args.batch_size, e, args.workers))[0] for e in range(2))
        size_mb = sum(p.stat().st_size for p in d.glob("*.h5")) / 2**20
    out = {
        "n": args.n, "batch_size": args.batch_size, "shard_size": args.shard_size, "data_mb": round(size_mb, 1),
        "cpus": len(os.sched_getaffinity(0)), "torch_threads": args.threads,
        "note": "warm page cache, best of interleaved repeats; random = uniform permutation per epoch",
        "images_per_wall_s": {k: round(v, 1) for k, v in wall.items()},
        "images_per_cpu_s": {k: round(v, 1) for k, v in cpu.items()},
        "ratio_raw": {"wall": round(wall["random_raw"] / wall["seq_h5py_raw"], 3),
                      "cpu": round(cpu["random_raw"] / cpu["seq_h5py_raw"], 3)},
        "ratio_tensor": {"wall": round(wall["random_tensor"] / wall["seq_h5py_tensor"], 3),
                         "cpu": round(cpu["random_tensor"] / cpu["seq_h5py_tensor"], 3)},
        "ratio_loader_vs_seq_tensor": {"wall": round(wall["random_loader"] / wall["seq_h5py_tensor"], 3),
                                       "cpu": round(cpu["random_loader"] / cpu["seq_h5py_tensor"], 3)},
        "goal": ">= 0.8",
    }
    if args.gb > 0:
        out["startup"] = open_at_scale(args.gb, args.batch_size)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
