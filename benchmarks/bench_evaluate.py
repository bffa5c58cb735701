"""Benchmark: what the evaluate stage costs beyond the network (goal: throughput >= 0.9 x the bare extractor's),
and its peak memory at N, 2N and 4N samples (goal: flat).

Builds a small world in a temp dir, in a subprocess (real and teacher shards of 3 classes, a tiny untrained
student G ch=4, a demo judge trained for one epoch, the Inception-cost stand-in, reference stats of both), then,
each in a fresh subprocess (1 torch thread):

* throughput: the teacher half of the stage (``teacher_metrics``: shard reads, extractor, IS, FID, KID with its
  std over 100 subsets, precision/recall/density/coverage on ``pr_samples`` rows) on the T stored teacher images,
  against the bare extractor (features and class probabilities) on the same images already in memory; images/s
  of both and their ratio, plus the seconds the metric functions alone take on those features (KID, P&R/D&C);
* memory: ``tinygan.evaluate.evaluate`` with n_samples = N, 2N, 4N and per_class_samples = N/4, N/2, N. Each
  child reports its peak RSS after setup (imports, extractor, generator, and one batch of activations: a warm-up
  evaluate call with 64 images) and after the measured run; the growth of the peak is what evaluate itself
  costs. If evaluate held its images, 4N images of 128x128x3 uint8 would add 4N x 48 KiB to the peak. Linux keeps
  a process's ru_maxrss across fork and exec, so a child's "setup" peak is at least its parent's: the parent
  stays small (the world is built in a child of its own).

The throughput is measured with two extractors, side by side, at each T of ``--images``: the demo judge (64x64
input, d = 128, ~4 MMAC per image: far cheaper than Inception, so the metrics' share is much larger than in real
use) and an Inception-cost stand-in (``_stand_in``: random seeded weights, NVlabs' call interface and
attributes, resize to 299 inside, a conv stack of ~5.7 GMAC per image as Inception-v3, measured with
``tinygan.summary.count_macs`` and printed, 2048 pool features / 1008 probabilities)
loaded as extractor kind "inception" with its own sha256 (``EvalConfig.extractor_sha256``), as tests do: its
ratio is what the metrics cost next to Inception. The memory runs use the judge.

    python benchmarks/bench_evaluate.py                           # N = 512; T = 128, 256
    python benchmarks/bench_evaluate.py --n 128 --images 64 128   # quicker
    python benchmarks/bench_evaluate.py --device cuda             # extractor, student, reference stats on the GPU

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
REAL_PER_CLASS = 100   # 300 real images (the demo has 320): the stand-in's reference statistics cost ~0.1 s each
PR_SAMPLES = 1000      # the demo profile's evaluate.pr_samples
# numpy's BLAS (KID) as torch: one thread each, so the machine's other load does not make thread pools spin
EXTRACTORS = {"judge": ("judge", "judge.pt"),  # name -> (evaluate.extractor kind, file in the world)
              "inception_cost_stand_in": ("inception", "inception-2015-12-05.pt")}
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
DEVICE_ENV = "TINYGAN_BENCH_DEVICE"  # --device, handed to the children: runtime.evaluate.device (cpu | cuda)


def _device() -> str:
    return os.environ.get(DEVICE_ENV, "cpu")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _stand_in():
    """An eager module with the NVlabs TorchScript Inception's call interface and attributes (``layers``,
    ``output`` Linear(2048, 1008); uint8 or float [0, 255] NCHW of any size, float cast, bilinear resize to
    299x299, (x - 128) / 128 inside) and roughly Inception-v3's cost; weights random (seed 0)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    def conv(cin, cout, k, stride):
        return [nn.Conv2d(cin, cout, k, stride, k // 2), nn.ReLU()]

    class StandIn(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(
                *conv(3, 32, 3, 2), *conv(32, 96, 3, 1), *conv(96, 128, 3, 2), *conv(128, 256, 3, 1),
                *conv(256, 384, 3, 2), *conv(384, 768, 3, 2), *conv(768, 2048, 1, 1),
                nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.output = nn.Linear(2048, 1008)

        def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                    no_output_bias: bool = False) -> torch.Tensor:
            x = F.interpolate(img.to(torch.float32), size=(299, 299), mode="bilinear", align_corners=False)
            features = self.layers((x - 128) / 128)
            if return_features:
                return features
            bias = torch.zeros_like(self.output.bias) if no_output_bias else self.output.bias
            return F.softmax(F.linear(features, self.output.weight, bias), dim=1)

    torch.manual_seed(0)
    return StandIn().eval()


def save_stand_in(path: Path) -> int:
    """Script and save the stand-in; returns its MACs per 128x128 image (``tinygan.summary.count_macs``)."""
    import torch

    from tinygan.summary import count_macs

    module = _stand_in()
    macs = count_macs(module, torch.zeros(1, 3, 128, 128, dtype=torch.uint8))
    torch.jit.save(torch.jit.script(module), str(path))
    return macs


def build_world(root: Path, real_per_class: int, teacher_per_class: int) -> int:
    """The world in ``root``; returns the stand-in's MACs per image."""
    import numpy as np
    import torch

    from tinygan import shards
    from tinygan.demo.judge import train_demo_judge
    from tinygan.evaluate import reference_stats
    from tinygan.io import sha256_file
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
    macs = save_stand_in(root / "inception-2015-12-05.pt")
    for name, (kind, file) in EXTRACTORS.items():
        reference_stats(root / "real", root / file, kind, root / f"refstats-{name}", progress=False,
                        sha256=sha256_file(root / file), pr_samples=PR_SAMPLES, device=_device())
    torch.manual_seed(0)
    save_generator(Generator(variant="dw", ch=4).eval(), root / "generator.safetensors")
    return macs


def _config(root: Path, extractor: str = "judge", **sizes):
    import torch

    from tinygan.evaluate import EvalConfig
    from tinygan.io import sha256_file

    torch.set_num_threads(1)
    kind, file = EXTRACTORS[extractor]
    return EvalConfig(classes=CLASSES, truncation=0.5, seed=0, extractor_kind=kind, extractor_path=str(root / file),
                      extractor_sha256=sha256_file(root / file), protocol="stylegan2-ada", encoder=None, d_ch=None,
                      device=_device(), batch_size=64, progress=False, curve_samples=16, teacher_samples="stored",
                      pr_samples=PR_SAMPLES, sheet_samples=2, **sizes)


def child_memory(root: Path, n: int) -> dict:
    from tinygan.evaluate import evaluate

    paths = (root / "generator.safetensors", root / "teacher", root / "refstats-judge")
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


def child_throughput(root: Path, n: int, extractor: str) -> dict:
    import numpy as np
    import torch

    from tinygan.evaluate import KID_SUBSET, _nchw, load_inputs, teacher_metrics
    from tinygan.metrics import kid_subsets, prdc

    inp = load_inputs(_config(root, extractor, n_samples=n, per_class_samples=2), root / "generator.safetensors",
                      root / "teacher", root / f"refstats-{extractor}")
    images = inp.teacher.read(inp.teacher_idx, raw=True, fields=("images",))["images"]
    batches = [_nchw(images[a:a + 64]) for a in range(0, len(images), 64)]
    feats = []
    # TorchScript's profiling executor re-profiles per input shape (first calls slow); without it both sides run
    # the same unspecialised graph from the first call (the cost is the convolutions' either way)
    with torch.jit.optimized_execution(False):
        inp.ext(batches[0][:8])  # warm-up: first-call buffers
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
    prdc(real[:PR_SAMPLES], feats[:PR_SAMPLES], device=inp.device)
    t_prdc = time.perf_counter() - t
    return {"extractor": extractor, "feature_dim": inp.ext.feature_dim, "images": len(images),
            "real_rows": len(real), "pr_samples": PR_SAMPLES, "kid_subsets": inp.cfg.kid_subsets,
            "bare_extractor_images_per_s": round(len(images) / bare, 2),
            "evaluate_images_per_s": round(len(images) / stage, 2), "ratio": round(bare / stage, 3),
            "kid_prdc_share_of_network": round((t_kid + t_prdc) / bare, 4),  # alone, so less exposed to contention
            "seconds": {"bare_extractor": round(bare, 3), "teacher_metrics": round(stage, 3),
                        "kid_alone": round(t_kid, 3), "prdc_alone": round(t_prdc, 3)},
            "teacher_precision": metrics["teacher_precision"]}


def _run(root: Path, mode: str, n: int, extractor: str = "judge") -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(root), str(n), extractor], check=True,
                         capture_output=True, text=True, env={**os.environ, **ONE_THREAD, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if _device().startswith("cuda") else "cpu"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512, help="n_samples of the smallest memory run (then 2N, 4N)")
    ap.add_argument("--images", type=int, nargs="+", default=[128, 256],
                    help="stored teacher images (T) of each throughput run, per extractor")
    ap.add_argument("--device", default="cpu", help="cpu | cuda: where the extractor and student run (each child "
                                                   "still has 1 CPU thread)")
    ap.add_argument("--child", nargs=4, metavar=("MODE", "ROOT", "N", "EXTRACTOR"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        mode, root, n, extractor = a.child
        if mode == "build":
            out = {"macs": build_world(Path(root), REAL_PER_CLASS, int(n))}
        else:
            out = child_memory(Path(root), int(n)) if mode == "memory" else child_throughput(Path(root), int(n),
                                                                                              extractor)
        print(json.dumps(out))
        return
    os.environ[DEVICE_ENV] = a.device  # the children's evaluate device
    with tempfile.TemporaryDirectory(prefix="bench_evaluate_") as tmp:
        root = Path(tmp)
        # built in a child too: a child's ru_maxrss starts at its parent's peak (kept across fork and exec)
        macs = _run(root, "build", -(-max(a.images) // len(CLASSES)))["macs"]
        speed = [_run(root, "throughput", t, e) for t in a.images for e in EXTRACTORS]
        runs = [_run(root, "memory", n) for n in (a.n, 2 * a.n, 4 * a.n)]
    small, big = runs[0], runs[-1]
    image_mib = 128 * 128 * 3 / 2**20
    print(json.dumps({
        "benchmark": "evaluate: throughput vs the bare extractor; peak RSS at N, 2N, 4N samples (subprocess each, "
                     "1 torch thread)",
        "extractors": {"judge": "demo judge (d=128, K=3, ~4 MMAC/image)",
                       "inception_cost_stand_in": f"random-weight conv stack, NVlabs Inception interface, resize to "
                                                  f"299, d=2048, K=1008, {macs / 1e9:.2f} GMAC/image (count_macs)"},
        "stand_in_gmac_per_image": round(macs / 1e9, 3), "generator": "TinyGAN-dw ch=4 (untrained)",
        "throughput": speed, "ratios": {f"{s['extractor']}@T={s['images']}": s["ratio"] for s in speed},
        "kid_prdc_share_of_network": {f"{s['extractor']}@T={s['images']}": s["kid_prdc_share_of_network"]
                                      for s in speed},
        "throughput_goal": ">= 0.9",
        "memory_extractor": "judge", "memory_runs": runs,
        "peak_ratio_4n_over_n": round(big["peak_rss_mib"] / small["peak_rss_mib"], 3),
        "growth_4n_minus_n_mib": round(big["growth_mib"] - small["growth_mib"], 1),
        "if_images_were_held_extra_mib": round((big["student_images"] - small["student_images"]) * image_mib, 1),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "device": _device_name()},
    }, indent=2))


if __name__ == "__main__":
    main()
