"""prepare() throughput (images/s) and peak memory at N and 4N images (goal: flat memory).

Generates an ImageNet-layout tree of ImageNet-sized JPEGs (random sizes 250-500 px, quality 90), then
runs ``prepare`` on the first N and on all 4N images (``max_per_class``), each in its own subprocess.
The child reports its own peak RSS (main process) and that of its decoding pool
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``); the parent reports ``RUSAGE_CHILDREN`` after each run.
Prints one JSON object.

    python benchmarks/bench_prepare.py [--n 300] [--workers 0] [--shard-size 100]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_tree(root: Path, n_classes: int, per_class: int, seed: int = 0) -> None:
    from PIL import Image

    from tinygan import classes

    rng = np.random.default_rng(seed)
    for c in range(n_classes):
        d = root / classes.wnid_of(c)
        d.mkdir(parents=True)
        for i in range(per_class):
            h, w = (int(v) for v in rng.integers(250, 501, 2))
            yy, xx = np.mgrid[0:h, 0:w]
            base = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 127 // (w + h))], -1)
            img = np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{classes.wnid_of(c)}_{i:05d}.JPEG", quality=90)


def child(args) -> None:
    from tinygan.prepare import prepare

    t = time.perf_counter()
    m = prepare(args.train, args.out, list(range(args.classes)), args.max_per_class, args.resolution,
                args.shard_size, args.workers, progress=False)
    dt = time.perf_counter() - t
    print(json.dumps({
        "images": m["n"], "shards": len(m["shards"]), "seconds": round(dt, 2), "images_per_s": round(m["n"] / dt, 1),
        "peak_rss_main_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_workers_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="images in the small run (the large one has 4N)")
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--workers", type=int, default=0, help="0 = all cores")
    ap.add_argument("--shard-size", type=int, default=100)
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--train", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--max-per-class", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    per_class = 4 * args.n // args.classes
    runs = {}
    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        train = Path(tmp) / "train"
        t = time.perf_counter()
        make_tree(train, args.classes, per_class)
        gen_s = time.perf_counter() - t
        for label, mpc in (("N", per_class // 4), ("4N", per_class)):
            cmd = [sys.executable, __file__, "--child", "--train", str(train), "--out", str(Path(tmp) / label),
                   "--classes", str(args.classes), "--max-per-class", str(mpc), "--workers", str(args.workers),
                   "--shard-size", str(args.shard_size), "--resolution", str(args.resolution)]
            res = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
            runs[label] = json.loads(res.stdout.strip().splitlines()[-1])
            runs[label]["parent_rusage_children_maxrss_mb"] = round(
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    out = {
        "cpus": len(os.sched_getaffinity(0)), "workers": args.workers or len(os.sched_getaffinity(0)),
        "shard_size": args.shard_size, "resolution": args.resolution, "tree_generation_s": round(gen_s, 1),
        "runs": runs,
        "rss_ratio_4N_over_N": {
            "main": round(runs["4N"]["peak_rss_main_mb"] / runs["N"]["peak_rss_main_mb"], 3),
            "workers": round(runs["4N"]["peak_rss_workers_mb"] / runs["N"]["peak_rss_workers_mb"], 3),
        },
        "goal": "rss ratio ~1 (flat in N)",
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
