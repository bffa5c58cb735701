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


# ---- other layouts: class folders (CIFAR-like), a flat folder; resolution from params -------------------------

CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def make_cifar_like(root: Path, per_class: int = 3) -> Path:
    """10 class folders of 32x32 PNGs (folder i's pixels are all near i * 20), a hidden dir, and bad files."""
    rng = np.random.default_rng(2)
    for i, name in enumerate(CIFAR):
        (root / name).mkdir(parents=True)
        for j in range(per_class):
            arr = (i * 20 + rng.integers(0, 10, (32, 32, 3))).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{j:04d}.png")
    (root / ".cache").mkdir()
    (root / "cat" / "zz_empty.png").write_bytes(b"")
    (root / "dog" / "zz_text.png").write_text("not an image\n")
    Image.new("RGB", (4, 7), (1, 2, 3)).save(root / "frog" / "zz_tiny.png")  # below 8 px: skipped
    return root


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    return make_cifar_like(tmp_path_factory.mktemp("cifar"))


def test_folders_tree_gives_class_ids_names_and_counts(cifar, tmp_path):
    m = run(cifar, tmp_path / "out", layout="folders", classes="all", resolution=32)
    assert m["resolution"] == 32 and m["layout"] == "folders" and m["source"] == "folders" and m["c_dim"] == 10
    assert m["class_names"] == {str(i): n for i, n in enumerate(CIFAR)}
    assert m["classes"] == list(range(10)) and m["class_counts"] == {str(i): 3 for i in range(10)}
    assert m["files"] == 33 and m["skipped"] == {"empty": 1, "not_an_image": 1, "too_small": 1}
    assert {s["file"] for s in m["skipped_files"]} == {"cat/zz_empty.png", "dog/zz_text.png", "frog/zz_tiny.png"}
    assert m["ignored_dirs"] == {"count": 1, "examples": [".cache"]}
    assert shards.verify(tmp_path / "out", kind="real") == m
    assert shards.class_names(m) == dict(enumerate(CIFAR))
    b = shards.ShardDataset(tmp_path / "out", fields=("images", "y", "names")).read(range(30), raw=True)
    assert b["y"].tolist() == [i for i in range(10) for _ in range(3)]
    assert b["names"][:3] == ["0000.png", "0001.png", "0002.png"]
    src = np.asarray(Image.open(cifar / "truck" / "0002.png"))
    np.testing.assert_array_equal(b["images"][29], src)  # 32 px source at resolution 32: the pixels themselves


def test_folders_select_classes_by_name_and_index(cifar, tmp_path):
    m = run(cifar, tmp_path / "out", layout="folders", classes=["cat", 0, "9"], resolution=32)
    assert m["classes"] == [0, 3, 9] and m["class_counts"] == {"0": 3, "3": 3, "9": 3}
    assert shards.class_names(m) == {0: "airplane", 3: "cat", 9: "truck"}
    assert m["class_names"]["5"] == "dog"  # the whole table: indices mean the same for every selection
    y = shards.ShardDataset(tmp_path / "out").labels().tolist()
    assert y == [0] * 3 + [3] * 3 + [9] * 3
    with pytest.raises(TinyGANError, match="'lion'"):
        run(cifar, tmp_path / "bad", layout="folders", classes=["lion"], resolution=32)
    with pytest.raises(TinyGANError, match="10"):
        run(cifar, tmp_path / "bad", layout="folders", classes=[10], resolution=32)
    assert not (tmp_path / "bad").exists()


def test_folders_class_without_images_is_named_in_one_line(tmp_path):
    root = tmp_path / "train"
    save_jpegs(root / "cat", ["a.jpg"])
    (root / "dog").mkdir()
    (root / "dog" / "notes.txt").write_text("no images\n")
    (root / "emu").mkdir()
    (root / "emu" / "x.png").write_text("garbage")
    with pytest.raises(TinyGANError) as e:
        run(root, tmp_path / "out", layout="folders", classes="all")
    msg = str(e.value)
    assert "\n" not in msg and "1 selected classes have no images: 1 (dog: no image files)" in msg
    assert "class-folder tree" in msg
    with pytest.raises(TinyGANError) as e:
        run(root, tmp_path / "out", layout="folders", classes=["cat", "emu"])
    assert "2 (emu: none readable, skipped not_an_image=1)" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_flat_folder_gives_unconditional_shards(cifar, tmp_path):
    m = run(cifar / "dog", tmp_path / "out", layout="flat", classes="ignored", resolution=16)
    assert m["c_dim"] == 0 and m["layout"] == "flat" and "class_names" not in m
    assert m["classes"] == [0] and m["class_counts"] == {"0": 3} and m["skipped"] == {"not_an_image": 1}
    assert shards.class_names(m) == {} and shards.verify(tmp_path / "out") == m
    b = shards.ShardDataset(tmp_path / "out", fields=("y", "names")).read(range(3), raw=True)
    assert b["y"].tolist() == [0, 0, 0] and b["names"] == ["0000.png", "0001.png", "0002.png"]
    with pytest.raises(TinyGANError, match=r"0 \(\.: no image files\)"):  # the root holds only class dirs
        run(cifar, tmp_path / "root", layout="flat", resolution=16)


def test_resolution_64_from_a_128_px_source_and_small_images_upscale(tmp_path):
    root = tmp_path / "train"
    (root / "big").mkdir(parents=True)
    (root / "small").mkdir()
    grad = np.broadcast_to(np.arange(0, 256, 2, dtype=np.uint8)[None, :, None], (128, 128, 3)).copy()
    Image.fromarray(grad).save(root / "big" / "a.png")
    Image.fromarray(np.full((8, 8, 3), (30, 60, 90), np.uint8)).save(root / "small" / "b.png")
    m = run(root, tmp_path / "out", layout="folders", classes="all", resolution=64)
    b = shards.ShardDataset(tmp_path / "out").read([0, 1], raw=True)["images"]
    assert m["resolution"] == 64 and b.shape == (2, 64, 64, 3)
    np.testing.assert_array_equal(b[0], np.asarray(Image.fromarray(grad).resize((64, 64), Image.BILINEAR)))
    row = b[0][32, :, 0].astype(int)
    assert (np.diff(row) >= 0).all() and row[0] < 8 and row[-1] > 247  # the gradient, halved
    assert (b[1] == (30, 60, 90)).all()  # an 8 px image upscales to the same colour


@pytest.mark.parametrize("kw,shown", [
    (dict(resolution=48), "power of two"), (dict(resolution=2048), "power of two"), (dict(resolution=4), "8-1024"),
    (dict(layout="coco"), "layout"),
])
def test_bad_resolution_and_layout(tree, tmp_path, kw, shown):
    with pytest.raises(TinyGANError, match=shown):
        run(tree, tmp_path / "out", **kw)


def test_imagenet_manifest_unchanged_by_layouts(tree, tmp_path):
    m = run(tree, tmp_path / "a")
    assert m["source"] == "imagenet-train" and not {"layout", "c_dim", "class_names"} & set(m)
    assert shards.class_names(m) == {0: "tench", 1: "goldfish", 9: "ostrich"}
    run(tree, tmp_path / "b", layout="imagenet")
    assert files_of(tmp_path / "a") == files_of(tmp_path / "b")


def test_selected_classes_per_layout(cifar, tree):
    from tinygan.prepare import folder_classes, selected_classes

    assert folder_classes(cifar) == CIFAR  # sorted, the hidden .cache left out
    assert selected_classes(cifar, ["dog", 1], "folders") == [1, 5]
    assert selected_classes(cifar, "all", "flat") == [0]
    assert selected_classes(tree, [C9, 1], "imagenet") == [1, 9]
    with pytest.raises(TinyGANError, match="0 class folders"):
        folder_classes(cifar / "cat")


def test_stages_select_folder_classes_by_name(cifar, monkeypatch):
    """sample and evaluate get class indices of a folders layout from prepare.param_classes, not the raw
    selection (names are not indices); the ImageNet selection passes through unchanged."""
    import stages.sample
    from tinygan import params, sample
    from tinygan.evaluate import EvalConfig
    from tinygan.prepare import param_classes

    p = params.load(Path(__file__).resolve().parents[1] / "params.yaml")
    assert param_classes(p) == p["classes"]  # ImageNet: already the sorted indices
    p["prepare"].update(layout="folders", imagenet_train=str(cifar))
    p["classes"] = ["dog", 1]
    assert param_classes(p) == [1, 5]
    assert EvalConfig.from_params(p).classes == (1, 5)
    got = {}
    monkeypatch.setattr(params, "load", lambda *a, **kw: p)
    monkeypatch.setattr(sample, "sample", lambda *a, **kw: got.update(kw))
    stages.sample.main(shard="")
    assert got["classes"] == [1, 5]


# ---- JPEG draft decoding (prepare.jpeg_draft) --------------------------------------------------------------

DRAFT_SIZES = [(375, 500), (500, 375), (333, 500), (350, 400), (900, 1200), (1066, 1600), (300, 450), (1500, 2000)]
DRAFT_MAX_DIFF, DRAFT_MEAN_DIFF = 40, 1.2  # the pinned tolerance (README "Shards")


def photo_jpeg(path: Path, rng: np.random.Generator, h: int, w: int) -> None:
    """A photo-like JPEG: smooth colour field, hard-edged patches, a fine texture, sensor noise."""
    low = rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)
    img = np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC), np.float32)
    for _ in range(6):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        img[y0:y0 + rng.integers(h // 8, h // 2), x0:x0 + rng.integers(w // 8, w // 2)] = rng.uniform(0, 255, 3)
    yy, xx = np.mgrid[0:h, 0:w]
    img += (25 * np.sin(xx / rng.uniform(2, 9)) * np.cos(yy / rng.uniform(2, 9)) * (xx > w // 2))[..., None]
    img += rng.normal(0, 3, img.shape)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=int(rng.integers(75, 96)))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d, rng = tmp_path_factory.mktemp("photos"), np.random.default_rng(0)
    for i, (h, w) in enumerate(DRAFT_SIZES):
        photo_jpeg(d / f"p{i}.JPEG", rng, h, w)
    Image.open(d / "p4.JPEG").convert("L").save(d / "gray.JPEG", quality=90)
    Image.open(d / "p5.JPEG").convert("CMYK").save(d / "cmyk.JPEG", quality=90)
    return d


@pytest.mark.parametrize("res", [32, 128, 256])
def test_jpeg_draft_stays_within_the_tolerance(photos, res):
    from tinygan.prepare import load_image

    diffs = []
    for p in sorted(photos.iterdir()):
        full, notes = load_image(str(p), res)
        fast, fast_notes = load_image(str(p), res, draft=True)
        assert fast.shape == full.shape == (res, res, 3) and fast_notes == notes  # mode notes: the file's own
        diffs.append(np.abs(full.astype(int) - fast))
        if min(Image.open(p).size) < 2 * res:  # no DCT scale fits: the very same pixels
            np.testing.assert_array_equal(fast, full)
    d = np.stack(diffs)
    assert d.max() <= DRAFT_MAX_DIFF and d.mean() <= DRAFT_MEAN_DIFF, (d.max(), d.mean())
    assert d.max() > 0  # the draft does change pixels here (else the test tests nothing)


def test_without_draft_the_bytes_are_todays(photos, tmp_path):
    from tinygan.prepare import load_image

    for p in sorted(photos.iterdir()):
        with Image.open(p) as im:
            im.load()
            np.testing.assert_array_equal(load_image(str(p), 128)[0], center_crop_resize(im, 128))
    tree = tmp_path / "train"
    (tree / C0).mkdir(parents=True)
    for i in range(2):
        (tree / C0 / f"{C0}_{i}.JPEG").write_bytes((photos / f"p{i}.JPEG").read_bytes())
    off = prepare(tree, tmp_path / "off", [0], None, 128, progress=False, workers=1)
    on = prepare(tree, tmp_path / "on", [0], None, 128, progress=False, workers=1, jpeg_draft=True)
    assert "jpeg_draft" not in off and on["jpeg_draft"] is True  # off: the manifest (and fingerprint) of old
    assert off["fingerprint"] != on["fingerprint"] and off["shards"][0]["sha256"] != on["shards"][0]["sha256"]
    again = prepare(tree, tmp_path / "off", [0], None, 128, progress=False, workers=1)
    assert again == off
