import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tinygan import classes, shards
from tinygan.errors import TinyGANError
from tinygan.prepare import center_crop_resize, prepare

RES = 16
C0, C1, C9 = classes.wnid_of(0), classes.wnid_of(1), classes.wnid_of(9)


def jpeg_bytes(img: Image.Image) -> bytes:
    b = io.BytesIO()
    img.save(b, "JPEG", quality=90)
    return b.getvalue()


def make_tree(root: Path) -> Path:
    """A tiny ImageNet-layout train dir with the awkward files real trees contain."""
    rng = np.random.default_rng(0)
    for wnid in (C0, C1, C9, classes.wnid_of(500)):
        (root / wnid).mkdir(parents=True)
    (root / "not_a_class").mkdir()
    (root / "LOC_train_solution.csv").write_text("ignored\n")
    # class 0: normal JPEGs plus every kind of awkward file
    for i in range(5):
        arr = rng.integers(0, 256, (24 + 4 * i, 36, 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / C0 / f"{C0}_{i:02d}.JPEG", quality=90)
    (root / C0 / f"{C0}_90_empty.JPEG").write_bytes(b"")
    data = jpeg_bytes(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    (root / C0 / f"{C0}_91_truncated.JPEG").write_bytes(data[: len(data) // 2])
    Image.new("L", (30, 20), 100).save(root / C0 / f"{C0}_92_gray.JPEG", "JPEG")
    Image.new("CMYK", (30, 20), (10, 20, 30, 40)).save(root / C0 / f"{C0}_93_cmyk.JPEG", "JPEG")
    Image.new("RGBA", (20, 30), (200, 10, 10, 255)).save(root / C0 / f"{C0}_94_png.JPEG", "PNG")
    (root / C0 / f"{C0}_95_text.JPEG").write_text("this is not an image\n")
    # class 1: a wide and a tall image whose centre square is one solid colour
    wide = np.zeros((32, 96, 3), np.uint8)
    wide[:, :32] = (0, 0, 255)
    wide[:, 32:64] = (255, 0, 0)
    wide[:, 64:] = (0, 0, 255)
    Image.fromarray(wide).save(root / C1 / f"{C1}_0_wide.png")
    tall = np.zeros((96, 32, 3), np.uint8)
    tall[:32] = (255, 255, 0)
    tall[32:64] = (0, 255, 0)
    tall[64:] = (255, 255, 0)
    Image.fromarray(tall).save(root / C1 / f"{C1}_1_tall.png")
    # class 9 and an unselected class: a few JPEGs
    for wnid in (C9, classes.wnid_of(500)):
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(root / wnid / f"{wnid}_{i}.JPEG")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("train"))


def run(tree, out, **kw):
    args = dict(classes=[0, 1, 9], max_per_class=None, resolution=RES, shard_size=4, workers=1, progress=False)
    args.update(kw)
    return prepare(tree, out, **args)


def files_of(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_prepare_output(tree, tmp_path):
    m = run(tree, tmp_path / "out")
    assert m["kind"] == "real" and m["resolution"] == RES
    assert m["files"] == 11 + 2 + 3
    assert m["skipped"] == {"empty": 1, "not_an_image": 1, "truncated": 1}
    assert {s["file"]: s["reason"] for s in m["skipped_files"]} == {
        f"{C0}/{C0}_90_empty.JPEG": "empty", f"{C0}/{C0}_91_truncated.JPEG": "truncated",
        f"{C0}/{C0}_95_text.JPEG": "not_an_image"}
    assert m["notes"] == {"format_PNG": 3, "mode_CMYK": 1, "mode_L": 1, "mode_RGBA": 1}
    assert m["class_counts"] == {"0": 8, "1": 2, "9": 3} and m["classes"] == [0, 1, 9] and m["n"] == 13
    assert m["ignored_dirs"] == {"count": 1, "examples": ["not_a_class"]}
    assert [s["file"] for s in m["shards"]] == [f"real-{k:05d}.h5" for k in range(4)]  # 16 files / 4
    assert shards.verify(tmp_path / "out", kind="real") == m

    ds = shards.ShardDataset(tmp_path / "out", fields=("images", "y", "names"))
    b = ds.read(range(len(ds)), raw=True)
    assert b["y"].tolist() == [0] * 8 + [1] * 2 + [9] * 3
    assert b["names"][:3] == [f"{C0}_00.JPEG", f"{C0}_01.JPEG", f"{C0}_02.JPEG"]
    assert b["names"][5:8] == [f"{C0}_92_gray.JPEG", f"{C0}_93_cmyk.JPEG", f"{C0}_94_png.JPEG"]
    assert b["images"].shape == (13, RES, RES, 3) and b["images"].dtype == np.uint8
    gray = b["images"][5]
    assert (gray == gray[..., :1]).all()  # grayscale -> equal RGB channels
    # centre crop: the wide image's middle square is red, the tall one's green
    assert (b["images"][8] == (255, 0, 0)).all()
    assert (b["images"][9] == (0, 255, 0)).all()
    # pixels match the reference preprocessing of the same file
    ref = center_crop_resize(Image.open(tree / C0 / f"{C0}_03.JPEG"), RES)
    np.testing.assert_array_equal(b["images"][3], ref)


def test_center_crop_resize_matches_manual_pil():
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (40, 75, 3), dtype=np.uint8))
    left = int(round((75 - 40) / 2.0))  # 17.5 -> 18 (round half to even, like torchvision)
    manual = img.crop((left, 0, left + 40, 40)).resize((RES, RES), Image.BILINEAR)
    np.testing.assert_array_equal(center_crop_resize(img, RES), np.asarray(manual))


def test_max_per_class(tree, tmp_path):
    m = run(tree, tmp_path / "out", max_per_class=2, classes=[1, 0])
    assert m["class_counts"] == {"0": 2, "1": 2} and m["files"] == 4 and m["max_per_class"] == 2
    assert m["skipped"] == {} and m["notes"] == {"format_PNG": 2}


def test_missing_class_dirs(tree, tmp_path):
    with pytest.raises(TinyGANError) as e:
        run(tree, tmp_path / "out", classes=[0, 2, 3])
    msg = str(e.value)
    assert classes.wnid_of(2) in msg and classes.wnid_of(3) in msg and str(tree) in msg
    assert "2 selected classes" in msg


def test_bad_arguments(tree, tmp_path):
    with pytest.raises(TinyGANError, match="does not exist"):
        run(tree / "nope", tmp_path / "out")
    with pytest.raises(TinyGANError, match="shard_size"):
        run(tree, tmp_path / "out", shard_size=0)
    with pytest.raises(TinyGANError, match="max_per_class"):
        run(tree, tmp_path / "out", max_per_class=0)
    with pytest.raises(TinyGANError, match="1000"):
        run(tree, tmp_path / "out", classes=[1000])


def test_deterministic_across_runs_and_worker_counts(tree, tmp_path):
    run(tree, tmp_path / "a", workers=1)
    run(tree, tmp_path / "b", workers=2)
    a, b = files_of(tmp_path / "a"), files_of(tmp_path / "b")
    assert a.keys() == b.keys() and "manifest.json" in a
    for name in a:
        assert a[name] == b[name], name


def test_resume_after_crash_gives_identical_bytes(tree, tmp_path, monkeypatch):
    run(tree, tmp_path / "ref")
    ref = files_of(tmp_path / "ref")
    out = tmp_path / "out"
    # 1) a run that dies while writing its third shard
    real_write = shards.write_shard
    calls = []

    def dying_write(path, arrays, attrs):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated crash")
        return real_write(path, arrays, attrs)

    monkeypatch.setattr(shards, "write_shard", dying_write)
    with pytest.raises(KeyboardInterrupt):
        run(tree, out)
    monkeypatch.setattr(shards, "write_shard", real_write)
    assert not (out / "manifest.json").exists()
    with pytest.raises(TinyGANError, match="manifest.json is missing"):
        shards.verify(out)
    # 2) what a kill -9 leaves: a stale temp file, a shard without its sidecar, a damaged shard
    (out / ".real-00002.h5.x1y2z3.tmp").write_bytes(b"half a shard")
    (out / "real-00001.h5.sha256").unlink()
    damaged = out / "real-00000.h5"
    damaged.write_bytes(damaged.read_bytes()[:100])
    m = run(tree, out)
    assert files_of(out) == ref
    assert shards.verify(out) == m


def test_rerun_reuses_and_changed_args_replace(tree, tmp_path):
    out = tmp_path / "out"
    run(tree, out)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("real-*.h5")}
    run(tree, out)
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("real-*.h5")}
    assert before == after  # nothing rewritten
    m = run(tree, out, max_per_class=1)  # fewer shards: stale ones go away
    assert sorted(p.name for p in out.glob("real-*")) == ["real-00000.h5", "real-00000.h5.sha256"]
    assert m["n"] == 3 and shards.verify(out) == m
    small = tmp_path / "fresh"
    run(tree, small, max_per_class=1)
    assert files_of(small) == files_of(out)


def save_jpegs(d: Path, names, seed=0):
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(d / name, "JPEG")


def test_missing_and_empty_classes_are_named_in_one_line(tmp_path):
    root = tmp_path / "train"
    save_jpegs(root / C0, ["a.JPEG"])
    (root / C1).mkdir()  # empty
    (root / C9).mkdir()
    (root / C9 / "README.txt").write_text("no images here\n")  # files, but none an image
    (root / C9 / "sub.JPEG").mkdir()  # a dir named like an image is not an image file either
    with pytest.raises(TinyGANError) as e:
        run(root, tmp_path / "out", classes=[0, 1, 9, 2])
    msg = str(e.value)
    assert "\n" not in msg and str(root) in msg and "3 selected classes have no images" in msg
    assert f"1 ({C1}: no image files)" in msg and f"9 ({C9}: no image files)" in msg
    assert f"2 ({classes.wnid_of(2)}: no class dir)" in msg
    assert f"0 ({C0}" not in msg
    assert not (tmp_path / "out").exists()  # failed before anything was written


def test_class_whose_files_all_fail_to_decode_is_named(tmp_path):
    root = tmp_path / "train"
    save_jpegs(root / C0, ["a.JPEG", "b.JPEG"])
    (root / C1).mkdir()
    (root / C1 / "x.JPEG").write_text("not an image")
    (root / C1 / "y.JPEG").write_bytes(b"")
    with pytest.raises(TinyGANError) as e:
        run(root, tmp_path / "out", classes=[0, 1])
    msg = str(e.value)
    assert "\n" not in msg and "1 selected classes have no images" in msg
    assert f"1 ({C1}: none readable, skipped empty=1 not_an_image=1)" in msg and f"0 ({C0}" not in msg


def test_undecodable_tree_leaves_previous_output_untouched(tree, tmp_path):
    out = tmp_path / "out"
    run(tree, out)
    before = files_of(out)
    bad = tmp_path / "bad"
    for wnid in (C0, C1, C9):
        (bad / wnid).mkdir(parents=True)
        for i in range(3):
            (bad / wnid / f"{wnid}_{i}.JPEG").write_bytes(b"garbage" * (i + 1))  # named like images, undecodable
    with pytest.raises(TinyGANError, match=r"none of the 9 files .* could be read \(\{'not_an_image': 9\}\)") as e:
        run(bad, out)
    assert "\n" not in str(e.value)
    assert files_of(out) == before  # manifest and every shard byte-identical
    for wnid in (C0, C1, C9):
        (tmp_path / "emptied" / wnid).mkdir(parents=True)
    with pytest.raises(TinyGANError, match="3 selected classes have no images"):  # emptied class dirs: likewise
        run(tmp_path / "emptied", out)
    assert files_of(out) == before


def test_undecodable_first_shard_is_held_back_not_fatal(tree, tmp_path):
    """A tree whose first shard has no readable image but later ones do is fine: same output as a fresh run."""
    root = tmp_path / "train"
    for i in range(4):
        (root / C0).mkdir(parents=True, exist_ok=True)
        (root / C0 / f"a{i}.JPEG").write_text("not an image")
    save_jpegs(root / C0, ["b0.JPEG", "b1.JPEG"])
    save_jpegs(root / C1, ["c0.JPEG"], seed=1)
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    run(tree, out)  # an earlier run's output, with more shards: replaced
    m = run(root, out, classes=[0, 1])
    assert m["class_counts"] == {"0": 2, "1": 1} and m["skipped"] == {"not_an_image": 4}
    assert [s["n"] for s in m["shards"]] == [0, 3] and shards.verify(out) == m
    run(root, fresh, classes=[0, 1])
    assert files_of(out) == files_of(fresh)
