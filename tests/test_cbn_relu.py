"""The fused CPU kernel of (conditional) batch norm + ReLU (tinygan/cbn_relu.py, .cpp): the same function as the
eager ops up to float rounding (checked against float64), the same running statistics, thread-count independent
bits, and the eager ops wherever it does not apply or cannot be built."""
import os
import shutil

import pytest
import torch
import torch.nn.functional as F

from tinygan import cbn_relu

CL = torch.channels_last


@pytest.fixture(autouse=True)
def _kernel_on():
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("no C++ compiler here: training runs the eager ops (tests/test_models.py covers them)")
    assert cbn_relu._load()[0] is not None, cbn_relu.kernel_status()  # a compiler (and the ninja wheel): it builds
    yield
    cbn_relu.ENABLED = True


def _inputs(shape, offset=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    n, c = shape[:2]
    x = (torch.randn(*shape, generator=g) * 2 + offset).to(memory_format=CL)
    gain, bias = torch.randn(n, c, generator=g), torch.randn(n, c, generator=g) * 0.5
    dy = torch.randn(*shape, generator=g).to(memory_format=CL)
    return x, gain, bias, dy


def _run(fn, x, gain, bias, dy, dtype=torch.float32):
    leaves = [t.detach().to(dtype).requires_grad_() for t in (x, gain, bias)]
    y = fn(*leaves)
    y.backward(dy.to(dtype))
    return [y.detach().double()] + [t.grad.double() for t in leaves]


def _eager(bn):
    return lambda x, gain, bias: F.relu(torch.addcmul(bias[:, :, None, None], bn(x), gain[:, :, None, None]))


def _rel(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.mark.parametrize("shape", [(4, 5, 7, 9), (2, 64, 16, 16), (3, 3, 1, 70), (8, 32, 8, 8), (2, 16, 32, 32)])
def test_forward_and_gradients_match_float64_as_closely_as_the_eager_ops(shape):
    x, gain, bias, dy = _inputs(shape)
    ref = _run(_eager(torch.nn.BatchNorm2d(shape[1], affine=False).double()), x, gain, bias, dy, torch.float64)
    eager = _run(_eager(torch.nn.BatchNorm2d(shape[1], affine=False)), x, gain, bias, dy)
    bn = torch.nn.BatchNorm2d(shape[1], affine=False)
    fused = _run(lambda *a: cbn_relu.norm_relu(bn, *a), x, gain, bias, dy)
    for name, f, e, r in zip(("y", "dx", "dgain", "dbias"), fused, eager, ref):
        assert _rel(f, r) <= 2 * _rel(e, r) + 1e-6, name
        assert _rel(f, r) < 1e-5, name
    assert fused[0].min() == 0 and (fused[0] > 0).any()  # the ReLU cut some values and kept others


def test_running_statistics_and_batch_count_update_as_batchnorm2d():
    x, gain, bias, _ = _inputs((6, 12, 10, 10))
    ref, bn = torch.nn.BatchNorm2d(12, affine=False, momentum=0.3), torch.nn.BatchNorm2d(12, affine=False,
                                                                                     momentum=0.3)
    for _ in range(3):
        ref(x)
        cbn_relu.norm_relu(bn, x, gain, bias)
    torch.testing.assert_close(bn.running_mean, ref.running_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var, ref.running_var, rtol=1e-5, atol=1e-6)
    assert int(bn.num_batches_tracked) == 3


def test_a_large_mean_costs_no_precision():
    # activations far from 0: sums of squares minus the squared mean would cancel; the kernel's do not
    x, gain, bias, dy = _inputs((4, 8, 16, 16), offset=1000.0)
    ref = _run(_eager(torch.nn.BatchNorm2d(8, affine=False).double()), x, gain, bias, dy, torch.float64)
    bn = torch.nn.BatchNorm2d(8, affine=False)
    fused = _run(lambda *a: cbn_relu.norm_relu(bn, *a), x, gain, bias, dy)
    for f, r in zip(fused, ref):
        assert _rel(f, r) < 1e-4


def test_affine_batchnorm_without_a_per_sample_gain():
    x, _, _, dy = _inputs((4, 6, 9, 9))
    bns = [torch.nn.BatchNorm2d(6) for _ in range(2)]
    for bn in bns:
        with torch.no_grad():
            bn.weight.copy_(torch.linspace(-1, 2, 6))
            bn.bias.copy_(torch.linspace(0.5, -0.5, 6))
    outs = []
    for bn, fn in zip(bns, (lambda x: F.relu(bns[0](x)), lambda x: cbn_relu.norm_relu(bns[1], x))):
        xi = x.clone().requires_grad_()
        fn(xi).backward(dy)
        outs.append([xi.grad, bn.weight.grad, bn.bias.grad, bn.running_var])
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_the_bits_do_not_depend_on_the_thread_count():
    x, gain, bias, dy = _inputs((8, 24, 20, 20))
    threads, out = torch.get_num_threads(), []
    try:
        for n in (1, max(2, threads)):
            torch.set_num_threads(n)
            out.append(_run(lambda *a: cbn_relu.norm_relu(torch.nn.BatchNorm2d(24, affine=False), *a),
                            x, gain, bias, dy))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*out))


def test_inputs_it_does_not_take_run_the_eager_ops():
    x, gain, bias, _ = _inputs((4, 6, 8, 8))
    want = _eager(torch.nn.BatchNorm2d(6, affine=False))(x, gain, bias)
    calls = []
    real = cbn_relu._CBNReLU.apply
    cbn_relu._CBNReLU.apply = lambda *a: calls.append(1) or real(*a)
    try:
        bn = torch.nn.BatchNorm2d(6, affine=False)
        got = cbn_relu.norm_relu(bn, x.contiguous(), gain, bias)  # NCHW: converted, fused
        assert calls == [1] and got.is_contiguous(memory_format=CL)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        for run in (lambda: cbn_relu.norm_relu(bn.eval(), x, gain, bias),           # eval: running statistics
                    lambda: cbn_relu.norm_relu(torch.nn.BatchNorm2d(6, affine=False).double(), x.double(),
                                               gain.double(), bias.double()),
                    lambda: cbn_relu.norm_relu(torch.nn.BatchNorm2d(6, affine=False, momentum=None), x, gain, bias)):
            run()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cbn_relu.norm_relu(bn, x, gain, bias)
        cbn_relu.ENABLED = False
        torch.testing.assert_close(cbn_relu.norm_relu(torch.nn.BatchNorm2d(6, affine=False), x, gain, bias), want)
        assert calls == [1]
    finally:
        cbn_relu._CBNReLU.apply = real


def test_bf16_autocast_runs_the_kernel_in_float32():
    """train.precision bf16 on CPU: the convolutions give bf16 activations; norm_relu upcasts them and runs the
    fused kernel in float32 (autograd casts the gradients back to bf16) instead of batch norm in bf16."""
    x, gain, bias, dy = _inputs((4, 6, 8, 8))
    xb, gb, bb = (t.to(torch.bfloat16) for t in (x, gain, bias))
    ref_bn = torch.nn.BatchNorm2d(6, affine=False)
    want = _run(_eager(ref_bn), xb.float(), gb.float(), bb.float(), dy)  # float32 eager ops on the same values
    calls = []
    real = cbn_relu._CBNReLU.apply
    cbn_relu._CBNReLU.apply = lambda *a: calls.append(a[0].dtype) or real(*a)
    try:
        bn = torch.nn.BatchNorm2d(6, affine=False)
        leaves = [t.detach().requires_grad_() for t in (xb, gb, bb)]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = cbn_relu.norm_relu(bn, *leaves)
        y.backward(dy)
    finally:
        cbn_relu._CBNReLU.apply = real
    assert calls == [torch.float32] and y.dtype == torch.float32
    assert [t.grad.dtype for t in leaves] == [torch.bfloat16] * 3
    torch.testing.assert_close(y.double(), want[0], rtol=1e-5, atol=1e-5)
    for got, ref in zip((t.grad.double() for t in leaves), want[1:]):
        torch.testing.assert_close(got, ref, rtol=1e-2, atol=1e-2)  # bf16 gradients: 8 significant bits
    torch.testing.assert_close(bn.running_mean, ref_bn.running_mean)
    torch.testing.assert_close(bn.running_var, ref_bn.running_var)


def test_a_failed_build_falls_back_to_the_eager_ops_and_says_why(monkeypatch):
    import torch.utils.cpp_extension as ext

    def fail(*a, **k):
        raise RuntimeError("Error building extension\ncc: command not found")
    monkeypatch.setattr(ext, "load", fail)
    cbn_relu._load.cache_clear()
    try:
        assert cbn_relu.kernel_status() == "eager ops (the fused CPU kernel is unavailable: cc: command not found)"
        x, gain, bias, _ = _inputs((2, 3, 4, 4))
        want = _eager(torch.nn.BatchNorm2d(3, affine=False))(x, gain, bias)
        torch.testing.assert_close(cbn_relu.norm_relu(torch.nn.BatchNorm2d(3, affine=False), x, gain, bias), want)
    finally:
        monkeypatch.undo()
        cbn_relu._load.cache_clear()
    assert cbn_relu.kernel_status() == "fused CPU kernel"


def test_eval_mode_never_loads_the_kernel(monkeypatch):
    """Inference (generate, export, evaluation, a CPU reference on a GPU machine) never needs the kernel, so it
    never loads it, nor builds it on a machine that has not yet: the eager ops in eval mode, as BatchNorm2d."""
    calls = []
    monkeypatch.setattr(cbn_relu, "_load", lambda: calls.append(1) or (None, "not loaded"))
    x, gain, bias, _ = _inputs((2, 3, 4, 4))
    bn = torch.nn.BatchNorm2d(3, affine=False)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.eval()
    want = _eager(bn)(x, gain, bias)
    torch.testing.assert_close(cbn_relu.norm_relu(bn, x, gain, bias), want)
    assert calls == []
    cbn_relu.norm_relu(bn.train(), x, gain, bias)
    assert calls  # training mode asks for it


def test_built_says_whether_a_first_run_will_build(monkeypatch, tmp_path):
    assert cbn_relu.built()  # (the fixture has loaded it)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    cbn_relu._load.cache_clear()
    try:
        assert not cbn_relu.built()  # an empty extensions dir: the train stage says it is building
    finally:
        monkeypatch.undo()
        cbn_relu._load.cache_clear()
    assert cbn_relu.built()


def test_the_ninja_wheel_goes_on_path_when_ninja_is_not_there(monkeypatch):
    ninja = pytest.importorskip("ninja")
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    monkeypatch.setenv("PATH", "/nowhere")
    cbn_relu._ninja_on_path()
    assert os.environ["PATH"].split(os.pathsep) == [ninja.BIN_DIR, "/nowhere"]
    assert os.access(os.path.join(ninja.BIN_DIR, "ninja"), os.X_OK)


def test_a_build_killed_midway_does_not_hang_the_next_run():
    """torch's extension builder guards a build with a `lock` file, which a builder killed mid-build (kill -9 of a
    train stage on a fresh machine) leaves behind, and then waits for forever, silently. The kernel's loader holds
    an flock on the build directory instead (the OS releases it when a holder dies) and removes such a lock."""
    import subprocess
    import sys
    from pathlib import Path

    from torch.utils.cpp_extension import _get_build_directory

    stale = Path(_get_build_directory(cbn_relu._name(), verbose=False)) / "lock"
    stale.touch()  # what the killed builder left
    try:
        out = subprocess.run([sys.executable, "-c", "from tinygan import cbn_relu; print(cbn_relu.kernel_status())"],
                             capture_output=True, text=True, timeout=240)
    finally:
        stale.unlink(missing_ok=True)
    assert out.stdout.strip() == "fused CPU kernel", out.stderr[-500:]
    assert not stale.exists()


def test_another_checkout_loads_the_same_build_without_rebuilding(tmp_path):
    """A second checkout of the same source (a queued `dvc exp run`'s workspace, a CI clone) finds the library
    built from the first and loads it as it is: torch's build rules name the source's path, so the kernel is
    compiled from a copy in the build directory, the same path for every checkout (before, each new path rebuilt
    the library over the file other processes had loaded)."""
    import subprocess
    import sys
    from pathlib import Path

    from torch.utils.cpp_extension import _get_build_directory

    build = Path(_get_build_directory(cbn_relu._name(), verbose=False))
    (library,) = build.glob("*.so")  # built by this process (the fixture)
    before = library.stat().st_mtime_ns
    shutil.copytree(Path(cbn_relu.__file__).parent, tmp_path / "tinygan", ignore=shutil.ignore_patterns("__pycache__"))
    code = "from tinygan import cbn_relu; print(cbn_relu.__file__); print(cbn_relu.kernel_status())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)})
    where, status = out.stdout.strip().splitlines()
    assert Path(where).parent == tmp_path / "tinygan" and status == "fused CPU kernel", out.stderr[-500:]
    assert library.stat().st_mtime_ns == before
    assert str(build / cbn_relu.SOURCE) in (build / "build.ninja").read_text()
