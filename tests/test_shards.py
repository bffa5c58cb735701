import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tinygan import shards
from tinygan.errors import TinyGANError
from tinygan.io import sha256_file

RES = 8


def make_teacher(d: Path, sizes=(5, 7, 4), seed=0) -> dict:
    """Teacher shards whose z[:, 0] is the global sample number (to track samples through readers)."""
    rng = np.random.default_rng(seed)
    entries, counts, start = [], {}, 0
    for k, n in enumerate(sizes):
        z = rng.standard_normal((n, 128)).astype(np.float32)
        z[:, 0] = np.arange(start, start + n)
        y = rng.integers(0, 5, n)
        images = rng.integers(0, 256, (n, RES, RES, 3), dtype=np.uint8)
        entries.append(shards.write_shard(d / shards.shard_name("teacher", k), {"z": z, "y": y, "images": images},
                                          {"kind": "teacher", "fingerprint": f"fp{k}"}))
        for c in y.tolist():
            counts[c] = counts.get(c, 0) + 1
        start += n
    return shards.write_manifest(d, "teacher", entries, counts, {"truncation": 0.5, "seed": seed},
                                 fingerprint="run", resolution=RES)


def all_raw(d: Path) -> dict:
    out = {k: [] for k in ("z", "y", "images")}
    for e in shards.read_manifest(d)["shards"]:
        with h5py.File(d / e["file"], "r") as f:
            for k in out:
                out[k].append(f[k][:])
    return {k: np.concatenate(v) for k, v in out.items()}


def test_roundtrip_and_manifest(tmp_path):
    m = make_teacher(tmp_path)
    assert m["kind"] == "teacher" and m["n"] == 16 and m["resolution"] == RES and m["truncation"] == 0.5
    assert sum(m["class_counts"].values()) == 16 and m["classes"] == sorted(int(c) for c in m["class_counts"])
    assert [e["file"] for e in m["shards"]] == ["teacher-00000.h5", "teacher-00001.h5", "teacher-00002.h5"]
    assert shards.read_manifest(tmp_path) == m
    assert shards.verify(tmp_path, kind="teacher") == m
    ref = all_raw(tmp_path)

    ds = shards.ShardDataset(tmp_path)
    assert len(ds) == 16 and ds.fields == ("z", "y", "images")
    idx = [15, 0, 7, 3, 3, 11, 5]  # any order, across shards, with a repeat
    raw = ds.read(idx, raw=True)
    for k in ("z", "y", "images"):
        np.testing.assert_array_equal(raw[k], ref[k][idx])
    t = ds.__getitems__(idx)
    assert t["images"].dtype == torch.float32 and t["images"].shape == (7, 3, RES, RES)
    expect = torch.from_numpy(ref["images"][idx]).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.equal(t["images"], expect)
    assert t["images"].min() >= -1 and t["images"].max() <= 1
    assert t["z"].dtype == torch.float32 and torch.equal(t["z"], torch.from_numpy(ref["z"][idx]))
    assert t["y"].dtype == torch.int64 and t["y"].tolist() == ref["y"][idx].tolist()
    one = ds[7]
    assert one["images"].shape == (3, RES, RES) and int(one["y"]) == ref["y"][7]
    np.testing.assert_array_equal(ds.labels(), ref["y"])
    assert ds.class_counts() == {int(c): n for c, n in m["class_counts"].items() if n}
    c = int(ref["y"][0])
    np.testing.assert_array_equal(ds.class_indices(c), np.flatnonzero(ref["y"] == c))
    got = np.concatenate([b["y"] for b in ds.iter_read(ds.class_indices(c), batch_size=2)])
    assert (got == c).all()
    with pytest.raises(IndexError):
        ds.read([16])


def test_write_is_deterministic(tmp_path):
    make_teacher(tmp_path / "a")
    make_teacher(tmp_path / "b")
    for name in sorted(os.listdir(tmp_path / "a")):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_real_shards_with_names(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, RES, RES, 3), dtype=np.uint8)
    names = np.array(["a.JPEG", "b.JPEG", "ü.JPEG"], dtype=object)
    e = shards.write_shard(tmp_path / "real-00000.h5", {"images": images, "y": np.array([4, 4, 9]), "names": names},
                           {"kind": "real", "fingerprint": "x"})
    shards.write_manifest(tmp_path, "real", [e], {4: 2, 9: 1, 10: 0}, {"skipped": {}})
    ds = shards.ShardDataset(tmp_path, fields=("images", "y", "names"))
    b = ds.read([2, 0], raw=True)
    assert b["names"] == ["ü.JPEG", "a.JPEG"] and b["y"].tolist() == [9, 4]
    np.testing.assert_array_equal(b["images"], images[[2, 0]])
    assert shards.read_manifest(tmp_path)["classes"] == [4, 9, 10]
    with pytest.raises(TinyGANError, match="no field 'z'"):
        shards.ShardDataset(tmp_path, fields=("z",))
    with pytest.raises(TinyGANError, match="'real'.*expected 'teacher'"):
        shards.ShardDataset(tmp_path, kind="teacher")


def test_verify_catches_checksum_mismatch(tmp_path):
    make_teacher(tmp_path)
    p = tmp_path / "teacher-00001.h5"
    with h5py.File(p, "r") as f:
        pixel = f["images"].id.get_offset() + 10
    data = bytearray(p.read_bytes())
    data[pixel] ^= 0xFF  # a pixel byte: same size, different content
    p.write_bytes(bytes(data))
    with pytest.raises(TinyGANError, match="checksum") as e:
        shards.verify(tmp_path)
    assert str(p) in str(e.value)
    with pytest.raises(TinyGANError, match="teacher-00001.h5"):
        shards.ShardDataset(tmp_path)
    assert shards.verify(tmp_path, checksums=False)["n"] == 16  # opt-out of hashing: layout still checked


def test_write_shard_checks_arrays(tmp_path):
    good = {"z": np.zeros((2, 128), np.float32), "y": [1, 2], "images": np.zeros((2, 8, 8, 3), np.uint8)}
    with pytest.raises(ValueError, match="images has dtype float32"):
        shards.write_shard(tmp_path / "t-00000.h5", {**good, "images": np.zeros((2, 8, 8, 3), np.float32)},
                           {"kind": "teacher", "fingerprint": "x"})
    with pytest.raises(ValueError, match="z has shape"):
        shards.write_shard(tmp_path / "t-00000.h5", {**good, "z": np.zeros((3, 128))},
                           {"kind": "teacher", "fingerprint": "x"})
    with pytest.raises(ValueError, match="missing array 'names'"):
        shards.write_shard(tmp_path / "r-00000.h5", good, {"kind": "real", "fingerprint": "x"})
    assert not list(tmp_path.iterdir())


def test_verify_catches_truncated_shard(tmp_path):
    make_teacher(tmp_path)
    p = tmp_path / "teacher-00002.h5"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(TinyGANError, match="truncated") as e:
        shards.verify(tmp_path)
    assert str(p) in str(e.value)
    assert shards.existing_shard(p, "fp2") is None


def test_truncated_shard_without_size_in_manifest(tmp_path):
    make_teacher(tmp_path)
    m = json.loads((tmp_path / "manifest.json").read_text())
    for e in m["shards"]:
        del e["bytes"]
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    p = tmp_path / "teacher-00000.h5"
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(TinyGANError) as e:
        shards.verify(tmp_path)
    assert str(p) in str(e.value)


def test_verify_missing_shard_and_manifest(tmp_path):
    make_teacher(tmp_path)
    (tmp_path / "teacher-00001.h5").unlink()
    with pytest.raises(TinyGANError, match="teacher-00001.h5 is missing"):
        shards.verify(tmp_path)
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(TinyGANError, match="manifest.json is missing"):
        shards.verify(tmp_path)
    with pytest.raises(TinyGANError, match="does not exist"):
        shards.verify(tmp_path / "nope")


def test_verify_catches_wrong_layout(tmp_path):
    e = shards.write_shard(tmp_path / "teacher-00000.h5",
                           {"z": np.zeros((2, 128), np.float32), "y": np.zeros(2),
                            "images": np.zeros((2, 8, 8, 3), np.uint8)},
                           {"kind": "teacher", "fingerprint": "x"})
    shards.write_manifest(tmp_path, "teacher", [e], {0: 2}, resolution=16)  # manifest claims 16 px
    with pytest.raises(TinyGANError, match="teacher-00000.h5: dataset 'images'"):
        shards.verify(tmp_path)


def test_balanced_epoch_batches_hold_every_class_equally():
    labels = np.array([0] * 5 + [1] * 7 + [2] * 6)  # unequal classes: 5 of each used per epoch

    def epoch(e, batch=3, seed=3):
        return [b.tolist() for b in shards.balanced_epoch_batches(labels, batch, seed=seed, epoch=e)]

    epoch0 = epoch(0)
    assert len(epoch0) == 5 and all(sorted(labels[b].tolist()) == [0, 1, 2] for b in epoch0)
    used = sum(epoch0, [])
    assert len(set(used)) == 15 and np.bincount(labels[used]).tolist() == [5, 5, 5]
    assert epoch(0) == epoch0 and epoch(1) != epoch0 and epoch(0, seed=4) != epoch0
    # a larger class leaves out a different random remainder each epoch
    left_out = {frozenset(set(np.flatnonzero(labels == 1)) - set(sum(epoch(e), []))) for e in range(6)}
    assert len(left_out) > 1
    # a batch that the classes do not divide: each class once or twice; 15 // 4 = 3 batches
    for b in epoch(0, batch=4):
        counts = np.bincount(labels[b], minlength=3)
        assert len(b) == 4 and counts.max() - counts.min() <= 1
    # each rank's consecutive slice of a global batch (6 = 2 ranks x 3) holds every class once
    for b in epoch(0, batch=6):
        assert sorted(labels[b[:3]].tolist()) == sorted(labels[b[3:]].tolist()) == [0, 1, 2]
    with pytest.raises(TinyGANError, match="batch size"):
        shards.balanced_epoch_batches(labels, 0, seed=0, epoch=0)


def test_epoch_batches_cover_every_sample_once_and_are_deterministic(tmp_path):
    def epoch(seed, e, batch=4):
        return [b.tolist() for b in shards.epoch_batches(16, batch, seed=seed, epoch=e)]

    epoch0 = epoch(3, 0)
    assert sorted(sum(epoch0, [])) == list(range(16)) and [len(b) for b in epoch0] == [4] * 4
    assert all(b == sorted(b) for b in epoch0)  # sorted: one ascending gather per read
    assert epoch(3, 0) == epoch0
    assert sorted(sum(epoch(3, 1), [])) == list(range(16)) and epoch(3, 1) != epoch0
    assert epoch(4, 0) != epoch0
    # an incomplete last batch is dropped: 3 batches of 5 distinct samples, a different one left out per epoch
    left_out = [set(range(16)) - set(sum(epoch(3, e, batch=5), [])) for e in range(4)]
    assert all(len(s) == 1 for s in left_out) and len(set(map(frozenset, left_out))) > 1
    with pytest.raises(TinyGANError, match="batch size"):
        shards.epoch_batches(16, 0, seed=0, epoch=0)
    # a batch read the way training reads it holds the stored samples of those indices
    make_teacher(tmp_path)
    ref = all_raw(tmp_path)
    idx = epoch0[0]
    b = shards.ShardDataset(tmp_path).__getitems__(idx)
    assert b["z"][:, 0].long().tolist() == idx and b["y"].tolist() == ref["y"][idx].tolist()


def test_reader_handles_chunked_compressed_shards(tmp_path):
    """Shards written by other tools (chunked, gzip) are read through h5py instead of pread."""
    make_teacher(tmp_path / "ref")
    ref = all_raw(tmp_path / "ref")
    m = shards.read_manifest(tmp_path / "ref")
    entries = []
    for e in m["shards"]:
        src, dst = tmp_path / "ref" / e["file"], tmp_path / "gz" / e["file"]
        dst.parent.mkdir(exist_ok=True)
        with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
            for k in f:
                g.create_dataset(k, data=f[k][:], chunks=True, compression="gzip")
            g.attrs.update(dict(f.attrs))
        entries.append({"file": e["file"], "n": e["n"], "sha256": sha256_file(dst)})
    shards.write_manifest(tmp_path / "gz", "teacher", entries, {int(c): n for c, n in m["class_counts"].items()},
                          fingerprint="run", resolution=RES)
    ds = shards.ShardDataset(tmp_path / "gz")
    idx = [14, 2, 3, 4, 9]
    b = ds.read(idx, raw=True)
    for k in ("z", "y", "images"):
        np.testing.assert_array_equal(b[k], ref[k][idx])


def test_existing_shard(tmp_path):
    make_teacher(tmp_path)
    p = tmp_path / "teacher-00000.h5"
    e = shards.existing_shard(p, "fp0")
    assert e == shards.read_manifest(tmp_path)["shards"][0]
    assert shards.existing_shard(p, "other") is None
    (tmp_path / "teacher-00000.h5.sha256").unlink()
    assert shards.existing_shard(p, "fp0") is None  # no sidecar: a write may not have finished


def _teacher_arrays(n: int) -> dict:
    return {"z": np.zeros((n, 128), np.float32), "y": np.zeros(n, np.int64),
            "images": np.zeros((n, RES, RES, 3), np.uint8)}


def test_shard_run_protocol(tmp_path):
    """find reusable -> nothing touched until start -> start removes exactly the stale files -> held writes land."""
    make_teacher(tmp_path)  # shards 0-2 with fingerprints fp0, fp1, fp2 (sizes 5, 7, 4) and a manifest
    for name in (".teacher-00000.h5.abcdefgh.tmp", ".teacher-00002.h5.abcdefgh.tmp", "teacher-00003.h5",
                 "teacher-00003.h5.sha256", "unrelated.txt"):
        (tmp_path / name).write_bytes(b"x")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    # this process owns shards 0 and 1 (1 has another fingerprint now); another process owns shard 2
    run = shards.ShardRun(tmp_path, "teacher", ["fp0", "new1", "fp2"], "run2", own=[0, 1], sizes=[5, 7, 4])
    assert run.find_reusable() == [1] and list(run.entries) == [0]
    run.write(1, _teacher_arrays(7), {"kind": "teacher", "fingerprint": "new1"})  # held back
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before and run.complete() is None
    run.start()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".teacher-00002.h5.abcdefgh.tmp",  # another process's shard: may be being written
        "teacher-00000.h5", "teacher-00000.h5.sha256", "teacher-00001.h5", "teacher-00001.h5.sha256",
        "teacher-00002.h5", "teacher-00002.h5.sha256", "unrelated.txt"]  # manifest, shard 3, own temp: gone
    assert [e["file"] for e in run.complete()] == ["teacher-00000.h5", "teacher-00001.h5", "teacher-00002.h5"]
    assert shards.existing_shard(tmp_path / "teacher-00001.h5", "new1")["n"] == 7
    # a shard of the right fingerprint but another size is not reused; a finished run keeps its manifest
    assert shards.ShardRun(tmp_path, "teacher", ["fp0"], "x", sizes=[4]).find_reusable() == [0]
    shards.write_manifest(tmp_path, "teacher", run.complete(), {0: 16}, fingerprint="run2", resolution=RES)
    again = shards.ShardRun(tmp_path, "teacher", ["fp0", "new1", "fp2"], "run2")
    assert again.find_reusable() == []
    again.start()
    assert (tmp_path / "manifest.json").exists() and again.complete() is not None


def _set(path: str, value):
    """A manifest edit: set (or, with value=_DEL, delete) the field at dotted ``path`` ("shards.0.n")."""
    def edit(m):
        *parents, last = path.split(".")
        for p in parents:
            m = m[int(p)] if isinstance(m, list) else m[p]
        key = int(last) if isinstance(m, list) else last
        if value is _DEL:
            del m[key]
        else:
            m[key] = value
    return edit


_DEL = object()


@pytest.mark.parametrize("edit, field", [
    (_set("shards", _DEL), "shards"),
    (_set("kind", _DEL), "kind"),
    (_set("shards", "teacher-00000.h5"), "'shards'"),
    (_set("shards.0", ["teacher-00000.h5"]), "'shards[0]'"),
    (_set("shards.1.file", 7), "'shards[1].file'"),
    (_set("shards.1.file", _DEL), "'shards[1].file'"),
    (_set("shards.0.n", -1), "'shards[0].n'"),
    (_set("shards.0.n", "5"), "'shards[0].n'"),
    (_set("shards.0.n", 5.0), "'shards[0].n'"),
    (_set("shards.0.n", True), "'shards[0].n'"),
    (_set("shards.0.n", 10 ** 12), "'shards[0].n'"),
    (_set("shards.2.sha256", "abc"), "'shards[2].sha256'"),
    (_set("shards.2.sha256", "G" * 64), "'shards[2].sha256'"),
    (_set("shards.0.bytes", -5), "'shards[0].bytes'"),
    (_set("n", "16"), "'n'"),
    (_set("n", 17), "'n'"),
    (_set("resolution", 10 ** 6), "'resolution'"),
    (_set("resolution", 0), "'resolution'"),
    (_set("kind", "fake"), "'kind'"),
    (_set("fingerprint", None), "'fingerprint'"),
    (_set("classes", "0-4"), "'classes'"),
    (_set("classes", [0, 1, 1000]), "'classes[2]'"),
    (_set("class_counts", [3, 4]), "'class_counts'"),
    (_set("class_counts.x", 1), "class_counts key 'x'"),
    (_set("format_version", "1"), "'format_version'"),
    (_set("teacher_sha256", "not-a-hash"), "'teacher_sha256'"),
    (lambda m: m["shards"].append(dict(m["shards"][0])), "'shards[3].file'"),  # listed twice
])
def test_malformed_manifest_is_one_line_naming_path_and_field(tmp_path, edit, field):
    make_teacher(tmp_path)
    mpath = tmp_path / "manifest.json"
    m = json.loads(mpath.read_text())
    edit(m)
    mpath.write_text(json.dumps(m))
    for read in (shards.read_manifest, shards.verify, shards.ShardDataset):
        with pytest.raises(TinyGANError) as e:
            read(tmp_path)
        msg = str(e.value)
        assert str(mpath) in msg and field in msg and "\n" not in msg, msg


@pytest.mark.parametrize("top", [[], "manifest", 3, None])
def test_manifest_top_level_not_an_object(tmp_path, top):
    make_teacher(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(top))
    with pytest.raises(TinyGANError, match="top level is a JSON .*expected an object") as e:
        shards.verify(tmp_path)
    assert str(tmp_path / "manifest.json") in str(e.value)


def test_manifest_shard_paths_stay_inside_the_directory(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    make_teacher(d)
    outside = tmp_path / "outside.h5"
    outside.write_bytes((d / "teacher-00000.h5").read_bytes())  # a valid shard, but not in the directory
    (d / "escape.h5").symlink_to(outside)
    (d / "inside.h5").symlink_to(d / "teacher-00000.h5")
    mpath = d / "manifest.json"
    good = json.loads(mpath.read_text())
    for name in ("../outside.h5", str(outside), "escape.h5", "sub/../../outside.h5", ""):
        m = json.loads(json.dumps(good))
        m["shards"][0]["file"] = name
        mpath.write_text(json.dumps(m))
        with pytest.raises(TinyGANError) as e:
            shards.verify(d)
        msg = str(e.value)
        assert "'shards[0].file'" in msg and str(mpath) in msg and repr(name) in msg and "\n" not in msg
    m = json.loads(json.dumps(good))
    m["shards"][0]["file"] = "inside.h5"  # a symlink that stays inside is fine
    mpath.write_text(json.dumps(m))
    assert shards.verify(d)["n"] == 16


# ---- the verify record: shards hashed once per file state -----------------------------------------------------

def _count_hashes(monkeypatch) -> list:
    calls = []
    real = shards.sha256_file
    monkeypatch.setattr(shards, "sha256_file", lambda p, *a: calls.append(Path(p).name) or real(p, *a))
    return calls


def _fresh_process(monkeypatch, tmp_path):
    """Forget this process's checksums (a new train / evaluate start); records live in tmp_path/records."""
    monkeypatch.setattr(shards, "_HASHES", {})
    monkeypatch.setenv(shards.RECORD_ENV, str(tmp_path / "records"))
    monkeypatch.delenv(shards.REHASH_ENV, raising=False)


def _verified(tmp_path, monkeypatch) -> Path:
    """A teacher shard dir verified once (its record written), then a fresh process."""
    d = tmp_path / "t"
    d.mkdir()
    make_teacher(d)
    _fresh_process(monkeypatch, tmp_path)
    shards.verify(d)
    _fresh_process(monkeypatch, tmp_path)
    return d


def test_verify_record_skips_unchanged_shards(tmp_path, monkeypatch):
    d = _verified(tmp_path, monkeypatch)
    record = shards.read_record(d)
    assert sorted(record) == ["teacher-00000.h5", "teacher-00001.h5", "teacher-00002.h5"]
    assert all(k == shards._stat_key((d / n).stat()) for n, (k, _) in record.items())
    calls = _count_hashes(monkeypatch)
    ds = shards.ShardDataset(d)  # a new start: nothing re-hashed, data still read right
    assert calls == [] and len(ds) == 16
    assert np.array_equal(ds.read([0, 15], raw=True)["z"], all_raw(d)["z"][[0, 15]])
    # forced re-verify: the argument, the environment variable and the CLI flag
    shards.verify(d, rehash=True)
    assert len(calls) == 3
    monkeypatch.setenv(shards.REHASH_ENV, "1")
    shards.ShardDataset(d)
    assert len(calls) == 6
    monkeypatch.delenv(shards.REHASH_ENV)
    from typer.testing import CliRunner

    from tinygan.cli import app
    res = CliRunner().invoke(app, ["verify", str(d), "--rehash"])
    assert res.exit_code == 0 and "rehashed" in res.output and len(calls) == 9


def test_verify_record_rehashes_a_changed_shard_and_catches_corruption(tmp_path, monkeypatch):
    d = _verified(tmp_path, monkeypatch)
    p = d / "teacher-00001.h5"
    st = p.stat()
    with h5py.File(p, "r") as f:
        pixel = f["images"].id.get_offset() + 3
    data = bytearray(p.read_bytes())
    data[pixel] ^= 0xFF
    p.write_bytes(bytes(data))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: ctime still tells
    _fresh_process(monkeypatch, tmp_path)
    calls = _count_hashes(monkeypatch)
    with pytest.raises(TinyGANError, match="checksum"):
        shards.ShardDataset(d)
    assert calls == ["teacher-00001.h5"]  # only the changed shard is read again
    p.write_bytes(bytes(data[:pixel]) + bytes([data[pixel] ^ 0xFF]) + bytes(data[pixel + 1:]))  # restored
    shards.verify(d)
    assert shards.read_record(d)["teacher-00001.h5"][0] == shards._stat_key(p.stat())


def test_verify_record_is_bounded_and_damage_only_costs_a_rehash(tmp_path, monkeypatch):
    d = _verified(tmp_path, monkeypatch)
    path = shards._record_path(d)
    assert path.parent == tmp_path / "records" and not any(d.glob("*record*"))  # outside the shard dir
    rec = json.loads(path.read_text())
    rec["shards"]["teacher-00000.h5"]["sha256"] = "0" * 64  # a lying record cannot pass a changed file...
    rec["shards"]["teacher-00000.h5"]["stat"][1] += 1  # ...its key no longer matches the file
    rec["shards"]["teacher-00002.h5"] = "garbage"
    path.write_text(json.dumps(rec))
    calls = _count_hashes(monkeypatch)
    _fresh_process(monkeypatch, tmp_path)
    shards.verify(d)
    assert sorted(calls) == ["teacher-00000.h5", "teacher-00002.h5"]
    path.write_bytes(b"{" * 100)
    assert shards.read_record(d) == {}
    monkeypatch.setattr(shards, "RECORD_MAX_FILES", 2)
    for i in range(4):
        shards.write_record(tmp_path / f"other{i}", {})
    assert len(list(path.parent.glob("*.json"))) == 2
