"""Random-batch shard reader vs a sequential h5py read of the same data (images/s, side by side).

Writes teacher-layout shards (z, y, 128x128 images) to a temp dir, warms the page cache, then times
alternately (best of --repeats):

  seq_h5py_raw      h5py slices f["images"][a:a+B], f["z"][...], f["y"][...] shard by shard (uint8)
  random_raw        ShardDataset.read(random batch, raw=True)               (uint8, same arrays)
  seq_h5py_tensor   the sequential read + the reader's conversion to float NCHW [-1, 1] tensors
  random_tensor     ShardDataset.__getitems__(random batch)                   (what training gets)
  random_loader     train.step_loader over train.StepBatches, workers=0 (what training runs)

Goal: random / sequential >= 0.8. Prints one JSON object.

    python benchmarks/bench_shards.py [--n 4096] [--shard-size 1024] [--batch-size 32]
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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_shards_") as tmp:
        d = Path(tmp)
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
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
