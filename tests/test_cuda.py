"""The CUDA path, where torch sees a GPU (`benchmarks/device_check.sh` runs this file there); on a machine without
one every test here is skipped. What the CPU tests cannot check: the student, D and an extractor on CUDA against
the CPU in IEEE float32; training steps at each train.precision (fp16 through its loss scalers) and compiled; no
host sync inside a step; pinned batches from the DataLoader workers; and the train stage itself (with dvclive)."""
import numpy as np
import pytest
import torch

from tinygan import runtime
from tinygan.models import Discriminator, Generator
from tinygan.train import (PRECISIONS, _build, _iteration, _load_data, _set_lr, _When, _wrap_ddp, heldout_l1,
                           step_loader)

from test_train import config, run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/device_check.sh)")
CUDA = torch.device("cuda")
LEARN = dict(epochs=10, lr_g=2e-3, lr_d=2e-3, ema=False, lr_decay_start=300000)  # learning, not the demo schedule


def _setup(tiny_data, **kw):
    """(run, data, cfg) of the tiny training set-up on CUDA, as `train` builds them."""
    cfg = config(device="cuda", **kw)
    torch.manual_seed(cfg.seed)
    data = _load_data(str(tiny_data / "teacher"), str(tiny_data / "real"), cfg, 0, 1, CUDA)
    return _build(cfg, data.shape, CUDA, 0, 1), data, cfg


def _pinned(batch: dict) -> dict:
    return {k: {n: v.pin_memory() for n, v in part.items()} for k, part in batch.items()}


def _steps(run_, data, cfg, first: int, n: int) -> list[dict]:
    """Iterations first .. first+n-1 as the train loop runs them (lr schedule, EMA), on pinned batches."""
    logs, total = [], cfg.epochs * data.steps_per_epoch
    with runtime.float32_math(tf32=cfg.precision == "tf32"):
        for s in range(first, first + n):
            when = _When.at(cfg, s, data.steps_per_epoch)
            _set_lr(run_, s, total)
            logs.append(_iteration(run_, _pinned({k: src.get(s) for k, src in data.sources.items()}), when, data))
            if run_.ema is not None and when.update_g:
                run_.ema.update(run_.G)
    return logs


@pytest.mark.parametrize("variant", ["dw", "std"])
def test_g_and_d_on_cuda_match_the_cpu_in_ieee_float32(variant):
    torch.manual_seed(0)
    G, D = Generator(variant, 8).eval(), Discriminator(8).eval()
    z, y = 0.5 * torch.randn(4, 128), torch.tensor([1, 9, 130, 207])
    with torch.no_grad():
        x, (logit, _) = G(z, y), D(G(z, y), y)
        with runtime.float32_math():
            x_gpu = G.to(CUDA)(z.to(CUDA), y.to(CUDA)).cpu()
            logit_gpu = D.to(CUDA)(x.to(CUDA), y.to(CUDA))[0].cpu()
    assert (x_gpu - x).abs().max() < 1e-4
    torch.testing.assert_close(logit_gpu, logit, rtol=1e-4, atol=1e-4)


def test_an_extractor_on_cuda_matches_the_cpu(tmp_path):
    from test_extractors import FakeInception
    from tinygan.extractors import load_extractor
    from tinygan.io import sha256_file

    torch.manual_seed(0)
    path = tmp_path / "inception-2015-12-05.pt"
    torch.jit.save(torch.jit.script(FakeInception()), str(path))
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (6, 3, 20, 20), dtype=np.uint8))
    cpu, gpu = (load_extractor(path, "inception", sha256_file(path), device=d)(images) for d in ("cpu", "cuda"))
    for a, b in zip(cpu, gpu):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)  # IEEE float32 both; cuDNN may sum in another order


@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_training_steps_learn_at_each_precision(tiny_data, precision):
    run_, data, cfg = _setup(tiny_data, precision=precision, **LEARN)
    before = heldout_l1(run_.G, data.hold)
    logs = _steps(run_, data, cfg, 0, 40)  # 10 epochs
    assert all(torch.isfinite(v).all() for step in logs for v in step.values())
    assert heldout_l1(run_.G, data.hold) < 0.6 * before
    if precision == "fp16":  # the loss scalers ran (and did not collapse)
        assert all(0 < s.get_scale() < float("inf") for s in run_.scalers.values())


def test_a_compiled_step_stays_close_to_the_eager_one(tiny_data):
    eager, data, cfg = _setup(tiny_data)
    compiled, _, _ = _setup(tiny_data, compile=True)
    _wrap_ddp(compiled)  # one process: compiles the forwards
    logs = [_steps(r, data, cfg, 0, 3) for r in (eager, compiled)]
    # same weights and batch: the first losses agree to float rounding; Adam's first updates are ~lr x sign(grad),
    # so a gradient near 0 may flip, and later losses agree more loosely
    for step, (a, b) in enumerate(zip(*logs)):
        for name in a:
            torch.testing.assert_close(b[name], a[name], rtol=1e-4 if step == 0 else 1e-2, atol=1e-5, msg=name)
    assert all(torch.isfinite(p).all() for p in compiled.G.parameters())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_step_never_waits_for_the_gpu(tiny_data, precision):
    """No host sync inside an iteration (logging reads losses every log_every steps, outside it); fp16's loss
    scaler reads its found-inf flag back by design, so it is not held to this."""
    run_, data, cfg = _setup(tiny_data, precision=precision)
    _steps(run_, data, cfg, 0, 2)  # lazy initialisation (cuDNN, allocator) may synchronise once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        _steps(run_, data, cfg, 2, 6)  # step 4 is an adversarial one
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_worker_batches_arrive_pinned_and_equal(tiny_data):
    cfg = config(device="cuda")
    data = _load_data(str(tiny_data / "teacher"), str(tiny_data / "real"), cfg, 0, 1, CUDA)
    pinned = list(step_loader(data.sources, 0, 6, 2, pin_memory=True))
    plain = list(step_loader(data.sources, 0, 6, 0))
    for a, b in zip(pinned, plain, strict=True):
        for k in b:
            assert all(a[k][n].is_pinned() and torch.equal(a[k][n], b[k][n]) for n in b[k])


def test_the_train_stage_runs_and_resumes_on_cuda(tiny_data, tmp_path):
    pytest.importorskip("dvclive")
    first = run(tiny_data, tmp_path, device="cuda", **LEARN)
    assert first["heldout_l1_end"] < 0.6 * first["heldout_l1_start"]
    again = run(tiny_data, tmp_path, device="cuda", **LEARN)  # from the finished checkpoint: nothing left to do
    assert again["heldout_l1_end"] == pytest.approx(first["heldout_l1_end"], rel=1e-5)
