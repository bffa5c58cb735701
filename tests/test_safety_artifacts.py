"""Artifact safety (issue 8): all-new-or-all-old output directories, temp leftovers of killed runs, a full disk
as one line, checkpoints with the wrong content, byte-reproducible checkpoints and TorchScript."""
import errno
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

from tinygan import io as tio
from tinygan import params
from tinygan import train as tr
from tinygan.errors import TinyGANError
from tinygan.models import Generator
from tinygan.train import TrainConfig

from conftest import random_generator

REPO = Path(__file__).resolve().parents[1]
OWNED = ("a.txt", "b.txt", "c.txt")


def snapshot(d: Path) -> dict:
    """Every entry below ``d`` (names relative to it) -> its bytes (None for a directory)."""
    return {str(p.relative_to(d)): (None if p.is_dir() else p.read_bytes()) for p in sorted(d.rglob("*"))}


def old_dir(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("old a")
    (out / "c.txt").write_text("old c")
    return out


def temps(d: Path) -> list[str]:
    return [p.name for p in d.iterdir() if tio.is_temp_name(p.name)]


# ---- atomic_dir (item 1) -------------------------------------------------------------------------------------


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "rename-aside"])
def test_atomic_dir_swaps_in_the_new_directory(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(tio, "_exchange", lambda a, b: False)
    out = old_dir(tmp_path)
    with tio.atomic_dir(out, OWNED) as d:
        assert d.parent == tmp_path and tio.is_temp_name(d.name, "out")
        tio.write_text(d / "a.txt", "new a")
        tio.write_text(d / "b.txt", "new b")
    assert snapshot(out) == {"a.txt": b"new a", "b.txt": b"new b"}  # c.txt was not rewritten: it is gone
    assert temps(tmp_path) == []


def test_atomic_dir_failure_keeps_the_old_directory(tmp_path):
    out = old_dir(tmp_path)
    before = snapshot(out)
    with pytest.raises(RuntimeError, match="killed"):
        with tio.atomic_dir(out, OWNED) as d:
            tio.write_text(d / "a.txt", "new a")
            raise RuntimeError("killed")
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_dir_creates_a_missing_directory(tmp_path):
    with tio.atomic_dir(tmp_path / "x" / "out", OWNED) as d:
        tio.write_text(d / "b.txt", "b")
    assert snapshot(tmp_path / "x" / "out") == {"b.txt": b"b"}


@pytest.mark.parametrize("libc", ["renameat2", "raw syscall"])
def test_exchange_swaps_two_directories(tmp_path, monkeypatch, libc):
    import ctypes
    import platform

    if libc == "raw syscall":  # a libc without the renameat2 wrapper (glibc < 2.28)
        if sys.platform != "linux" or platform.machine() not in ("x86_64", "aarch64"):
            pytest.skip("the raw renameat2 syscall is used on Linux x86_64 / aarch64 only")
        old_libc = type("OldLibc", (), {"syscall": ctypes.CDLL(None, use_errno=True).syscall})
        monkeypatch.setattr(tio.ctypes, "CDLL", lambda *a, **k: old_libc())
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "in_a").write_text("")
    if not tio._exchange(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    assert [p.name for p in b.iterdir()] == ["in_a"] and list(a.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        tio._exchange(tmp_path / "missing", b)  # other errors are not mistaken for "unsupported"


def test_leftovers_of_a_killed_run_are_removed_at_the_start(tmp_path):
    out = old_dir(tmp_path)
    before = snapshot(out)
    (tmp_path / ".out.k1lled00.tmp").mkdir()  # a half-written new directory
    (tmp_path / ".out.k1lled00.tmp" / "a.txt").write_text("half")
    (out / ".a.txt.k1lled01.tmp").write_text("half")  # a temp file inside the old directory
    (tmp_path / ".other.k1lled02.tmp").write_text("someone else's")
    with pytest.raises(RuntimeError):
        with tio.atomic_dir(out, OWNED):
            raise RuntimeError("fails after the start")
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.k1lled02.tmp", "out"]


@pytest.mark.parametrize("intruder", ["notes.txt", "dir:a.txt", "dir:sub"])
def test_atomic_dir_refuses_to_delete_what_it_does_not_own(tmp_path, intruder):
    out = old_dir(tmp_path)
    kind, _, name = intruder.rpartition(":")
    if kind == "dir":
        shutil.rmtree(out / name, ignore_errors=True)
        (out / name).unlink(missing_ok=True)
        (out / name).mkdir()
        (out / name / "keep").write_text("precious")
    else:
        (out / name).write_text("precious")
    before = snapshot(out)
    with pytest.raises(TinyGANError, match=rf"holds {name}, which tinygan does not write") as e:
        with tio.atomic_dir(out, OWNED):
            pytest.fail("nothing may be written")
    assert "\n" not in str(e.value)
    assert snapshot(out) == before and temps(tmp_path) == []


def test_atomic_dir_refuses_a_file_in_place_of_the_directory(tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(TinyGANError, match="exists and is not a directory"):
        with tio.atomic_dir(tmp_path / "out", OWNED):
            pass
    assert (tmp_path / "out").read_text() == "a file"


def test_atomic_dir_follows_a_symlinked_directory(tmp_path):
    real = old_dir(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(real)
    with tio.atomic_dir(link, OWNED) as d:
        tio.write_text(d / "b.txt", "new")
    assert link.is_symlink() and snapshot(real) == {"b.txt": b"new"}


def test_atomic_dir_rejects_files_it_was_not_told_about(tmp_path):
    with pytest.raises(RuntimeError, match="not in owned"):
        with tio.atomic_dir(tmp_path / "out", OWNED) as d:
            tio.write_text(d / "surprise.txt", "")
    assert not (tmp_path / "out").exists() and temps(tmp_path) == []


def test_atomic_path_removes_stale_temps_of_its_file(tmp_path):
    (tmp_path / ".x.json.k1lled00.tmp").write_text("half")
    (tmp_path / ".y.json.k1lled00.tmp").write_text("another file's")
    tio.write_json(tmp_path / "x.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".y.json.k1lled00.tmp", "x.json"]


def test_a_concurrent_write_keeps_the_other_writers_temp_file(tmp_path):
    """Two writers of one output (e.g. sample ranks finishing together, each writing the same manifest): the
    second's start-up clean-up must not delete the temp the first is still writing."""
    out = tmp_path / "manifest.json"
    with tio.atomic_path(out) as first:
        first.write_text("first")
        tio.write_text(out, "second")  # meanwhile, another writer of the same file
        assert first.read_text() == "first"
    assert out.read_text() == "first" and temps(tmp_path) == []


def test_a_concurrent_atomic_dir_keeps_the_other_writers_temp_dir(tmp_path):
    with tio.atomic_dir(tmp_path / "out", OWNED) as first:
        tio.write_text(first / "a.txt", "first")
        with tio.atomic_dir(tmp_path / "out", OWNED) as second:
            tio.write_text(second / "b.txt", "second")
        assert (first / "a.txt").read_text() == "first"
    assert snapshot(tmp_path / "out") == {"a.txt": b"first"} and temps(tmp_path) == []


def test_a_killed_runs_temp_waits_while_others_write_then_goes(tmp_path):
    """While another writer is at work in the directory, no temp is known dead, so none is deleted; the next
    write of the output in a quiet moment (or this one's end, once the other has finished) removes it."""
    leftover = tmp_path / ".x.json.k1lled00.tmp"
    leftover.write_text("half")
    with tio.atomic_path(tmp_path / "y.json") as other:
        other.write_text("{}")
        tio.write_json(tmp_path / "x.json", {"a": 1})
        assert leftover.exists()
    tio.write_json(tmp_path / "x.json", {"a": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "y.json"]


def test_another_process_writing_the_same_file_keeps_its_temp(tmp_path):
    """The same across processes: a child holds its temp open mid-write while this process writes the file."""
    out = tmp_path / "manifest.json"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from tinygan import io
        with io.atomic_path({str(out)!r}) as t:
            t.write_text("child")
            print("ready", flush=True)
            sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert child.stdout.readline().strip() == "ready"
        tio.write_text(out, "parent")
        assert out.read_text() == "parent" and len(temps(tmp_path)) == 1  # the child's, still live
        child.communicate("go\n", timeout=60)
    finally:
        child.kill()
    assert child.returncode == 0 and out.read_text() == "child" and temps(tmp_path) == []


def test_temp_names_match_what_tempfile_makes(tmp_path):
    fd, name = tempfile.mkstemp(prefix=".generator.onnx.", suffix=".tmp", dir=tmp_path)
    os.close(fd)
    assert tio.is_temp_name(Path(name).name, "generator.onnx") and tio.is_temp_name(Path(name).name)
    assert not tio.is_temp_name(Path(name).name, "generator")
    assert not tio.is_temp_name("generator.onnx") and not tio.is_temp_name(".generator.onnx")


# ---- a full disk (item 2) -------------------------------------------------------------------------------------


def fail_writes(monkeypatch, code=errno.ENOSPC, only: str = ""):
    """Path.write_bytes raises OSError(code) (for temp files of outputs named ``only``, if given)."""
    real = Path.write_bytes

    def write_bytes(self, data):
        if only in self.name:
            raise OSError(code, os.strerror(code))
        return real(self, data)
    monkeypatch.setattr(Path, "write_bytes", write_bytes)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_disk_full_in_a_checkpoint_is_one_line(tmp_path, monkeypatch, code):
    ckpt = tmp_path / "ckpt.pt"
    tr.save_checkpoint(ckpt, {"step": 1})
    before = ckpt.read_bytes()
    fail_writes(monkeypatch, code)
    with pytest.raises(TinyGANError) as e:
        tr.save_checkpoint(ckpt, {"step": 2})
    msg = str(e.value)
    assert "\n" not in msg and str(ckpt) in msg and "no space left" in msg and "free some space" in msg
    assert ckpt.read_bytes() == before and temps(tmp_path) == []


def test_disk_full_in_the_trained_generator_names_it(tmp_path, monkeypatch):
    fail_writes(monkeypatch, only="generator.safetensors")
    with pytest.raises(TinyGANError, match=r"no space left .* to write .*generator\.safetensors"):
        tr.save_generator(random_generator(), tmp_path / "student" / "generator.safetensors")
    assert list((tmp_path / "student").iterdir()) == []


def test_disk_full_wrapped_without_errno_is_recognised(tmp_path):
    # h5py reports a failed write as an OSError whose message carries the C library's text
    with pytest.raises(tio.DiskFullError, match="shard.h5"):
        with tio.atomic_path(tmp_path / "shard.h5"):
            raise OSError("Can't write data (file write failed: errno = 28, error message = 'No space left on "
                          "device')")
    assert list(tmp_path.iterdir()) == []


def test_disk_full_inside_atomic_dir_names_the_final_path(tmp_path, monkeypatch):
    out = old_dir(tmp_path)
    before = snapshot(out)
    fail_writes(monkeypatch, only="b.txt")
    with pytest.raises(tio.DiskFullError) as e:
        with tio.atomic_dir(out, OWNED) as d:
            tio.write_text(d / "a.txt", "new")
            tio.write_text(d / "b.txt", "new")
    assert e.value.path == out / "b.txt" and f"write {out / 'b.txt'} " in str(e.value)
    assert snapshot(out) == before and temps(tmp_path) == []


# ---- checkpoints (items 3 and 6) -----------------------------------------------------------------------------

# dw pinned: "other architecture" below is the std student
TINY = dict(variant="dw", ch=4, d_ch=4, batch_size=6, holdout_per_class=2, checkpoint_every=4, sample_every=8,
            log_every=1, snapshot_every=0, epochs=1)


def run(tiny_data, out: Path):
    return tr.train(str(tiny_data / "teacher"), str(tiny_data / "real"), str(out / "ckpt.pt"),
                    str(out / "student" / "generator.safetensors"), str(out / "live"),
                    TrainConfig.from_params(params.load(REPO / "params.yaml"), **TINY),
                    progress=False)


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt_a")
    run(tiny_data, out)
    return out


def test_checkpoint_bytes_do_not_depend_on_where_they_are_written(tiny_data, trained, tmp_path):
    other = tmp_path / "elsewhere" / "deeper"
    run(tiny_data, other)
    for name in ("ckpt.pt", "student/generator.safetensors"):
        assert (trained / name).read_bytes() == (other / name).read_bytes(), name
    names = zipfile.ZipFile(trained / "ckpt.pt").namelist()
    assert all(n.startswith("archive/") for n in names)  # not the temp file's name
    assert temps(trained) == []


def _corrupt(state: dict, how: str):
    if how == "not a dict":
        return torch.zeros(3)
    if how == "missing key":
        del state["opt_g"]
    elif how == "step is a string":
        state["step"] = "4"
    elif how == "step is a bool":
        state["step"] = True
    elif how == "wrong shape":
        state["G"]["fc.weight"] = torch.zeros(3, 3)
    elif how == "other architecture":
        state["G"] = Generator("std", 4).state_dict()
    elif how == "weights not tensors":
        state["D"] = {k: 0 for k in state["D"]}
    elif how == "optimiser of another model":
        other = torch.nn.Linear(3, 3)
        state["opt_g"] = torch.optim.Adam(other.parameters()).state_dict()
    elif how == "optimiser slot shape":
        first = next(iter(state["opt_d"]["state"].values()))
        first["exp_avg"] = torch.zeros(2, 2)
    elif how == "step beyond the run":
        state["step"] = 10 ** 6
    elif how == "rng is not a byte tensor":
        state["rng"]["torch"] = torch.zeros(4)
    return state


@pytest.mark.parametrize("how,match", [
    ("not a dict", "holds a Tensor"),
    ("missing key", r"lacks \['opt_g'\]"),
    ("step is a string", "step of type str"),
    ("step is a bool", "step of type bool"),
    ("wrong shape", r"G.fc.weight of shape \[3, 3\]"),
    ("other architecture", "G weights of another architecture"),
    ("weights not tensors", r"D\.\S+ of type int, not a tensor"),
    ("optimiser of another model", "optimiser state opt_g"),
    ("optimiser slot shape", r"opt_d state exp_avg of shape \[2, 2\]"),
    ("step beyond the run", "beyond this run's"),
    ("rng is not a byte tensor", "RNG state"),
])
def test_checkpoint_with_wrong_content_is_one_line(tiny_data, trained, tmp_path, how, match):
    state = torch.load(trained / "ckpt.pt", weights_only=True)
    tr.save_checkpoint(tmp_path / "ckpt.pt", _corrupt(state, how))
    before = (tmp_path / "ckpt.pt").read_bytes()
    with pytest.raises(TinyGANError, match=match) as e:
        run(tiny_data, tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "ckpt.pt") in msg and "delete it" in msg
    assert (tmp_path / "ckpt.pt").read_bytes() == before  # nothing deleted or overwritten


# ---- TorchScript and the other export files are the same bytes wherever the checkout lives (item 6) ----------


def test_export_bytes_do_not_depend_on_the_checkout_or_output_paths(tmp_path):
    src = tmp_path / "student" / "generator.safetensors"
    tr.save_generator(random_generator(), src)
    roots = [tmp_path / "checkout_a", tmp_path / "some" / "other" / "checkout_b"]
    outs = [tmp_path / "export_a", tmp_path / "x" / "export_b"]
    for root, out in zip(roots, outs):
        shutil.copytree(REPO / "tinygan", root / "tinygan", ignore=shutil.ignore_patterns("__pycache__"))
        code = textwrap.dedent(f"""
            import torch, tinygan
            torch.set_num_threads(1)
            assert tinygan.__file__.startswith({str(root)!r}), tinygan.__file__
            from tinygan.export import export
            export({str(src)!r}, {str(out)!r}, [1, 207], None, None, None, None)
        """)
        res = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"})
        assert res.returncode == 0, res.stderr[-2000:]
    a, b = snapshot(outs[0]), snapshot(outs[1])
    assert a.keys() == b.keys() and "generator.torchscript.pt" in a
    for name in a:
        assert a[name] == b[name], name
    ts = a["generator.torchscript.pt"]
    for path in (*roots, REPO, Path(torch.__file__).parents[1]):
        assert str(path).encode() not in ts
    G = random_generator()
    scripted = torch.jit.load(str(outs[0] / "generator.torchscript.pt"))
    z, y = torch.randn(3, 128) * 0.5, torch.tensor([1, 9, 207])
    with torch.no_grad():
        assert (scripted(z, y) - G(z, y)).abs().max().item() <= 1e-5
