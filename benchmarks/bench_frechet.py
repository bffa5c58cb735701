"""Benchmark: exact fast Fréchet distance (tinygan.frechet) vs clean-fid's scipy-sqrtm formula.

Prints one JSON object. Shapes are the protocol's (d = 2048 Inception features):
  * intra-FID: per class, 1,300 real features (kept raw, low-rank) vs 5,000 generated (full
    scatter matrix); ours on every benchmarked class, scipy on ``--scipy-classes`` of them, its
    per-class time extrapolated linearly to all classes and to the paper's 398 (said in the JSON);
  * FID: 50,000 vs 50,000 features (both full covariances), ours vs scipy, one run each.
Features are synthetic (ReLU of a low-rank Gaussian plus noise: non-negative, full-rank covariance);
the timings depend only on the shapes. Both sides run in the same process, one after the other.

    python benchmarks/bench_frechet.py --classes 4 --scipy-classes 1
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_frechet.py   # fairer on a busy, shared machine

scipy's sqrtm is mostly single-threaded while the fast path is BLAS-3 bound, so on a shared, busy
machine multi-threaded BLAS can thrash and penalise the fast path; pin one thread to compare.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from tinygan.frechet import Stats, StatsAccumulator, frechet_distance, frechet_scipy


def synthetic_features(n: int, d: int, seed: int, shift: float = 0.0, chunk: int = 5000):
    """Yield float32 feature batches: relu(z @ w + noise + shift), z ~ N(0, I_64)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((64, d)).astype(np.float32) * 0.15
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        z = rng.standard_normal((m, 64), dtype=np.float32)
        x = z @ w + 0.3 * rng.standard_normal((m, d), dtype=np.float32) + 0.2 + shift
        yield np.maximum(x, 0.0)


def accumulate(n: int, d: int, seed: int, shift: float = 0.0) -> tuple[Stats, float]:
    t = time.perf_counter()
    acc = StatsAccumulator(d)
    for batch in synthetic_features(n, d, seed, shift):
        acc.update(batch)
    return acc.finalize(), time.perf_counter() - t


def timed(fn):
    t = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t


def scipy_on(a: Stats, b: Stats) -> float:
    return frechet_scipy(a.mean, a.cov(), b.mean, b.cov())


def bench_intra(classes: int, scipy_classes: int, d: int, n_real: int, n_gen: int, seed: int) -> dict:
    ours_s, scipy_s, accum_s, rel_err, values = [], [], [], [], []
    for c in range(classes):
        real, _ = accumulate(n_real, d, seed + 2 * c)
        gen, t_acc = accumulate(n_gen, d, seed + 2 * c + 1, shift=0.05)
        accum_s.append(t_acc)
        ours, t_ours = timed(lambda: frechet_distance(gen, real))
        ours_s.append(t_ours)
        values.append(ours)
        if c < scipy_classes:
            ref, t_ref = timed(lambda: scipy_on(gen, real))
            scipy_s.append(t_ref)
            rel_err.append(abs(ours - ref) / abs(ref))
    ours_mean, scipy_mean = float(np.mean(ours_s)), float(np.mean(scipy_s))
    return {
        "classes": classes,
        "shapes": {"d": d, "real_per_class": n_real, "generated_per_class": n_gen,
                   "real_repr": f"raw float32 features [{n_real}, {d}] (low-rank path)",
                   "generated_repr": f"float64 scatter matrix [{d}, {d}]"},
        "ours_total_s": round(float(np.sum(ours_s)), 3),
        "ours_per_class_s": round(ours_mean, 3),
        "scipy_classes_timed": len(scipy_s),
        "scipy_per_class_s": round(scipy_mean, 3),
        "scipy_total_s_extrapolated": round(scipy_mean * classes, 1),
        "extrapolation": (f"scipy timed on {len(scipy_s)} of {classes} classes; totals = per-class mean x classes"
                          if len(scipy_s) < classes else "none: scipy timed on every class"),
        "speedup": round(scipy_mean / ours_mean, 1),
        "projected_398_classes_s": {"ours": round(ours_mean * 398, 1), "scipy": round(scipy_mean * 398, 1)},
        "max_rel_diff_vs_scipy": float(max(rel_err)) if rel_err else None,
        "mean_intra_fid": float(np.mean(values)),
        "accumulate_generated_per_class_s": round(float(np.mean(accum_s)), 3),
    }


def bench_full(d: int, n: int, seed: int) -> dict:
    a, t_a = accumulate(n, d, seed + 1000)
    b, t_b = accumulate(n, d, seed + 1001, shift=0.05)
    ours, t_ours = timed(lambda: frechet_distance(a, b))
    ref, t_ref = timed(lambda: scipy_on(a, b))
    return {
        "shapes": {"d": d, "n_a": n, "n_b": n},
        "ours_s": round(t_ours, 3),
        "scipy_s": round(t_ref, 3),
        "speedup": round(t_ref / t_ours, 1),
        "rel_diff_vs_scipy": abs(ours - ref) / abs(ref),
        "fid": ours,
        "accumulate_s_per_set": round((t_a + t_b) / 2, 2),
        "accumulate_rows_per_s": round(2 * n / (t_a + t_b)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classes", type=int, default=4, help="classes for the intra-FID benchmark")
    p.add_argument("--scipy-classes", type=int, default=1, help="classes timed with scipy (rest extrapolated)")
    p.add_argument("--d", type=int, default=2048)
    p.add_argument("--n-real", type=int, default=1300)
    p.add_argument("--n-gen", type=int, default=5000)
    p.add_argument("--full-n", type=int, default=50000, help="samples per set for the full FID benchmark")
    p.add_argument("--skip-full", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = {
        "benchmark": "frechet",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                    "blas_threads_env": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")},
                    "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
        "intra_fid": bench_intra(args.classes, min(args.scipy_classes, args.classes), args.d, args.n_real,
                                 args.n_gen, args.seed),
    }
    if not args.skip_full:
        out["fid"] = bench_full(args.d, args.full_n, args.seed)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
