"""Benchmark: peak memory of the evaluate stage at N and 4N samples (goal: flat).

Builds a small world in a temp dir (real and teacher shards of 3 classes, a tiny untrained student
G ch=4, a demo judge trained for one epoch, reference stats), then runs ``tinygan.evaluate.evaluate``
in a fresh subprocess per size: n_samples = N and 4N, per_class_samples = N/4 and N (both scaled by 4).
Each child reports its peak RSS after setup (imports, extractor, generator, and one batch of activations:
a warm-up evaluate call with 64 images) and after the measured run; the growth of the peak is what evaluate itself costs.
If evaluate held its images, 4N images of 128x128x3 uint8 would add 4N x 48 KiB to the peak.

    python benchmarks/bench_evaluate.py                 # N = 512
    python benchmarks/bench_evaluate.py --n 256         # quicker

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


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def build_world(root: Path) -> None:
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
    _, y, im = images(32, 1)
    names = np.asarray([f"img{i}.JPEG" for i in range(len(y))], dtype=object)
    info = shards.write_shard(root / "real" / "real-00000.h5", {"images": im, "y": y, "names": names},
                              {"kind": "real", "fingerprint": "bench"})
    shards.write_manifest(root / "real", "real", [info], {c: 32 for c in CLASSES}, fingerprint="bench",
                          resolution=128)
    (root / "teacher").mkdir(parents=True)
    z, y, im = images(32, 2)
    info = shards.write_shard(root / "teacher" / "teacher-00000.h5", {"z": z, "y": y, "images": im},
                              {"kind": "teacher", "fingerprint": "bench"})
    shards.write_manifest(root / "teacher", "teacher", [info], {c: 32 for c in CLASSES},
                          {"teacher": "demo", "teacher_info": describe("demo")}, fingerprint="bench", resolution=128)
    train_demo_judge(root / "real", root / "judge.pt", seed=0, epochs=1, progress=False)
    reference_stats(root / "real", root / "judge.pt", "judge", root / "refstats", progress=False)
    torch.manual_seed(0)
    save_generator(Generator(variant="dw", ch=4).eval(), root / "generator.safetensors")


def child(root: Path, n: int) -> dict:
    import torch

    from tinygan.evaluate import EvalConfig, evaluate

    torch.set_num_threads(1)
    cfg = dict(classes=CLASSES, truncation=0.5, seed=0, extractor_kind="judge", extractor_path=str(root / "judge.pt"),
               protocol="stylegan2-ada", encoder=None, d_ch=None, device="cpu", batch_size=64,
               teacher_samples="stored", progress=False,
               curve_samples=16, kid_subsets=10, sheet_samples=2)
    paths = (root / "generator.safetensors", root / "teacher", root / "refstats")
    # warm-up with full batches: imports, first-call buffers and one batch of activations are in the setup peak
    evaluate(EvalConfig(n_samples=64, per_class_samples=64, **cfg), *paths, root / "warmup")
    before = _peak_mib()
    t = time.perf_counter()
    m = evaluate(EvalConfig(n_samples=n, per_class_samples=max(2, n // 4), **cfg), *paths, root / f"out-{n}")
    seconds = time.perf_counter() - t
    after = _peak_mib()
    images = n + len(CLASSES) * max(2, n // 4)
    return {"n_samples": n, "per_class_samples": max(2, n // 4), "student_images": images,
            "peak_rss_setup_mib": round(before, 1), "peak_rss_mib": round(after, 1),
            "growth_mib": round(after - before, 1), "seconds": round(seconds, 2),
            "student_images_per_s": round(images / seconds, 1), "fid": m["fid"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--child", nargs=2, metavar=("ROOT", "N"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(Path(a.child[0]), int(a.child[1]))))
        return
    with tempfile.TemporaryDirectory(prefix="bench_evaluate_") as tmp:
        root = Path(tmp)
        build_world(root)
        runs = []
        for n in (a.n, 4 * a.n):
            out = subprocess.run([sys.executable, __file__, "--child", str(root), str(n)], check=True,
                                 capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    small, big = runs
    image_mib = 128 * 128 * 3 / 2**20
    print(json.dumps({
        "benchmark": "evaluate peak RSS at N and 4N samples (subprocess each, 1 torch thread)",
        "extractor": "demo judge (d=128, K=3)", "generator": "TinyGAN-dw ch=4 (untrained)",
        "runs": runs,
        "peak_ratio_4n_over_n": round(big["peak_rss_mib"] / small["peak_rss_mib"], 3),
        "growth_4n_minus_n_mib": round(big["growth_mib"] - small["growth_mib"], 1),
        "if_images_were_held_extra_mib": round((big["student_images"] - small["student_images"]) * image_mib, 1),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }, indent=2))


if __name__ == "__main__":
    main()
