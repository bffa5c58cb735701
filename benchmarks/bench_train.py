"""Train-step throughput (images/s) at the paper config and the demo config, and as a fraction of this
machine's measured fp32 matmul FLOP/s, side by side in one run. Prints JSON. Not a test.

    python benchmarks/bench_train.py [--steps 3] [--threads N]

MACs per step come from the counter (tinygan.summary.count_macs), x3 for forward + backward (the usual estimate),
over every G and D forward an official-schedule iteration runs (adversarial G terms every 5th iteration are
averaged in)."""
import argparse
import json
import time

import torch

from tinygan import losses, summary
from tinygan.models import Discriminator, Generator
from tinygan import params, profiles
from tinygan.train import TrainConfig, _iteration, _Run, _When


def matmul_flops(n=1024, reps=10):
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def bench(cfg: TrainConfig, steps: int) -> dict:
    torch.manual_seed(0)
    G, D = Generator(cfg.variant, cfg.ch), Discriminator(cfg.d_ch)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(0.0, 0.9))
    b = cfg.batch_size
    y = torch.randint(0, 1000, (b,))
    batch = {"t": {"z": torch.randn(b, 128) * 0.5, "y": y, "images": torch.rand(b, 3, 128, 128) * 2 - 1},
             "r": {"y": y, "images": torch.rand(b, 3, 128, 128) * 2 - 1}}
    times = []
    run = _Run(cfg, G, D, opt_g, opt_d, None, torch.device("cpu"), rank=0, world=1)
    for step in range(steps + 1):  # first step is warm-up
        t = time.perf_counter()
        _iteration(run, batch, _When(step, 0, 0.2, True, losses.adversarial_g_step(step, cfg.adv_every)))
        times.append(time.perf_counter() - t)
    sec = sorted(times[1:])[len(times[1:]) // 2]
    g_mac = summary.count_macs(G.eval(), torch.zeros(1, 128), torch.zeros(1, dtype=torch.long))
    d_mac = summary.count_macs(D.eval(), torch.zeros(1, 3, 128, 128), torch.zeros(1, dtype=torch.long))
    # per iteration: G on 2b (teacher z + fresh z'), D step on 4b, G step D on b (+ b every adv_every-th)
    macs = 3 * (g_mac * 2 * b + d_mac * 4 * b + d_mac * b * (1 + 1 / cfg.adv_every))
    return {"variant": cfg.variant, "ch": cfg.ch, "d_ch": cfg.d_ch, "batch": b, "sec_per_step": sec,
            "images_per_s": b / sec, "g_macs_per_image": g_mac, "macs_per_step": macs,
            "achieved_flops": 2 * macs / sec}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    peak = matmul_flops()
    out = {"device": "cpu", "threads": torch.get_num_threads(), "matmul_flops": peak}
    configs = {"paper_dw_ch32_b32": TrainConfig.from_params(params.validate(profiles.compose("paper"))),
               "demo_dw_ch8_b16": TrainConfig.from_params(params.load("params.yaml"))}
    for name, cfg in configs.items():
        r = bench(cfg, a.steps)
        r["fraction_of_matmul_peak"] = r["achieved_flops"] / peak
        out[name] = r
    out["demo_vs_paper_images_per_s"] = out["demo_dw_ch8_b16"]["images_per_s"] / out["paper_dw_ch32_b32"]["images_per_s"]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
