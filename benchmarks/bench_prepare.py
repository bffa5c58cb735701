"""prepare() throughput (images/s) and peak memory at N and 4N images (goal: flat memory).

Generates an ImageNet-layout tree of ImageNet-sized JPEGs (random sizes 250-500 px, quality 90), then
runs ``prepare`` on the first N and on all 4N images (``max_per_class``), each in its own subprocess.
The child reports its own peak RSS (main process) and that of its decoding pool
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``); the parent reports ``RUSAGE_CHILDREN`` after each run.
Then the decode comparison (``--decode N``, 0 skips it): N ImageNet-like JPEGs (the demo world's synthetic photos,
``tinygan.demo.tree``: sides 250-460 px, plus the large ones mean about 450x420, plus every 8th one 1000-1600 px; quality 70-95),
decoded by ``load_image`` in this one process (images per CPU second = per core), today's full decode vs
``jpeg_draft``, interleaved, best of repeats; with the tolerance: max / mean |pixel difference| of the two
decodes, and the Fréchet distance between the two decoded sets on 8x8-average-pooled pixels (192-d; a
feature-statistic check without Inception weights), next to the same distance between the even- and odd-numbered
full decodes (the sampling scale). Prints one JSON object.

    python benchmarks/bench_prepare.py [--n 300] [--workers 0] [--shard-size 100] [--decode 200]
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


def make_photos(root: Path, n: int) -> list[Path]:
    """n ImageNet-sized demo photos (every 8th one large), as JPEG files under ``root``."""
    from tinygan.demo.tree import make_tree

    make_tree(root / "small", [1, 9, 130, 207], -(-n // 4), seed=0, min_side=250, max_side=460, progress=False)
    make_tree(root / "large", [281, 291], max(1, -(-n // 16)), seed=1, min_side=1000, max_side=1600, progress=False)
    files = sorted(p for p in root.rglob("*.JPEG") if "_bad_" not in p.name and "_notes" not in p.name)
    small, large = [p for p in files if "small" in p.parts], [p for p in files if "large" in p.parts]
    return small[:n - n // 8] + large[:n // 8]


def decode_rates(files: list[Path], resolution: int, repeats: int) -> dict:
    """Images per CPU second of ``load_image`` (full decode vs draft) and the tolerance between them."""
    from tinygan.frechet import StatsAccumulator, frechet_distance
    from tinygan.prepare import load_image

    best, decoded = {False: 0.0, True: 0.0}, {}
    for _ in range(repeats):
        for draft in (False, True):
            t = time.process_time()
            out = [load_image(str(p), resolution, draft)[0] for p in files]
            best[draft] = max(best[draft], len(files) / max(time.process_time() - t, 1e-9))
            decoded[draft] = np.stack(out)
    full, fast = decoded[False].astype(np.float64), decoded[True].astype(np.float64)
    diff = np.abs(full - fast)

    def stats(x):
        acc = StatsAccumulator(192)
        acc.update(x.reshape(len(x), 8, resolution // 8, 8, resolution // 8, 3).mean(axis=(2, 4)).reshape(len(x), -1))
        return acc.finalize()

    sizes = [_image_size(p) for p in files]
    return {"images": len(files), "mean_size_wh": [round(float(np.mean([s[i] for s in sizes]))) for i in (0, 1)],
            "large_images": sum(max(s) >= 1000 for s in sizes), "resolution": resolution,
            "images_per_cpu_s": {"full_decode": round(best[False], 1), "jpeg_draft": round(best[True], 1)},
            "ratio_draft_over_full": round(best[True] / best[False], 2),
            "max_abs_pixel_diff": int(diff.max()), "mean_abs_pixel_diff": round(float(diff.mean()), 3),
            "p99_abs_pixel_diff": float(np.percentile(diff, 99)),
            "frechet_pooled_pixels_draft_vs_full": round(frechet_distance(stats(full), stats(fast)), 4),
            "frechet_pooled_pixels_full_even_vs_odd": round(frechet_distance(stats(full[0::2]),
                                                                             stats(full[1::2])), 4)}


def _image_size(p: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(p) as im:
        return im.size


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
    ap.add_argument("--decode", type=int, default=200, help="JPEGs for the full-vs-draft decode test (0: skip)")
    ap.add_argument("--repeats", type=int, default=3, help="decode test: best of this many")
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
    if args.decode:
        with tempfile.TemporaryDirectory(prefix="bench_prepare_jpeg_") as tmp:
            out["decode"] = decode_rates(make_photos(Path(tmp), args.decode), args.resolution, args.repeats)
        out["decode"]["goal"] = "ratio >= 2 per core, within the tolerance tests/test_prepare.py pins"
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
