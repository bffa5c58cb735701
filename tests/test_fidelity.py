"""Each default of the training step that follows the official code (facts file, "The official training
iteration"), pinned; and the speed paths that must not change results (channels_last, no per-step host sync)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from tinygan import params, profiles
from tinygan.errors import TinyGANError
from tinygan import train as train_mod
from tinygan.train import D_NOISE, G_NOISE, _build, _fresh_noise, _iteration, _load_data, _When, load_embed_init

from test_train import _spy_fresh_noise, column, config, run

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def _spy_generator(monkeypatch):
    """Record (batch size, autocast on, output dtype, grad on, training mode) of every Generator.forward."""
    from tinygan.models import Generator

    calls, real = [], Generator.forward

    def spy(self, z, y=None):
        out = real(self, z, y)
        calls.append((len(z), torch.is_autocast_enabled("cpu"), out.dtype, torch.is_grad_enabled(), self.training))
        return out
    monkeypatch.setattr(Generator, "forward", spy)
    return calls


def _setup(tiny_data, **kw):
    """(run, data, cfg) of the tiny training set-up, as `train` builds them."""
    cfg = config(**kw)
    torch.manual_seed(cfg.seed)
    data = _load_data(str(tiny_data / "teacher"), str(tiny_data / "real"), cfg, 0, 1, CPU)
    return _build(cfg, data.shape, CPU, 0, 1), data, cfg


def _steps(run, data, cfg, n):
    """``n`` iterations from step 0; the logs of each."""
    return [_iteration(run, {k: src.get(s) for k, src in data.sources.items()},
                       _When.at(cfg, s, data.steps_per_epoch), data) for s in range(n)]


@pytest.mark.parametrize("profile", profiles.names(ROOT / "conf"))
def test_every_profile_defaults_to_the_official_step(profile):
    t = params.validate(profiles.compose(profile, conf_dir=ROOT / "conf"))["train"]
    assert (t["precision"], t["g_calls"], t["g_noise"], t["batches"], t["compile"], t["embed_init"]) == \
        ("fp32", "separate", "fresh", "shuffled", False, None)


def test_g_runs_once_per_batch_of_batch_size_in_fp32(tiny_data, tmp_path, monkeypatch):
    calls = _spy_generator(monkeypatch)
    run(tiny_data, tmp_path, epochs=2)  # 8 steps, batch 6
    train_calls = [c for c in calls if c[4]]  # training mode: not the held-out L1 and grid (eval mode)
    assert {c[0] for c in train_calls} == {6}  # BatchNorm statistics over 6 images, never 12
    assert not any(c[1] for c in calls) and {c[2] for c in calls} == {torch.float32}
    # per iteration: S(z, y) with a graph, S(z', y_r) without; the 5th also the G step's S(z'', y_r) with one
    assert [c[3] for c in train_calls] == [True, False] * 4 + [True, False, True] + [True, False] * 3


def test_joint_g_calls_is_one_call_on_both_batches(tiny_data, tmp_path, monkeypatch):
    calls = _spy_generator(monkeypatch)
    run(tiny_data, tmp_path, epochs=2, g_calls="joint")
    assert {c[0] for c in calls if c[4]} == {12, 6}  # S(z, y) and S(z', y_r) in one call; S(z'', y_r) alone


def test_the_g_step_draws_a_fresh_deterministic_z(tiny_data, tmp_path, monkeypatch):
    drawn = _spy_fresh_noise(monkeypatch)
    run(tiny_data, tmp_path, epochs=3)  # 12 steps: adversarial G terms at steps 4 and 9 (0-based)
    g_draws = {step: z for _, _, z, step, stream in drawn if stream == G_NOISE}
    d_draws = {step: z for _, _, z, step, stream in drawn if stream == D_NOISE}
    assert sorted(g_draws) == [4, 9] and sorted(d_draws) == list(range(12))
    for step, z in g_draws.items():
        assert not torch.allclose(z, d_draws[step])
        assert torch.equal(z, _fresh_noise(0, step, 0, 6, 0.5, "biggan", 128, G_NOISE))  # a function of the step
    drawn.clear()
    run(tiny_data, tmp_path / "reuse", epochs=3, g_noise="reuse")
    assert {stream for *_, stream in drawn} == {D_NOISE}


def test_balanced_batches_give_each_rank_every_class_equally(tiny_data, tmp_path):
    from tinygan import shards
    from tinygan.train import StepBatches

    ds = shards.ShardDataset(tiny_data / "teacher")  # 3 classes x 10 pairs
    idx = np.arange(len(ds))
    ranks = [StepBatches(ds, idx, 3, rank, 2, seed=0, stream=1, labels=ds.labels()) for rank in (0, 1)]
    assert ranks[0].steps_per_epoch == 5  # 30 pairs / (3 x 2 processes)
    for step in range(7):  # into the second epoch
        ys = [r.get(step)["y"].tolist() for r in ranks]
        assert sorted(ys[0]) == sorted(ys[1]) == [1, 9, 130]
    shuffled = StepBatches(ds, idx, 3, 0, 1, seed=0, stream=1)
    assert any(len(set(shuffled.get(s)["y"].tolist())) < 3 for s in range(10))  # the official order is not
    s = run(tiny_data, tmp_path, epochs=1, batches="balanced")  # 24 training pairs, 8 per class, batch 6
    assert s["steps"] == 4
    unequal = _unequal_pairs(tmp_path / "unequal", tiny_data)  # 8, 8 and 2 training pairs per class
    with pytest.raises(TinyGANError, match="train.batches balanced") as e:
        run(unequal, tmp_path / "big", epochs=1, batches="balanced", batch_size=7)  # 3 x 2 < 7
    assert "\n" not in str(e.value)


def _unequal_pairs(root: Path, tiny_data: Path) -> Path:
    """tiny_data with class 130 cut to 4 teacher pairs (the others keep 10)."""
    from conftest import pair_arrays
    from tinygan import shards

    z, y, images = pair_arrays((1, 9, 130), 10, 0)
    keep = np.arange(24)  # pairs are in class order: 10 + 10 + the first 4 of class 130
    (root / "teacher").mkdir(parents=True)
    info = shards.write_shard(str(root / "teacher" / "teacher-00000.h5"),
                              {"z": z[keep], "y": y[keep], "images": images[keep]},
                              {"kind": "teacher", "fingerprint": "test", "shard": 0})
    shards.write_manifest(str(root / "teacher"), "teacher", [info], {1: 10, 9: 10, 130: 4}, None,
                          fingerprint="test", resolution=128)
    (root / "real").symlink_to(tiny_data / "real")
    return root


def test_precision_fp16_on_cpu_is_one_line(tiny_data, tmp_path):
    with pytest.raises(TinyGANError, match="train.precision fp16 needs a CUDA device") as e:
        run(tiny_data, tmp_path, epochs=1, precision="fp16")
    assert "\n" not in str(e.value)


def _tf32_flags() -> tuple[bool, bool]:
    """(cuDNN convolutions, CUDA matrix products) may use TF32: the process-wide flags float32_math sets."""
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


@pytest.fixture
def torch_default_tf32():
    """The flags as a fresh PyTorch process has them (TF32 convolutions, IEEE matrix products), restored after."""
    before = _tf32_flags()
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_fp32_trains_in_ieee_float32_with_tf32_off(tiny_data, tmp_path, monkeypatch, torch_default_tf32):
    """PyTorch computes float32 cuDNN convolutions in TF32 (10-bit mantissa products) on Ampere and later GPUs
    unless told not to; the authors' 2080 Ti has no TF32, so precision fp32 turns it off for the run and puts the
    process's settings back afterwards. (The flags are CUDA's; on a CPU the wiring is what can be checked.)"""
    from tinygan.models import Generator

    seen, real = [], Generator.forward
    monkeypatch.setattr(Generator, "forward", lambda self, z, y=None: seen.append(_tf32_flags()) or real(self, z, y))
    run(tiny_data, tmp_path, epochs=1)
    assert seen and set(seen) == {(False, False)}
    assert _tf32_flags() == (True, False)


def test_tf32_only_when_asked_and_on_cuda_only(tiny_data, tmp_path, monkeypatch, torch_default_tf32):
    with pytest.raises(TinyGANError, match="train.precision tf32 needs a CUDA device") as e:
        run(tiny_data, tmp_path, epochs=1, precision="tf32")
    assert "\n" not in str(e.value) and _tf32_flags() == (True, False)
    seen = []
    monkeypatch.setattr(train_mod, "_train", lambda *a, **k: seen.append(_tf32_flags()) or {})
    run(tiny_data, tmp_path, epochs=1, precision="tf32")
    assert seen == [(True, True)] and _tf32_flags() == (True, False)  # both TF32, for the run only


def test_bf16_autocast_only_when_asked(tiny_data, monkeypatch):
    calls = _spy_generator(monkeypatch)
    run_, data, cfg = _setup(tiny_data, precision="bf16")
    _steps(run_, data, cfg, 1)
    assert all(c[1] for c in calls) and torch.bfloat16 in {c[2] for c in calls}


def test_losses_stay_on_the_device_until_a_logging_step(tiny_data, tmp_path, monkeypatch):
    import sys

    run_, data, cfg = _setup(tiny_data)
    synced = []

    def spying(name):
        real = getattr(torch.Tensor, name)

        def spy(self, *a):
            caller = sys._getframe(1).f_code.co_filename  # torch's own CPU bookkeeping (Adam's step count) aside
            if "tinygan" in Path(caller).parts:
                synced.append((name, caller, sys._getframe(1).f_lineno))
            return real(self, *a)
        return spy
    for name in ("__float__", "item", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, spying(name))
    logs = _steps(run_, data, cfg, 5)
    monkeypatch.undo()
    assert not synced, synced  # no tensor is read back to the host by a step
    assert all(isinstance(v, torch.Tensor) for step in logs for v in step.values())
    # logged every 3rd step: exactly the values an every-step run logs at those steps
    run(tiny_data, tmp_path / "every", epochs=2, log_every=1)
    run(tiny_data, tmp_path / "third", epochs=2, log_every=3)
    for name in ("loss_d", "loss_g", "kd_pix"):
        every, third = dict(column(tmp_path / "every", name)), column(tmp_path / "third", name)
        assert [s for s, _ in third] == [3, 6, 8]
        assert all(v == pytest.approx(every[s], rel=1e-6) for s, v in third)


@pytest.mark.parametrize("speed_path", ["CHANNELS_LAST", "FAST_TRAINING"])
def test_speed_paths_change_results_only_within_float_tolerance(tiny_data, monkeypatch, speed_path):
    """channels_last, and G's training-mode fast path (models.set_fast_training), on vs off."""
    out = {}
    for cl in (True, False):
        monkeypatch.setattr(train_mod, speed_path, cl)
        run_, data, cfg = _setup(tiny_data)
        logs = _steps(run_, data, cfg, 1)
        grads = [p.grad for p in run_.G.parameters()]  # the first G step's gradient
        out[cl] = (logs, grads, run_.G.blocks[0].conv0[0].weight)
    (logs_cl, g_cl, w_cl), (logs_c, g_c, w_c) = out[True], out[False]
    if speed_path == "CHANNELS_LAST":
        assert w_cl.is_contiguous(memory_format=torch.channels_last) and w_c.is_contiguous()
    a, b = (torch.cat([g.flatten() for g in gs]) for gs in (g_cl, g_c))  # through a D whose Adam step differed
    assert float((a - b).norm()) <= 1e-3 * float(b.norm())                # in the last bits already
    # (later steps drift apart by more: Adam's normalised updates magnify last-bit differences of tiny gradients)
    assert logs_cl[0].keys() == logs_c[0].keys()
    for k, v in logs_cl[0].items():
        assert float(v) == pytest.approx(float(logs_c[0][k]), rel=1e-5), k


_HEAP_PROBE = """
import ctypes, sys
import torch
from tinygan.runtime import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                  "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
if not hasattr(libc, "mallinfo2"):
    sys.exit(3)
libc.mallinfo2.restype = MallInfo2
size = 64 << 20
assert keep_freed_memory()
mapped = libc.mallinfo2().hblkhd
x = torch.ones(size // 4)
on = libc.mallinfo2().hblkhd - mapped
assert keep_freed_memory(False)
mapped = libc.mallinfo2().hblkhd
y = torch.ones(size // 4)
off = libc.mallinfo2().hblkhd - mapped
print(on, off, float(x[-1] + y[-1]))
"""


def test_keep_freed_memory_serves_big_tensors_from_the_heap():
    """runtime.keep_freed_memory: a 64 MB tensor comes from malloc's heap (no mmap of its own), and off puts
    glibc's default back (such a block is mmapped again). In a fresh process: the suite's own in-process
    training runs leave free heap chunks that would serve the block whatever the setting."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", _HEAP_PROBE], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    if run.returncode == 3:
        pytest.skip("not glibc >= 2.33")
    assert run.returncode == 0, run.stderr
    on, off, total = run.stdout.split()
    size = 64 << 20
    assert int(on) < size and int(off) >= size and float(total) == 2.0


def _npy(tmp_path, arr, name="emb.npy"):
    path = tmp_path / name
    np.save(path, arr)
    return str(path)


def test_embed_init_starts_the_class_embedding(tiny_data, tmp_path):
    weights = np.random.default_rng(0).standard_normal((1000, 128)).astype(np.float32)
    run_, _, _ = _setup(tiny_data, embed_init=_npy(tmp_path, weights))
    assert torch.equal(run_.G.embedding.weight.detach(), torch.from_numpy(weights))
    assert run_.G.embedding.weight.requires_grad  # trainable, as the official code
    default, _, _ = _setup(tiny_data)
    assert not torch.equal(default.G.embedding.weight.detach(), torch.from_numpy(weights))


@pytest.mark.parametrize("arr,match", [
    (np.zeros((10, 128), np.float32), r"has shape \[10, 128\], but the student's class embedding is \[1000, 128\]"),
    (np.zeros((1000, 128), np.int64), "holds int64 values"),
    (np.full((1000, 128), np.nan, np.float32), "non-finite"),
    (np.array([{"a": 1}], dtype=object), "not a readable .npy"),
])
def test_embed_init_is_checked_in_one_line(tmp_path, arr, match):
    with pytest.raises(TinyGANError, match=match) as e:
        load_embed_init(_npy(tmp_path, arr), 1000, 128)
    assert "\n" not in str(e.value) and "train.embed_init" in str(e.value)


def test_embed_init_missing_npz_or_unconditional_is_one_line(tmp_path):
    with pytest.raises(TinyGANError, match="not found"):
        load_embed_init(str(tmp_path / "none.npy"), 1000, 128)
    np.savez(tmp_path / "a.npz", x=np.zeros((1000, 128), np.float32))
    with pytest.raises(TinyGANError, match="npz archive"):
        load_embed_init(str(tmp_path / "a.npz"), 1000, 128)
    with pytest.raises(TinyGANError, match="unconditional"):
        load_embed_init(_npy(tmp_path, np.zeros((1, 128), np.float32)), 0, 128)


def test_embed_init_dep_must_name_the_file():
    raw = profiles.compose(conf_dir=ROOT / "conf")
    raw["train"]["embed_init"] = "emb.npy"
    with pytest.raises(TinyGANError, match="'train.embed_init_dep'"):
        params.validate(raw)
    raw["train"]["embed_init_dep"] = "./emb.npy"
    assert params.validate(raw)["train"]["embed_init"] == "emb.npy"


def test_every_training_precision_is_a_param_value():
    p = profiles.compose("demo", conf_dir=ROOT / "conf")
    for precision in train_mod.PRECISIONS:
        p["train"]["precision"] = precision
        assert params.validate(p)["train"]["precision"] == precision
    p["train"]["precision"] = "fp8"
    with pytest.raises(TinyGANError, match="train.precision"):
        params.validate(p)
