"""Generation speed of every exported format, side by side in one run: PyTorch eager, TorchScript, onnxruntime
fp32 / int8 / fp16 and OpenVINO (float32) on the CPU; on CUDA too where available (eager, TorchScript, and
onnxruntime's CUDA provider when installed; outputs copied back to the host, as `tinygan generate` does).

For each model (TinyGAN-dw ch=32, the paper's; ch=8, the demo's; random weights — speed does not depend on
them; int8 calibrated as the export does, on 32 seeded latents) the backends are timed at batch 1 and batch 64,
interleaved round by round so that they see the same machine load; the median time per call gives images/s.
Prints JSON with ratios vs eager (CPU), file sizes, and each backend's max |difference| from eager (int8 and
fp16 differ by design; the export records their quality cost).

    python benchmarks/bench_generate.py [--rounds-1 10] [--rounds-64 2] [--threads 0] [--ch 32 8]

On a small shared machine use ``--threads 1``: with more intra-op threads than free cores, torch's threads
spin against each other and eager / TorchScript times balloon. Batch 64 of ch=32 takes seconds per call on
CPU, so the default keeps two timed rounds there.
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tinygan import quantize
from tinygan.export import make_config, save_onnx, save_openvino, save_torchscript
from tinygan.generate import OPENVINO_PRECISION, import_openvino
from tinygan.models import Generator
from tinygan.teacher import truncated_z_batch

CALIBRATION = 32


def torch_fn(model, device: str = "cpu"):
    def run(z, y):
        with torch.inference_mode():
            return model(torch.from_numpy(z).to(device), torch.from_numpy(y).to(device)).cpu().numpy()
    return run


def ort_fn(path: Path, threads: int, provider: str = "CPUExecutionProvider"):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=[provider])
    return lambda z, y: sess.run(["image"], {"z": z, "y": y})[0]


def openvino_fn(path: Path, threads: int):
    config = {**OPENVINO_PRECISION, **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
    compiled = import_openvino().Core().compile_model(str(path), "CPU", config)
    return lambda z, y: compiled({"z": z, "y": y})["image"]


@functools.lru_cache(maxsize=None)
def _have_openvino() -> bool:
    """Whether openvino imports (a GPU machine's image may lack it: its row is left out, and said so)."""
    try:
        import_openvino()
    except ImportError:
        return False
    return True


def backends(G: Generator, tmp: Path, threads: int) -> dict:
    """name -> fn(z numpy, y numpy) -> numpy, for every format the export writes (and CUDA where available)."""
    import onnxruntime as ort

    save_torchscript(G, tmp / "g.pt")
    save_onnx(G, tmp / "g.onnx", make_config(G.config, [0], 0.5), opset=17)
    if _have_openvino():
        save_openvino(tmp / "g.onnx", tmp / "g.xml")
    calib = quantize.labelled_z(list(range(10)), CALIBRATION, "biggan", 1, 0.5, G.config["z_dim"])
    quantize.save_int8(tmp / "g.onnx", tmp / "g.int8.onnx", *calib)
    quantize.save_fp16(tmp / "g.onnx", tmp / "g.fp16.onnx")
    fns = {"eager": torch_fn(G), "torchscript": torch_fn(torch.jit.load(str(tmp / "g.pt"))),
           "onnxruntime": ort_fn(tmp / "g.onnx", threads), "onnxruntime_int8": ort_fn(tmp / "g.int8.onnx", threads),
           "onnxruntime_fp16": ort_fn(tmp / "g.fp16.onnx", threads)}
    if _have_openvino():
        fns["openvino"] = openvino_fn(tmp / "g.xml", threads)
    if torch.cuda.is_available():  # never run on the CPU-only development machine
        fns["eager_cuda"] = torch_fn(copy.deepcopy(G).cuda(), "cuda")
        fns["torchscript_cuda"] = torch_fn(torch.jit.load(str(tmp / "g.pt"), map_location="cuda"), "cuda")
        if "CUDAExecutionProvider" in ort.get_available_providers():
            fns["onnxruntime_cuda"] = ort_fn(tmp / "g.onnx", threads, "CUDAExecutionProvider")
    return fns


def bench_model(ch: int, batches: dict[int, int], threads: int) -> dict:
    torch.manual_seed(0)
    G = Generator("dw", ch).eval()
    out = {"variant": "dw", "ch": ch, "params": sum(p.numel() for p in G.parameters())}
    with tempfile.TemporaryDirectory() as tmp:
        fns = backends(G, Path(tmp), threads)
        out["file_bytes"] = {p.name: p.stat().st_size for p in sorted(Path(tmp).iterdir())}
        for batch, rounds in batches.items():
            y = np.arange(batch, dtype=np.int64) % 1000
            z = truncated_z_batch(0, y, np.arange(batch), 0.5)
            ref = fns["eager"](z, y)
            for name, fn in fns.items():  # warm-up (TorchScript profiling runs, ORT arena, CUDA init) + agreement
                for _ in range(2 if batch == 1 else 1):
                    got = fn(z, y)
                out.setdefault("max_abs_diff_vs_eager", {})[name] = float(np.abs(got - ref).max())
            times = {name: [] for name in fns}
            for _ in range(rounds):
                for name, fn in fns.items():
                    t0 = time.perf_counter()
                    fn(z, y)  # returns host numpy: a CUDA call has finished when it returns
                    times[name].append(time.perf_counter() - t0)
            ips = {name: batch / statistics.median(t) for name, t in times.items()}
            out[f"batch_{batch}"] = {
                "rounds": rounds,
                "images_per_s": {k: round(v, 2) for k, v in ips.items()},
                "ratio_vs_eager": {k: round(v / ips["eager"], 3) for k, v in ips.items()},
                "median_s_per_call": {k: round(statistics.median(t), 4) for k, t in times.items()},
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds-1", type=int, default=10, help="timed calls per backend at batch 1")
    ap.add_argument("--rounds-64", type=int, default=2, help="timed calls per backend at batch 64")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads for torch, ORT and OpenVINO "
                                                           "(0: default)")
    ap.add_argument("--ch", type=int, nargs="+", default=[32, 8], help="channel multipliers to time")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    results = [bench_model(ch, {1: args.rounds_1, 64: args.rounds_64}, args.threads) for ch in args.ch]
    import onnxruntime as ort

    print(json.dumps({
        "benchmark": "generate: images/s of every exported format, median of interleaved rounds",
        "torch": torch.__version__, "onnxruntime": ort.__version__,
        "openvino": import_openvino().__version__ if _have_openvino() else "not installed: no openvino row",
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "models": results, "wall_s": round(time.perf_counter() - t0, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
