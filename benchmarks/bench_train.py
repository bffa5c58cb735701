"""Training-iteration speed: ours (tinygan.train._iteration) vs a faithful re-implementation of the official
iteration (the authors' solver.py as the facts file describes it), side by side in one run, at the paper config
(dw ch32, d_ch32, batch 32, 128²) and the demo config. Prints JSON; not a test.

    python benchmarks/bench_train.py [--steps 5] [--threads N] [--configs paper,demo] [--device auto]
                                     [--loader 1024] [--workers 4] [--precisions fp32,tf32,bf16,fp16]
                                     [--compile both]

Official iteration (baseline): our Generator/Discriminator modules (bit-exact with the authors' model code),
contiguous fp32, plain Adam; D step: D(x_T), G(z, y) no grad -> D, D(x_r), G(z', y_r) no grad -> D (four D calls);
G step: G(z, y) with grad -> D features + pixel L1; every 5th iteration also -0.01·D(x_S) and, on a new z'',
-0.2·0.01·D(G(z'', y_r)). Ours: the train stage's step at the profile's params (channels_last, one G forward of
the teacher batch for both steps, batched D, uint8 images converted on the device, G's training-mode fast path
with its norms + ReLUs as one fused CPU kernel each (tinygan/cbn_relu.py), freed memory kept in malloc's heap on
CPU; the official steps run with glibc's default allocator settings). On CPU, "ours_eager_norms" is ours with that
kernel off (the eager batch_norm -> addcmul -> relu ops), "ours_g_calls_joint" is train.g_calls: joint, and on a CPU
with bf16 instructions (AVX512-BF16 / AMX) "ours_bf16" is train.precision: bf16 (bf16 convolutions, the norms in
float32 in the fused kernel; its fraction_of_matmul_peak is still against the fp32 peak).

Per row: sec_per_step (mean over the measured steps, which include the adversarial 5th iteration when
--steps >= 5), images_per_s (teacher batch / s), macs_per_step (counted by tinygan.summary.count_macs, x3 for a
forward + backward), fraction_of_matmul_peak (achieved MAC rate x2 over this machine's measured fp32 matmul
FLOP/s), projected_paper_schedule_h (741k iterations at this speed). The iteration rows take the batch from memory
(uint8 NHWC for ours: its host->device copy and conversion are timed; float NCHW for the official); the data path
(shards -> StepBatches -> DataLoader workers -> device) is measured on its own ("data_loading": it runs in worker
processes alongside the step, so a run goes at the slower of the two). On CUDA ours is also measured at each
train.precision (fp32: IEEE float32, CUDA's TF32 off, as the official row and the authors' 2080 Ti; tf32; bf16;
fp16), with compile on and off (--precisions and --compile narrow that list for a short run).
"""
import argparse
import dataclasses
import json
import time
from types import SimpleNamespace

import torch

from tinygan import cbn_relu, losses, params, profiles, runtime, summary
from tinygan.models import Discriminator, Generator
from tinygan.train import (D_NOISE, G_NOISE, PRECISIONS, TrainConfig, _build, _fresh_noise, _iteration, _When,
                           _wrap_ddp)

PAPER_ITERATIONS = 741_000  # 30 epochs of the paper's 1.2M teacher pairs at batch 32 (facts file)
CUDA_PRECISIONS = tuple(PRECISIONS)  # every train.precision: fp32, tf32, bf16, fp16
COMPILE = {"both": (False, True), "off": (False,), "on": (True,)}


def matmul_flops(device: torch.device, n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_batch(cfg: TrainConfig, device: torch.device, res: int = 128) -> dict:
    """One step's batch as StepBatches gives it (uint8 NHWC images; pinned on CUDA)."""
    g = torch.Generator().manual_seed(0)
    b = cfg.batch_size
    y = torch.randint(0, 1000, (b,), generator=g)
    img = lambda: torch.randint(0, 256, (b, res, res, 3), dtype=torch.uint8, generator=g)  # noqa: E731
    batch = {"t": {"z": torch.randn(b, 128, generator=g) * 0.5, "y": y, "images": img()},
             "r": {"y": y.flip(0), "images": img()}}
    if device.type == "cuda":
        batch = {k: {n: v.pin_memory() for n, v in part.items()} for k, part in batch.items()}
    return batch


class Official:
    """The authors' iteration (facts file, "The official training iteration, step by step")."""

    def __init__(self, cfg: TrainConfig, device: torch.device, batch: dict):
        torch.manual_seed(0)
        self.cfg, self.device = cfg, device
        self.G, self.D = Generator(cfg.variant, cfg.ch).to(device), Discriminator(cfg.d_ch).to(device)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
        to_float = lambda x: (x.permute(0, 3, 1, 2).float() / 127.5 - 1).contiguous().to(device)  # noqa: E731
        self.t = {"z": batch["t"]["z"].to(device), "y": batch["t"]["y"].to(device),
                  "images": to_float(batch["t"]["images"])}
        self.r = {"y": batch["r"]["y"].to(device), "images": to_float(batch["r"]["images"])}

    def before_step(self) -> None:
        """glibc malloc's defaults (the train stage keeps freed memory on CPU; the official code does not)."""
        runtime.keep_freed_memory(False)

    def z(self, step: int, stream: int) -> torch.Tensor:
        return _fresh_noise(self.cfg.seed, step, 0, self.cfg.batch_size, 0.5, stream=stream).to(self.device)

    def step(self, step: int) -> None:
        with runtime.float32_math():  # IEEE float32 on CUDA: the authors' GPU had no TF32
            self._step(step)

    def _step(self, step: int) -> None:
        G, D, t, r = self.G, self.D, self.t, self.r
        logit_t, feats_t = D(t["images"], t["y"])
        feats_t = [f.detach() for f in feats_t]
        with torch.no_grad():
            x_s, x_f = G(t["z"], t["y"]), G(self.z(step, D_NOISE), r["y"])
        loss_d = (losses.kd_d(logit_t, D(x_s, t["y"])[0])
                  + 0.2 * losses.gan_d(D(r["images"], r["y"])[0], D(x_f, r["y"])[0]))
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        D.requires_grad_(False)
        x_s = G(t["z"], t["y"])
        logit_s, feats_s = D(x_s, t["y"])
        loss_g = losses.kd_feat(feats_s, feats_t) + 0.2 * losses.kd_pix(x_s, t["images"])
        if losses.adversarial_g_step(step, self.cfg.adv_every):
            loss_g = loss_g + 0.01 * losses.kd_s(logit_s) + 0.2 * 0.01 * losses.gan_s(
                D(G(self.z(step, G_NOISE), r["y"]), r["y"])[0])
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        D.requires_grad_(True)


class Ours:
    """The train stage's iteration (tinygan.train._iteration) on a run built as `train` builds it."""

    def __init__(self, cfg: TrainConfig, device: torch.device, batch: dict, fused_norms: bool = True):
        torch.manual_seed(0)
        self.cfg, self.batch, self.fused_norms = cfg, batch, fused_norms
        self.data = SimpleNamespace(latent="biggan", shape={"z_dim": 128})
        self.run = _build(cfg, {"n_classes": 1000, "z_dim": 128, "resolution": 128}, device, 0, 1)
        _wrap_ddp(self.run)  # one process: compiles the forwards with train.compile

    def before_step(self) -> None:
        """As the train stage sets it up on CPU (runtime.keep_freed_memory); the fused norm kernel on or off."""
        if self.run.device.type == "cpu":
            runtime.keep_freed_memory()
        cbn_relu.ENABLED = self.fused_norms

    def step(self, step: int) -> None:
        when = _When(step, 0, 0.2, True, losses.adversarial_g_step(step, self.cfg.adv_every))
        with runtime.float32_math(tf32=self.cfg.precision == "tf32"):  # as train() runs it
            _iteration(self.run, self.batch, when, self.data)


def time_interleaved(impls: dict, steps: int, device: torch.device) -> dict:
    """Mean seconds per step of each implementation, timed step by step in turn (so a change of machine load
    hits all alike). CPU: warm-up step 3, timed steps 4 .. 4+steps-1 (the first is an adversarial one: 5 steps
    hold exactly one in five); CUDA: warm-up steps 0-4 (every compiled variant), timed from step 5."""
    first = 4 if device.type == "cpu" else 5
    for impl in impls.values():
        for s in range(3 if device.type == "cpu" else 0, first):
            impl.before_step()
            impl.step(s)
    total = dict.fromkeys(impls, 0.0)
    for s in range(first, first + steps):
        for name, impl in impls.items():
            impl.before_step()  # (untimed) the process-wide allocator setting of this implementation
            _sync(device)
            t = time.perf_counter()
            impl.step(s)
            _sync(device)
            total[name] += time.perf_counter() - t
    return {name: v / steps for name, v in total.items()}


def macs(cfg: TrainConfig, official: bool) -> float:
    """MACs of one iteration (adversarial terms every adv_every-th averaged in), x3 for forward + backward."""
    y = torch.zeros(1, dtype=torch.long)
    g = summary.count_macs(Generator(cfg.variant, cfg.ch).eval(), torch.zeros(1, 128), y)
    d = summary.count_macs(Discriminator(cfg.d_ch).eval(), torch.zeros(1, 3, 128, 128), y)
    adv, b = 1 / cfg.adv_every, cfg.batch_size
    g_work = b * ((2 + 3) if official else (1 + 3)) + 3 * b * adv  # no-grad forwards + the G step's (+ G(z''))
    d_work = 3 * 4 * b + 3 * b * (1 + adv)
    return float(g * g_work + d * d_work)


def row(cfg: TrainConfig, sec: float, work: float, peak: float) -> dict:
    return {"sec_per_step": sec, "images_per_s": cfg.batch_size / sec, "macs_per_step": work,
            "fraction_of_matmul_peak": 2 * work / sec / peak,
            "projected_paper_schedule_h": PAPER_ITERATIONS * sec / 3600}


def _native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 / AMX) for oneDNN's bf16 convolutions."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private torch helper: if it moved, skip the row
        return False


def bench_config(cfg: TrainConfig, device: torch.device, steps: int, peak: float,
                 precisions: tuple = CUDA_PRECISIONS, compiled: tuple = (False, True)) -> dict:
    batch = make_batch(cfg, device)
    variants = {"ours": {}, "ours_g_calls_joint": {"g_calls": "joint"}, "ours_eager_norms": {}}
    if device.type == "cpu" and _native_bf16():
        variants["ours_bf16"] = {"precision": "bf16"}
    if device.type == "cuda":
        variants = {f"ours_{p}{'_compile' if c else ''}": {"precision": p, "compile": c}
                    for p in precisions for c in compiled}
    cfgs = {name: dataclasses.replace(cfg, **kw, device=str(device)) for name, kw in variants.items()}
    impls = {"official": Official(cfg, device, batch),
             **{n: Ours(c, device, batch, fused_norms=n != "ours_eager_norms") for n, c in cfgs.items()}}
    sec = time_interleaved(impls, steps, device)
    out = {"config": {k: getattr(cfg, k) for k in ("variant", "ch", "d_ch", "batch_size", "adv_every")},
           "official": row(cfg, sec["official"], macs(cfg, True), peak)}
    for name, c in cfgs.items():
        out[name] = {**row(c, sec[name], macs(c, False), peak), "ratio_vs_official": sec["official"] / sec[name]}
    return out


def bench_loader(device: torch.device, n: int, workers: int, batch: int = 32, res: int = 128) -> dict:
    """The data path alone: teacher-pair and real-image shards of ``n`` random samples each (in a temp dir), read
    by the train stage's step loader (StepBatches + DataLoader, ``workers`` processes, pinned on CUDA) for two
    epochs; images/s of teacher batches delivered (page cache warm after the first epoch, as in a long run)."""
    import tempfile

    import numpy as np

    from tinygan import shards
    from tinygan.train import StepBatches, step_loader

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        y = rng.integers(0, 10, n)
        data = {"teacher": {"z": rng.standard_normal((n, 128)).astype(np.float32), "y": y,
                            "images": rng.integers(0, 256, (n, res, res, 3), dtype=np.uint8)},
                "real": {"images": rng.integers(0, 256, (n, res, res, 3), dtype=np.uint8), "y": y,
                         "names": np.asarray([f"{i}.png" for i in range(n)], dtype=object)}}
        sources = {}
        for stream, (kind, arrays) in enumerate(data.items(), start=1):
            info = shards.write_shard(f"{tmp}/{kind}/{kind}-00000.h5", arrays, {"kind": kind, "fingerprint": "b"})
            shards.write_manifest(f"{tmp}/{kind}", kind, [info], {int(c): int((y == c).sum()) for c in set(y)},
                                  fingerprint="b", resolution=res)
            ds = shards.ShardDataset(f"{tmp}/{kind}", fields=("z", "y", "images") if kind == "teacher" else
                                     ("images", "y"))
            sources[kind[0]] = StepBatches(ds, np.arange(n), batch, 0, 1, 0, stream)
        steps = 2 * (n // batch)
        t = time.perf_counter()
        for b in step_loader(sources, 0, steps, workers, pin_memory=device.type == "cuda"):
            for part in b.values():
                for v in part.values():
                    v.to(device, non_blocking=True)
        _sync(device)
        sec = time.perf_counter() - t
    return {"samples": n, "workers": workers, "steps": steps, "images_per_s": steps * batch / sec}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5, help="timed iterations per variant (5 includes one adversarial)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--configs", default="paper,demo", help="comma list of: paper, demo")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--loader", type=int, default=1024, help="samples of the data-path measurement (0 = skip)")
    ap.add_argument("--workers", type=int, default=4, help="DataLoader workers of the data-path measurement")
    ap.add_argument("--precisions", default=",".join(CUDA_PRECISIONS), help="CUDA: the train.precision rows")
    ap.add_argument("--compile", default="both", choices=sorted(COMPILE), help="CUDA: train.compile off, on or both")
    a = ap.parse_args()
    precisions = tuple(a.precisions.split(","))
    if not set(precisions) <= set(CUDA_PRECISIONS):
        ap.error(f"--precisions: choose from {', '.join(CUDA_PRECISIONS)}")
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if a.device == "auto" else a.device))
    peak = matmul_flops(device)
    out = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "threads": torch.get_num_threads(), "matmul_flops": peak, "steps": a.steps,
           "note": "measured side by side in one run; compare the ratios (absolute times vary with machine load)"}
    profile = {"paper": "paper", "demo": "demo"}
    for name in a.configs.split(","):
        cfg = TrainConfig.from_params(params.validate(profiles.compose(profile[name])))
        out[name] = bench_config(cfg, device, a.steps, peak, precisions, COMPILE[a.compile])
    if a.loader:
        out["data_loading"] = bench_loader(device, a.loader, a.workers)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
