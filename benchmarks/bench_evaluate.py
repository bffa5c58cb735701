"""Benchmark: what the evaluate stage costs beyond the network (goal: throughput >= 0.9 x the bare extractor's),
and its peak memory at N, 2N and 4N samples (goal: flat).

Builds a small world in a temp dir (real and teacher shards of 3 classes, a tiny untrained student G ch=4, a demo
judge trained for one epoch, reference stats), then, each in a fresh subprocess (1 torch thread):

* throughput: the teacher half of the stage (``teacher_metrics``: shard reads, extractor, IS, FID, KID with its
  std over 100 subsets, precision/recall/density/coverage on ``pr_samples`` rows) on the T stored teacher images,
  against the bare extractor (features and class probabilities) on the same images already in memory; images/s
  of both and their ratio, plus the seconds the metric functions alone take on those features (KID, P&R/D&C);
* memory: ``tinygan.evaluate.evaluate`` with n_samples = N, 2N, 4N and per_class_samples = N/4, N/2, N. Each
  child reports its peak RSS after setup (imports, extractor, generator, and one batch of activations: a warm-up
  evaluate call with 64 images) and after the measured run; the growth of the peak is what evaluate itself
  costs. If evaluate held its images, 4N images of 128x128x3 uint8 would add 4N x 48 KiB to the peak.

The extractor is the demo judge (64x64 input, d = 128): far cheaper per image than Inception, so the metrics'
share of the time is much larger here than with Inception at paper scale; the ratio is a lower bound.

    python benchmarks/bench_evaluate.py                 # N = 512, T = 1536
    python benchmarks/bench_evaluate.py --n 128 --images 384   # quicker

Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLASSES = [1, 9, 130]
REAL_PER_CLASS = 200   # 600 real images: the demo has 320
PR_SAMPLES = 1000      # the demo profile's evaluate.pr_samples
# numpy's BLAS (KID) as torch: one thread each, so the machine's other load does not make thread pools spin
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def build_world(root: Path, real_per_class: int, teacher_per_class: int) -> None:
    import numpy as np
    import torch

    from tinygan import shards
    from tinygan.demo.judge import train_demo_judge
    from tinygan.evaluate import reference_stats
    from tinygan.models import Generator
    from tinygan.teacher import describe
    from tinygan.train import save_generator

    g = np.linspace(-1, 1, 128, dtype=np.float32)

    def images(n_per, seed):
        r = np.random.default_rng(seed)
        z, y, out = [], [], []
        for c in CLASSES:
            colour = np.array([(c * 37) % 200 + 40, (c * 91) % 200 + 40, (c * 13) % 200 + 40], np.float32)
            for _ in range(n_per):
                zi = (0.5 * np.clip(r.standard_normal(128), -2, 2)).astype(np.float32)
                ramp = 0.6 + 0.4 * np.tanh(3 * zi[0]) * g[None, :, None] + 0.2 * np.tanh(3 * zi[1]) * g[:, None, None]
                out.append(np.clip(colour * ramp + r.normal(0, 4, (128, 128, 3)), 0, 255).astype(np.uint8))
                z.append(zi)
                y.append(c)
        return np.stack(z), np.asarray(y, np.int64), np.stack(out)

    (root / "real").mkdir(parents=True)
    _, y, im = images(real_per_class, 1)
    names = np.asarray([f"img{i}.JPEG" for i in range(len(y))], dtype=object)
    info = shards.write_shard(root / "real" / "real-00000.h5", {"images": im, "y": y, "names": names},
                              {"kind": "real", "fingerprint": "bench"})
    shards.write_manifest(root / "real", "real", [info], {c: real_per_class for c in CLASSES}, fingerprint="bench",
                          resolution=128)
    (root / "teacher").mkdir(parents=True)
    z, y, im = images(teacher_per_class, 2)
    info = shards.write_shard(root / "teacher" / "teacher-00000.h5", {"z": z, "y": y, "images": im},
                              {"kind": "teacher", "fingerprint": "bench"})
    shards.write_manifest(root / "teacher", "teacher", [info], {c: teacher_per_class for c in CLASSES},
                          {"teacher": "demo", "teacher_info": describe("demo")}, fingerprint="bench", resolution=128)
    train_demo_judge(root / "real", root / "judge.pt", seed=0, epochs=1, progress=False)
    reference_stats(root / "real", root / "judge.pt", "judge", root / "refstats", progress=False,
                    pr_samples=PR_SAMPLES)
    torch.manual_seed(0)
    save_generator(Generator(variant="dw", ch=4).eval(), root / "generator.safetensors")


def _config(root: Path, **sizes):
    import torch

    from tinygan.evaluate import EvalConfig

    torch.set_num_threads(1)
    return EvalConfig(classes=CLASSES, truncation=0.5, seed=0, extractor_kind="judge",
                      extractor_path=str(root / "judge.pt"), protocol="stylegan2-ada", encoder=None, d_ch=None,
                      device="cpu", batch_size=64, progress=False, curve_samples=16, teacher_samples="stored",
                      pr_samples=PR_SAMPLES, sheet_samples=2, **sizes)


def child_memory(root: Path, n: int) -> dict:
    from tinygan.evaluate import evaluate

    paths = (root / "generator.safetensors", root / "teacher", root / "refstats")
    # warm-up with full batches: imports, first-call buffers and one batch of activations are in the setup peak
    evaluate(_config(root, n_samples=64, per_class_samples=64, kid_subsets=10), *paths, root / "warmup")
    before = _peak_mib()
    t = time.perf_counter()
    m = evaluate(_config(root, n_samples=n, per_class_samples=max(2, n // 4), kid_subsets=10), *paths,
                 root / f"out-{n}")
    seconds = time.perf_counter() - t
    after = _peak_mib()
    images = n + len(CLASSES) * max(2, n // 4)
    return {"n_samples": n, "per_class_samples": max(2, n // 4), "student_images": images,
            "peak_rss_setup_mib": round(before, 1), "peak_rss_mib": round(after, 1),
            "growth_mib": round(after - before, 1), "seconds": round(seconds, 2),
            "student_images_per_s": round(images / seconds, 1), "fid": m["fid"], "precision": m["precision"]}


def child_throughput(root: Path, n: int) -> dict:
    import numpy as np
    import torch

    from tinygan.evaluate import KID_SUBSET, _nchw, load_inputs, teacher_metrics
    from tinygan.metrics import kid_subsets, prdc

    inp = load_inputs(_config(root, n_samples=n, per_class_samples=2), root / "generator.safetensors",
                      root / "teacher", root / "refstats")
    images = inp.teacher.read(inp.teacher_idx, raw=True, fields=("images",))["images"]
    batches = [_nchw(images[a:a + 64]) for a in range(0, len(images), 64)]
    feats = []
    teacher_metrics(inp)  # warm-up: first-call buffers, page cache
    t = time.perf_counter()
    for b in batches:
        feats.append(inp.ext(b, need_probs=True)[0])
    bare = time.perf_counter() - t
    t = time.perf_counter()
    metrics, _ = teacher_metrics(inp)
    stage = time.perf_counter() - t
    feats, real = np.concatenate(feats), inp.ref_overall.reservoir
    t = time.perf_counter()
    kid_subsets(real, feats, num_subsets=inp.cfg.kid_subsets, max_subset_size=KID_SUBSET)
    t_kid = time.perf_counter() - t
    t = time.perf_counter()
    prdc(real[:PR_SAMPLES], feats[:PR_SAMPLES], device=torch.device("cpu"))
    t_prdc = time.perf_counter() - t
    return {"images": len(images), "real_rows": len(real), "pr_samples": PR_SAMPLES,
            "kid_subsets": inp.cfg.kid_subsets, "bare_extractor_images_per_s": round(len(images) / bare, 1),
            "evaluate_images_per_s": round(len(images) / stage, 1), "ratio": round(bare / stage, 3),
            "seconds": {"bare_extractor": round(bare, 3), "teacher_metrics": round(stage, 3),
                        "kid_alone": round(t_kid, 3), "prdc_alone": round(t_prdc, 3)},
            "teacher_precision": metrics["teacher_precision"]}


def _run(root: Path, mode: str, n: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(root), str(n)], check=True,
                         capture_output=True, text=True, env={**os.environ, **ONE_THREAD, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512, help="n_samples of the smallest memory run (then 2N, 4N)")
    ap.add_argument("--images", type=int, default=1536, help="stored teacher images for the throughput run")
    ap.add_argument("--child", nargs=3, metavar=("MODE", "ROOT", "N"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        mode, root, n = a.child
        print(json.dumps((child_memory if mode == "memory" else child_throughput)(Path(root), int(n))))
        return
    with tempfile.TemporaryDirectory(prefix="bench_evaluate_") as tmp:
        root = Path(tmp)
        build_world(root, real_per_class=REAL_PER_CLASS, teacher_per_class=max(1, a.images // len(CLASSES)))
        speed = _run(root, "throughput", a.images)
        runs = [_run(root, "memory", n) for n in (a.n, 2 * a.n, 4 * a.n)]
    small, big = runs[0], runs[-1]
    image_mib = 128 * 128 * 3 / 2**20
    print(json.dumps({
        "benchmark": "evaluate: throughput vs the bare extractor; peak RSS at N, 2N, 4N samples (subprocess each, "
                     "1 torch thread)",
        "extractor": "demo judge (d=128, K=3)", "generator": "TinyGAN-dw ch=4 (untrained)",
        "throughput": speed, "throughput_goal": ">= 0.9",
        "memory_runs": runs,
        "peak_ratio_4n_over_n": round(big["peak_rss_mib"] / small["peak_rss_mib"], 3),
        "growth_4n_minus_n_mib": round(big["growth_mib"] - small["growth_mib"], 1),
        "if_images_were_held_extra_mib": round((big["student_images"] - small["student_images"]) * image_mib, 1),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }, indent=2))


if __name__ == "__main__":
    main()
