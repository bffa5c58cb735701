"""sample(): teacher -> (z, y, image) shards + manifest: counts, determinism, work split, resume after kill -9."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from tinygan import sample as sampling, shards
from tinygan.errors import TinyGANError
from tinygan.sample import fingerprint, sample
from tinygan.io import sha256_file
from tinygan.teacher import DESCRIPTION, content_hash, describe, draw_z, load_teacher, quantize, truncated_z_batch
from toy_teachers import save_tf_teacher, save_torchscript_teacher

REPO = Path(__file__).resolve().parents[1]
CLASSES = [7, 1, 3]  # unsorted on purpose: the order is sorted classes
ARGS = dict(classes=CLASSES, per_class=5, truncation=0.5, seed=0, shard_size=4, progress=False)  # 15 items, 4 shards


@pytest.fixture(scope="module")
def ts_path(tmp_path_factory):
    return save_torchscript_teacher(tmp_path_factory.mktemp("ts") / "teacher.pt")


@pytest.fixture(scope="module")
def clean(ts_path, tmp_path_factory):
    """An uninterrupted reference run (batch 3, one process)."""
    out = tmp_path_factory.mktemp("clean")
    manifest = sample(ts_path, "torchscript", str(out), batch_size=3, **ARGS)
    return out, manifest


def files(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(Path(d).iterdir())}


class Counting:
    """Wraps a teacher: counts calls and optionally sleeps in each (to widen the kill window)."""

    def __init__(self, teacher, delay=0.0):
        self.t, self.delay, self.calls = teacher, delay, 0
        self.handle, self.z_dim, self.c_dim, self.resolution, self.latent = (
            teacher.handle, teacher.z_dim, teacher.c_dim, teacher.resolution, teacher.latent)

    def __call__(self, z, y, truncation):
        self.calls += 1
        time.sleep(self.delay)
        return self.t(z, y, truncation)


def test_counts_content_and_manifest(clean, ts_path):
    out, m = clean
    assert sorted(files(out)) == ["manifest.json"] + [f"teacher-0000{k}.h5{s}" for k in range(4) for s in ("", ".sha256")]
    assert json.loads((out / "manifest.json").read_text()) == m == shards.verify(out, "teacher")
    assert m["kind"] == "teacher" and m["n"] == 15 and m["resolution"] == 128
    assert (m["z_dim"], m["c_dim"], m["latent"]) == (128, 1000, "biggan")  # the teacher's shape and noise
    assert m["classes"] == [1, 3, 7] and m["class_counts"] == {"1": 5, "3": 5, "7": 5}
    assert [s["n"] for s in m["shards"]] == [4, 4, 4, 3]
    assert (m["teacher"], m["truncation"], m["seed"], m["per_class"]) == (ts_path, 0.5, 0, 5)
    assert m["teacher_sha256"] == content_hash(ts_path, "torchscript") == sha256_file(ts_path)
    assert m["teacher_info"] == describe(ts_path, "torchscript") == {
        "name": ts_path, "g_params": None, "g_macs": None, "source": "unknown teacher, n/a"}
    assert m["fingerprint"] == fingerprint(m["teacher_sha256"], "torchscript", CLASSES, 5, 0.5, 0, 4)
    z, y, images = [], [], []
    for k, s in enumerate(m["shards"]):
        with h5py.File(out / s["file"], "r") as f:
            assert (f.attrs["kind"], f.attrs["fingerprint"], int(f.attrs["shard"])) == ("teacher", m["fingerprint"], k)
            assert f["z"].dtype == np.float32 and f["y"].dtype == np.int64 and f["images"].dtype == np.uint8
            z.append(f["z"][:]), y.append(f["y"][:]), images.append(f["images"][:])
    z, y, images = np.concatenate(z), np.concatenate(y), np.concatenate(images)
    np.testing.assert_array_equal(y, np.repeat([1, 3, 7], 5))  # class-major, exactly per_class each
    np.testing.assert_array_equal(z, truncated_z_batch(0, y, np.tile(np.arange(5), 3), 0.5))  # the z fed
    assert images.shape == (15, 128, 128, 3)
    np.testing.assert_array_equal(images, quantize(load_teacher(ts_path, "torchscript")(z, y, 0.5)))


def test_batch_size_does_not_change_bytes(clean, ts_path, tmp_path):
    sample(ts_path, "torchscript", str(tmp_path), batch_size=8, **ARGS)
    assert files(tmp_path) == files(clean[0])


def test_world_size_2_same_bytes(clean, ts_path, tmp_path):
    assert sample(ts_path, "torchscript", str(tmp_path), batch_size=3, rank=0, world_size=2, **ARGS) is None
    assert sorted(files(tmp_path)) == ["teacher-00000.h5", "teacher-00000.h5.sha256",
                                       "teacher-00002.h5", "teacher-00002.h5.sha256"]  # no manifest yet
    m = sample(ts_path, "torchscript", str(tmp_path), batch_size=3, rank=1, world_size=2, **ARGS)
    assert m == clean[1]
    assert files(tmp_path) == files(clean[0])


def test_resume_skips_done_shards_and_removes_stale(clean, ts_path, tmp_path):
    # A run with another seed leaves shards with another fingerprint, a manifest, a temp file, an extra shard.
    sample(ts_path, "torchscript", str(tmp_path), batch_size=3, **{**ARGS, "seed": 1})
    (tmp_path / ".teacher-00001.h5.abc123.tmp").write_bytes(b"partial")
    (tmp_path / "teacher-00009.h5").write_bytes(b"leftover of a bigger run")
    teacher = Counting(load_teacher(ts_path, "torchscript"))
    sample(ts_path, "torchscript", str(tmp_path), batch_size=3, teacher=teacher, **ARGS)
    assert files(tmp_path) == files(clean[0])  # all stale files replaced or removed
    assert teacher.calls == 7  # batches of 3 in shards of 4, 4, 4, 3: every stale shard regenerated
    # Rerun with everything done: nothing is recomputed and nothing changes.
    teacher.calls = 0
    sample(ts_path, "torchscript", str(tmp_path), batch_size=3, teacher=teacher, **ARGS)
    assert teacher.calls == 0 and files(tmp_path) == files(clean[0])
    # A missing shard, a missing sidecar (killed between the two writes): only those shards are redone.
    os.remove(tmp_path / "teacher-00002.h5")
    os.remove(tmp_path / "teacher-00003.h5.sha256")
    sample(ts_path, "torchscript", str(tmp_path), batch_size=3, teacher=teacher, **ARGS)
    assert teacher.calls == 3 and files(tmp_path) == files(clean[0])


def test_kill_9_then_resume_is_bit_identical(clean, ts_path, tmp_path):
    code = (
        "import time, sys\n"
        "from tinygan.sample import sample\n"
        "from tinygan.teacher import load_teacher\n"
        f"t = load_teacher({ts_path!r}, 'torchscript')\n"
        "f = t.__call__\n"
        "class Slow:\n"
        "    handle, z_dim, c_dim, resolution, latent = t.handle, 128, 1000, 128, 'biggan'\n"
        "    def __call__(self, *a):\n"
        "        time.sleep(0.4)\n"
        "        return f(*a)\n"
        f"sample({ts_path!r}, 'torchscript', {str(tmp_path)!r}, batch_size=2, teacher=Slow(), **{ARGS!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 180
        while not (tmp_path / "teacher-00000.h5").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "no shard landed in time"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()
    left = sorted(files(tmp_path))
    assert "manifest.json" not in left and "teacher-00003.h5" not in left  # really interrupted
    m = sample(ts_path, "torchscript", str(tmp_path), batch_size=3, **ARGS)
    assert m == clean[1] and files(tmp_path) == files(clean[0])


def test_tfhub_teacher_same_shards(clean, tmp_path):
    # The TF SavedModel computes the same formula: the adapter feeds the same z/y and shards have the same layout.
    tf_path = save_tf_teacher(tmp_path / "tf")
    about = {"name": "toy teacher", "g_params": 6, "g_macs": 5, "source": "tests/toy_teachers.py"}
    (tmp_path / "tf" / DESCRIPTION).write_text(json.dumps(about))  # what the teacher says about itself ...
    m = sample(tf_path, "tfhub", str(tmp_path / "out"), batch_size=4, **ARGS)
    assert m["n"] == 15 and m["teacher"] == tf_path and m["fingerprint"] != clean[1]["fingerprint"]
    assert m["teacher_info"] == about  # ... is recorded in the manifest, for evaluation and the model card
    for s in m["shards"]:
        with h5py.File(tmp_path / "out" / s["file"], "r") as a, h5py.File(clean[0] / s["file"], "r") as b:
            np.testing.assert_array_equal(a["z"][:], b["z"][:])
            np.testing.assert_array_equal(a["y"][:], b["y"][:])
            assert np.abs(a["images"][:].astype(int) - b["images"][:]).max() <= 1


@pytest.mark.parametrize("bad, words", [
    ({"classes": []}, "class list is empty"),
    ({"classes": [1, 1000]}, "out of range"),
    ({"classes": [2, 2]}, "listed twice"),
    ({"per_class": 0}, "per_class"),
    ({"truncation": 0.0}, "truncation"),
    ({"rank": 2, "world_size": 2}, "rank 2"),
])
def test_bad_args(ts_path, tmp_path, bad, words):
    with pytest.raises(TinyGANError, match=words):
        sample(ts_path, "torchscript", str(tmp_path), **{**ARGS, **bad})


def test_nan_teacher_is_a_clear_error_and_keeps_finished_shards(ts_path, tmp_path):
    inner = load_teacher(ts_path, "torchscript")

    class NaNAfterFirstShard(Counting):
        def __call__(self, z, y, truncation):
            x = super().__call__(z, y, truncation)
            return x if self.calls <= 2 else x * np.nan

    with pytest.raises(TinyGANError, match="NaN/inf in shard 1"):
        sample(ts_path, "torchscript", str(tmp_path), batch_size=3, teacher=NaNAfterFirstShard(inner), **ARGS)
    assert sorted(files(tmp_path)) == ["teacher-00000.h5", "teacher-00000.h5.sha256"]


def test_a_failed_shard_write_is_one_line_and_the_shards_before_it_land(clean, ts_path, tmp_path, monkeypatch):
    """Shards are written by their own thread, overlapping the next shard's batches: a write that fails
    (here a full disk on shard 2) still stops the run with its one-line error, and the shards before it land."""
    from tinygan.io import DiskFullError

    real = shards.write_shard

    def write(path, arrays, attrs):
        if Path(path).name == "teacher-00002.h5":
            raise DiskFullError(path)
        return real(path, arrays, attrs)

    monkeypatch.setattr(shards, "write_shard", write)
    with pytest.raises(DiskFullError, match="teacher-00002.h5"):
        sample(ts_path, "torchscript", str(tmp_path), batch_size=3, **ARGS)
    landed = files(tmp_path)
    assert sorted(landed) == ["teacher-00000.h5", "teacher-00000.h5.sha256", "teacher-00001.h5",
                              "teacher-00001.h5.sha256"]
    assert all(landed[n] == files(clean[0])[n] for n in landed)  # the same bytes as the clean run
    monkeypatch.setattr(shards, "write_shard", real)
    sample(ts_path, "torchscript", str(tmp_path), batch_size=3, **ARGS)  # resumes: the clean run's bytes
    assert files(tmp_path) == files(clean[0])


def test_shard_file_names():
    assert shards.shard_index("teacher", "teacher-00012.h5") == 12
    assert shards.shard_index("teacher", "teacher-00012.h5.sha256") == 12
    assert shards.shard_index("teacher", ".teacher-00012.h5.k3_x9q.tmp") == 12
    assert shards.shard_index("teacher", ".teacher-00012.h5.sha256.abc.tmp") == 12
    assert shards.shard_index("real", ".real-00003.h5.sha256.abc.tmp") == 3
    for other in ("manifest.json", "teacher-00012.h5.tmp", ".teacher-00012.h5", "real-00001.h5", "teacher-1.h5",
                  "teacher-00012.h5x", ".manifest.json.abcdefgh.tmp"):
        assert shards.shard_index("teacher", other) is None


def shard_stats(d: Path) -> dict:
    """(inode, mtime) of every shard file and sidecar: unchanged means not rewritten."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(Path(d).glob("teacher-*"))}


def images_of(d: Path, m: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    out = [[], [], []]
    for s in m["shards"]:
        with h5py.File(d / s["file"], "r") as f:
            for i, k in enumerate(("z", "y", "images")):
                out[i].append(f[k][:])
    return tuple(np.concatenate(v) for v in out)


def test_teacher_replaced_at_same_path_is_resampled(tmp_path):
    handle = save_torchscript_teacher(tmp_path / "teacher.pt")
    out = tmp_path / "out"
    m1 = sample(handle, "torchscript", str(out), batch_size=4, **ARGS)
    before, old_images = shard_stats(out), images_of(out, m1)[2]
    # Same teacher: every shard reused (not rewritten), the teacher never called.
    counting = Counting(load_teacher(handle, "torchscript"))
    assert sample(handle, "torchscript", str(out), batch_size=4, teacher=counting, **ARGS) == m1
    assert counting.calls == 0 and shard_stats(out) == before and len(before) == 8
    # Another teacher at the same path: new fingerprint, every shard regenerated from the new teacher.
    os.replace(save_torchscript_teacher(tmp_path / "other.pt", shift=0.3), handle)
    m2 = sample(handle, "torchscript", str(out), batch_size=4, **ARGS)
    assert m2["teacher"] == handle and m2["teacher_sha256"] == sha256_file(handle) != m1["teacher_sha256"]
    assert m2["fingerprint"] != m1["fingerprint"] and shards.verify(out, "teacher") == m2
    z, y, images = images_of(out, m2)
    np.testing.assert_array_equal(images, quantize(load_teacher(handle, "torchscript")(z, y, 0.5)))
    assert (images != old_images).mean() > 0.5  # really the new teacher's images, not the old ones


def test_same_teacher_moved_reuses_shards(tmp_path):
    handle = save_torchscript_teacher(tmp_path / "a.pt")
    out = tmp_path / "out"
    m1 = sample(handle, "torchscript", str(out), batch_size=4, **ARGS)
    before = shard_stats(out)
    moved = str(tmp_path / "b.pt")
    os.replace(handle, moved)
    m2 = sample(moved, "torchscript", str(out), batch_size=4, **ARGS)
    assert shard_stats(out) == before  # content-addressed: the path is not part of the fingerprint
    # an undescribed teacher is named by its handle
    assert m2 == {**m1, "teacher": moved, "teacher_info": {**m1["teacher_info"], "name": moved}}


def test_bad_teacher_leaves_existing_shards_untouched(ts_path, tmp_path):
    out = tmp_path / "out"
    sample(ts_path, "torchscript", str(out), batch_size=4, **ARGS)
    (out / "teacher-00007.h5").write_bytes(b"stale leftover of a bigger run")  # would be cleaned by a good run
    before = files(out)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torchscript file")
    for handle, kind, words in [(ts_path + "x", "torchscript", "does not exist"),
                                (str(junk), "torchscript", "cannot load as TorchScript"),
                                (str(tmp_path / "nope"), "tfhub", "does not exist"),
                                (ts_path, "onnx", "unknown teacher kind")]:
        with pytest.raises(TinyGANError, match=words) as e:
            sample(handle, kind, str(out), batch_size=4, **ARGS)
        assert "\n" not in str(e.value)
        assert files(out) == before, handle
    # A teacher that loads but whose first batch is bad (NaN) deletes nothing either (seed 1: all shards stale).
    with pytest.raises(TinyGANError, match="NaN/inf in shard 0"):
        sample(ts_path, "torchscript", str(out), batch_size=4, teacher=NaNTeacher(ts_path), **{**ARGS, "seed": 1})
    assert files(out) == before


class NaNTeacher:
    def __init__(self, handle):
        self.handle, self.z_dim, self.c_dim, self.resolution, self.latent = handle, 128, 1000, 128, "biggan"

    def __call__(self, z, y, truncation):
        return np.full((len(z), 128, 128, 3), np.nan, np.float32)


# ---- any teacher: sampling at the teacher's shape ----

SG = {"z_dim": 512, "c_dim": 10, "img_resolution": 32}


def test_sample_at_the_teachers_shape(tmp_path):
    handle = save_torchscript_teacher(tmp_path / "sg.pt", resolution=32, attrs=SG)
    out = tmp_path / "out"
    m = sample(handle, "torchscript", str(out), batch_size=3, **{**ARGS, "classes": [9, 0, 4]})
    assert (m["z_dim"], m["c_dim"], m["resolution"], m["latent"]) == (512, 10, 32, "stylegan")
    assert shards.verify(out, "teacher") == m
    z, y, images = images_of(out, m)
    assert z.shape == (15, 512) and images.shape == (15, 32, 32, 3)
    np.testing.assert_array_equal(y, np.repeat([0, 4, 9], 5))
    np.testing.assert_array_equal(z, draw_z("stylegan", 0, y, np.tile(np.arange(5), 3), 0.5, 512))  # the z fed
    assert np.abs(z).max() > 2.0  # standard normal: not the truncated, scaled BigGAN noise
    np.testing.assert_array_equal(images, quantize(load_teacher(handle, "torchscript")(z, y, 0.5)))
    ds = shards.ShardDataset(out)
    batch = ds.__getitems__([0, 14])
    assert tuple(batch["z"].shape) == (2, 512) and tuple(batch["images"].shape) == (2, 3, 32, 32)
    assert batch["y"].tolist() == [0, 9]
    # latent chosen explicitly: other noise, other fingerprint
    m2 = sample(handle, "torchscript", str(tmp_path / "big"), batch_size=3, latent="biggan",
                **{**ARGS, "classes": [9, 0, 4]})
    assert m2["latent"] == "biggan" and m2["fingerprint"] != m["fingerprint"]
    assert np.abs(images_of(tmp_path / "big", m2)[0]).max() <= 2 * 0.5
    with pytest.raises(TinyGANError, match=r"class indices \[10\] out of range \[0, 10\)"):
        sample(handle, "torchscript", str(tmp_path / "bad"), **{**ARGS, "classes": [3, 10]})


def test_sample_an_unconditional_teacher(tmp_path):
    handle = save_tf_teacher(tmp_path / "u", y_width=None, z_dim=20, resolution=16)
    out = tmp_path / "out"
    m = sample(handle, "tfhub", str(out), batch_size=4, **{**ARGS, "classes": [0], "per_class": 6})
    assert (m["z_dim"], m["c_dim"], m["resolution"], m["latent"], m["classes"]) == (20, 0, 16, "biggan", [0])
    z, y, images = images_of(out, shards.verify(out, "teacher"))
    assert z.shape == (6, 20) and images.shape == (6, 16, 16, 3) and not y.any()
    np.testing.assert_array_equal(z, truncated_z_batch(0, y, np.arange(6), 0.5, 20))
    with pytest.raises(TinyGANError, match=r"unconditional \(c_dim 0\), use classes \[0\]") as e:
        sample(handle, "tfhub", str(tmp_path / "bad"), **{**ARGS, "classes": [0, 1]})
    assert "\n" not in str(e.value)


def test_rerun_with_everything_done_takes_the_shape_from_the_manifest(tmp_path, monkeypatch):
    handle = save_torchscript_teacher(tmp_path / "sg.pt", resolution=32, attrs=SG)
    out = tmp_path / "out"
    m = sample(handle, "torchscript", str(out), **{**ARGS, "classes": [1]})
    monkeypatch.setattr("tinygan.sample.load_teacher", None)  # loading the teacher would fail
    assert sample(handle, "torchscript", str(out), **{**ARGS, "classes": [1]}) == m


def test_the_manifest_shape_is_checked(tmp_path):
    handle = save_torchscript_teacher(tmp_path / "sg.pt", resolution=32, attrs=SG)
    out = tmp_path / "out"
    m = sample(handle, "torchscript", str(out), **{**ARGS, "classes": [1, 9]})
    for change, words in [({"z_dim": 5000}, r"field 'z_dim' is 5000, expected an integer in \[1, 4096\]"),
                          ({"c_dim": -1}, r"field 'c_dim' is -1, expected an integer in \[0, 100000\]"),
                          ({"c_dim": 5}, r"field 'classes\[1\]' is 9, expected an integer in \[0, 4\]"),
                          ({"z_dim": 128}, r"dataset 'z' is float32 \(4, 512\), expected float32 \(4, 128\)")]:
        (out / "manifest.json").write_text(json.dumps({**m, **change}))
        with pytest.raises(TinyGANError, match=words) as e:
            shards.verify(out, "teacher", checksums=False)
        assert "\n" not in str(e.value)
    old = {k: v for k, v in m.items() if k not in ("z_dim", "c_dim")}  # a manifest from before: 128 / 1000
    (out / "manifest.json").write_text(json.dumps(old))
    with pytest.raises(TinyGANError, match=r"expected float32 \(4, 128\)"):
        shards.verify(out, "teacher", checksums=False)


# ---- the stages' share of the work and the teacher_eval marker ----------------------------------------------------

@pytest.mark.parametrize("shard,env,want", [("", {}, (0, 1)), ("", {"RANK": "2", "WORLD_SIZE": "4"}, (2, 4)),
                                            ("1/3", {"RANK": "2", "WORLD_SIZE": "4"}, (1, 3))])
def test_process_share(monkeypatch, shard, env, want):
    for k in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert sampling.process_share(shard) == want


@pytest.mark.parametrize("shard", ["3/3", "1", "a/b", "-1/2"])
def test_bad_shard_option_is_one_line(shard):
    with pytest.raises(TinyGANError, match="expected i/n") as e:
        sampling.process_share(shard)
    assert "\n" not in str(e.value)


def test_unused_marker_keeps_an_earlier_evaluation_set(tmp_path):
    out = tmp_path / "teacher_eval"
    out.mkdir()
    (out / "teacher-00000.h5").write_bytes(b"shard")
    sampling.mark_unused(str(out), "not used")
    assert (out / sampling.UNUSED).read_text() == "not used\n" and (out / "teacher-00000.h5").read_bytes() == b"shard"
    sampling.clear_unused(str(out))
    sampling.clear_unused(str(out))  # twice: nothing to do
    assert sorted(p.name for p in out.iterdir()) == ["teacher-00000.h5"]
