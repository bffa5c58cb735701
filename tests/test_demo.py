"""The offline demo world: fake BigGAN teacher (TF SavedModel / Hub interface) and the ImageNet-style tree."""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, UnidentifiedImageError

tf = pytest.importorskip("tensorflow")
hub = pytest.importorskip("tensorflow_hub")

from tinygan.demo.classes import DEMO_CLASSES, READABLE_BAD_KINDS, UNREADABLE_BAD_KINDS  # noqa: E402
from tinygan.demo.render import render, render_numpy  # noqa: E402
from tinygan.demo.teacher import save_teacher  # noqa: E402
from tinygan.demo.tree import make_tree  # noqa: E402
from tinygan.demo.world import build  # noqa: E402
from tinygan.errors import TinyGANError  # noqa: E402

WORLD_CLASSES = [1, 281, 388]  # goldfish, tabby, giant panda
IMAGES = 6


def _z(seed: int, n: int, truncation: float) -> np.ndarray:
    """The official teacher noise: truncation * truncated_normal(+-2)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal([n, 128])
    while (np.abs(z) > 2).any():
        bad = np.abs(z) > 2
        z[bad] = rng.standard_normal(int(bad.sum()))
    return (truncation * z).astype(np.float32)


def _onehot(classes) -> np.ndarray:
    y = np.zeros([len(classes), 1000], np.float32)
    y[np.arange(len(classes)), classes] = 1.0
    return y


def _run(fn, z, classes, truncation) -> np.ndarray:
    out = fn(z=tf.constant(z), y=tf.constant(_onehot(classes)), truncation=tf.constant(truncation, tf.float32))
    return out["default"].numpy()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_world")
    summary = build(root, WORLD_CLASSES, IMAGES, seed=0, min_side=48, max_side=128, progress=False)
    return root, summary


@pytest.fixture(scope="module")
def teacher(world):
    return hub.load(str(world[0] / "teacher")).signatures["default"]


# ------------------------------------------------------------------------------------------ teacher


def test_teacher_signature(teacher):
    args, kwargs = teacher.structured_input_signature
    assert not args
    assert set(kwargs) == {"z", "y", "truncation"}
    assert kwargs["z"].dtype == tf.float32 and kwargs["z"].shape.as_list() == [None, 128]
    assert kwargs["y"].dtype == tf.float32 and kwargs["y"].shape.as_list() == [None, 1000]
    assert kwargs["truncation"].dtype == tf.float32 and kwargs["truncation"].shape.as_list() == []
    out = teacher.structured_outputs
    assert set(out) == {"default"}
    assert out["default"].dtype == tf.float32 and out["default"].shape.as_list() == [None, 128, 128, 3]


def test_teacher_output_shape_and_range(teacher):
    classes = sorted(DEMO_CLASSES)
    img = _run(teacher, _z(0, len(classes), 0.5), classes, 0.5)
    assert img.shape == (len(classes), 128, 128, 3) and img.dtype == np.float32
    assert np.isfinite(img).all() and img.min() >= -1.0 and img.max() <= 1.0
    assert img.std() > 0.2  # real pictures, not a flat colour


def test_per_sample_bit_identical_across_batches(teacher):
    classes = [1, 9, 130, 207, 281, 291, 323, 388, 0, 500, 999, 1, 1, 388, 207, 42]
    z = _z(1, 16, 0.5)
    full = _run(teacher, z, classes, 0.5)
    five = _run(teacher, z[:5], classes[:5], 0.5)
    rev = _run(teacher, z[::-1], classes[::-1], 0.5)[::-1]
    assert np.array_equal(full[:5], five)
    assert np.array_equal(full, rev)
    for i in (0, 3, 8, 15):
        assert np.array_equal(full[i:i + 1], _run(teacher, z[i:i + 1], [classes[i]], 0.5))


def test_render_function_matches_teacher(teacher):
    """The tree and the teacher draw with the same `render` (eager here, saved graph there)."""
    classes = [9, 323, 7]
    z = _z(2, 3, 0.5)
    eager = render(z, _onehot(classes), 0.5, 128, 128).numpy()
    np.testing.assert_allclose(eager, _run(teacher, z, classes, 0.5), atol=1e-5)


def test_save_is_deterministic_and_replaces_atomically(world, teacher, tmp_path):
    path = tmp_path / "teacher"
    path.mkdir()
    (path / "stale.txt").write_text("old contents")
    save_teacher(path)
    assert (path / "saved_model.pb").is_file() and not (path / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher"]  # no temp dirs left behind
    again = hub.load(str(path)).signatures["default"]
    classes = [1, 291, 600]
    z = _z(3, 3, 0.5)
    assert np.array_equal(_run(teacher, z, classes, 0.5), _run(again, z, classes, 0.5))


def test_classes_differ(teacher):
    classes = sorted(DEMO_CLASSES)
    n = 6
    imgs = _run(teacher, np.concatenate([_z(10 + k, n, 0.5) for k in classes]), np.repeat(classes, n), 0.5)
    means = imgs.reshape(len(classes), n, -1).mean(axis=1)
    for i in range(len(classes)):
        for j in range(i + 1, len(classes)):
            assert np.abs(means[i] - means[j]).mean() > 0.1, (classes[i], classes[j])


def test_truncation_narrows_variety(teacher):
    n, cls = 12, [207] * 12
    var = {}
    for t in (0.1, 0.2, 1.0):
        var[t] = _run(teacher, _z(4, n, t), cls, t).var(axis=0).mean()
    assert var[0.1] < var[0.2] < 0.5 * var[1.0]
    assert var[0.1] < 0.01  # nearly alike


def test_unknown_classes_render(teacher):
    classes = [0, 2, 500, 999]
    z = _z(5, 4, 0.5)
    img = _run(teacher, z, classes, 0.5)
    assert np.isfinite(img).all() and img.min() >= -1.0 and img.max() <= 1.0
    assert np.array_equal(img, _run(teacher, z, classes, 0.5))
    same_z = _run(teacher, np.repeat(z[:1], 4, axis=0), classes, 0.5)
    assert all(np.abs(same_z[0] - same_z[k]).mean() > 0.02 for k in (1, 2, 3))  # palette follows the index


# ------------------------------------------------------------------------------------------ tree

FILE_RE = re.compile(r"^(n\d{8})_(\d+)\.JPEG$")


def test_tree_layout_and_sizes(world):
    root, summary = world
    train = root / "imagenet" / "train"
    assert sorted(p.name for p in train.iterdir()) == sorted(DEMO_CLASSES[k][0] for k in WORLD_CLASSES)
    sizes = []
    for cls in WORLD_CLASSES:
        wnid = DEMO_CLASSES[cls][0]
        good = sorted(p.name for p in (train / wnid).iterdir() if FILE_RE.match(p.name))
        assert good == sorted(f"{wnid}_{k}.JPEG" for k in range(IMAGES))
        assert summary[cls] == IMAGES
        for name in good:
            with Image.open(train / wnid / name) as im:
                assert im.format == "JPEG" and im.mode == "RGB"
                w, h = im.size
            assert 48 <= min(w, h) and max(w, h) <= 128
            assert 0.6 - 0.02 <= w / h <= 1.7 + 0.02
            sizes.append((w, h))
    assert len(set(sizes)) > len(sizes) // 2
    assert any(w > h for w, h in sizes) and any(w < h for w, h in sizes)


def test_bad_files(world):
    root, summary = world
    train = root / "imagenet" / "train"
    bad = summary["bad_files"]
    assert sorted(bad.values()) == sorted(READABLE_BAD_KINDS + UNREADABLE_BAD_KINDS)
    assert len({name.split("/")[0] for name in bad}) == len(WORLD_CLASSES)  # spread over the class dirs
    for name, kind in bad.items():
        path = train / name
        assert path.is_file() and path.suffix == ".JPEG"
        wnid, fname = name.split("/")
        assert fname.startswith(wnid + ("_notes" if kind == "text" else "_bad_"))
        if kind in READABLE_BAD_KINDS:
            with Image.open(path) as im:
                im.load()
                assert (im.format, im.mode) == {"grayscale": ("JPEG", "L"), "cmyk": ("JPEG", "CMYK"),
                                                "png": ("PNG", "RGB")}[kind]
                assert np.asarray(im.convert("RGB")).std() > 10
        else:
            if kind == "empty":
                assert path.stat().st_size == 0
            with pytest.raises((OSError, UnidentifiedImageError)):
                with Image.open(path) as im:
                    im.load()


def test_real_images_resemble_their_teacher_class(world, teacher):
    """Nearest teacher-class mean (32x32) classifies the tree's images correctly."""
    root, _ = world
    n = 8
    fake = _run(teacher, np.concatenate([_z(20 + k, n, 0.5) for k in WORLD_CLASSES]),
                np.repeat(WORLD_CLASSES, n), 0.5)
    fake = ((fake + 1) * 127.5).reshape(len(WORLD_CLASSES), n, 128, 128, 3)
    small = lambda a: np.asarray(Image.fromarray(a.astype(np.uint8)).resize((32, 32), Image.BILINEAR), np.float32)
    means = np.stack([np.mean([small(f) for f in cls_imgs], axis=0) for cls_imgs in fake])
    correct = total = 0
    for i, cls in enumerate(WORLD_CLASSES):
        wnid = DEMO_CLASSES[cls][0]
        for k in range(IMAGES):
            with Image.open(root / "imagenet" / "train" / wnid / f"{wnid}_{k}.JPEG") as im:
                w, h = im.size
                s = min(w, h)
                im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
                x = np.asarray(im.resize((32, 32), Image.BILINEAR), np.float32)
            correct += int(np.argmin(np.abs(means - x).mean(axis=(1, 2, 3))) == i)
            total += 1
    assert correct >= 0.9 * total


def test_tree_is_deterministic(tmp_path):
    a = make_tree(tmp_path / "a", [323], 3, seed=7, min_side=32, max_side=64, progress=False)
    b = make_tree(tmp_path / "b", [323], 3, seed=7, min_side=32, max_side=64, progress=False)
    c = make_tree(tmp_path / "c", [323], 3, seed=8, min_side=32, max_side=64, progress=False)
    assert a == b == c
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    first = "n02279972/n02279972_0.JPEG"
    assert (tmp_path / "a" / first).read_bytes() != (tmp_path / "c" / first).read_bytes()
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("kwargs, match", [
    (dict(classes=[5], images_per_class=2), "no demo wnid"),
    (dict(classes=[], images_per_class=2), "empty"),
    (dict(classes=[1, 1], images_per_class=2), "duplicates"),
    (dict(classes=[1], images_per_class=0), "at least 1"),
    (dict(classes=[1], images_per_class=2, min_side=100, max_side=50), "min_side"),
    (dict(classes=[1], images_per_class=2.5), "integer"),
])
def test_tree_rejects_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(TinyGANError, match=match):
        make_tree(tmp_path / "t", seed=0, progress=False, **kwargs)


def test_preview(world):
    root, _ = world
    with Image.open(root / "preview.png") as im:
        assert im.format == "PNG" and im.mode == "RGB"
        rows = len(WORLD_CLASSES)
        assert im.size == (2 * 6 * 64 + 8, rows * 64 + (rows - 1) * 2)


# ------------------------------------------------------------------------------------------ the whole stage

ROOT = Path(__file__).resolve().parents[1]


def _run_demo_stage(where: Path, hash_seed: str, **world) -> tuple[subprocess.CompletedProcess, Path]:
    """Run the demo stage (tiny params, updated by ``world``) in its own process, cwd ``where``, demo.root an
    absolute path in it."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    root = where / "somewhere" / "demo"
    params["demo"]["imagenet"].update(root=str(root), images_per_class=3, min_side=32, max_side=64, judge_epochs=2)
    params["demo"]["imagenet"].update(world)
    where.mkdir(parents=True, exist_ok=True)
    (where / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "stages.demo", "--world", "imagenet", "--params",
                          "params.yaml"], cwd=where, env=env, capture_output=True, text=True, timeout=600)
    return res, root


def _build_world_stage(where: Path, hash_seed: str) -> Path:
    res, root = _run_demo_stage(where, hash_seed)
    assert res.returncode == 0, res.stderr[-3000:]
    return root


def test_demo_stage_checks_its_world_params_in_one_line(tmp_path):
    """params.yaml's schema checks each value alone; the demo stage checks a world as a whole, before
    writing anything, and names the params key."""
    res, root = _run_demo_stage(tmp_path, "0", min_side=100, max_side=64)
    assert res.returncode == 2, res.stderr[-3000:]
    lines = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert lines == ["error: params 'demo.imagenet': min_side (100) must be at least 16 and at most max_side (64)"]
    assert not root.exists()


def _tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_demo_stage_is_byte_identical_across_runs_and_paths(tmp_path):
    """Two runs of the demo stage with the same params, in different absolute paths and processes with
    different string-hash seeds, write the same files with the same bytes: tree, teacher, judge, preview."""
    a = _build_world_stage(tmp_path / "first", "1")
    b = _build_world_stage(tmp_path / "second" / "deeper", "2")
    digest_a, digest_b = _tree_digest(a), _tree_digest(b)
    assert digest_a == digest_b
    assert {"judge.pt", "judge.json", "preview.png", "teacher/saved_model.pb"} <= set(digest_a)
    assert any(name.startswith("teacher/variables/") for name in digest_a)
    assert any(name.startswith("imagenet/train/") for name in digest_a)
    with zipfile.ZipFile(a / "judge.pt") as z:  # no source paths of this machine inside the judge
        assert not [n for n in z.namelist() if n.endswith(".debug_pkl")]
        assert all(str(ROOT).encode() not in z.read(n) and b"site-packages" not in z.read(n)
                   for n in z.namelist())
    assert str(tmp_path).encode() not in (a / "judge.pt").read_bytes()


def test_teacher_carries_its_description(world):
    """The procedural teacher says what it is (no published size) inside its SavedModel dir, where
    tinygan.teacher.describe (and so the sample stage's manifest) reads it."""
    from tinygan.demo.teacher import ABOUT
    from tinygan.teacher import DESCRIPTION, describe

    teacher_dir = world[0] / "teacher"
    assert (teacher_dir / DESCRIPTION).is_file()
    info = describe(str(teacher_dir), "tfhub")
    assert info == ABOUT and info["name"] == "procedural demo teacher"
    assert info["g_params"] is None and info["g_macs"] is None


def test_saved_teacher_bytes_do_not_depend_on_process_history(tmp_path):
    """Saving twice in one process (TF's function-name counter has moved on) gives the same files,
    and the result still loads through tinygan.teacher with the right signature and pictures."""
    from tinygan.teacher import load_teacher, quantize

    save_teacher(tmp_path / "one")
    render(_z(6, 2, 0.5), _onehot([9, 600]), 0.5, 40, 30)  # more tracing in between
    save_teacher(tmp_path / "two")
    assert _tree_digest(tmp_path / "one") == _tree_digest(tmp_path / "two")
    assert "saved_model.pb" in _tree_digest(tmp_path / "one")
    z, classes = _z(7, 3, 0.5), [1, 323, 600]
    got = quantize(load_teacher(str(tmp_path / "two"), "tfhub")(z, np.array(classes), 0.5))
    assert np.array_equal(got, render_numpy(z, classes, 0.5, 128, 128))


def test_judge_torchscript_bytes_are_stable_and_load():
    """The judge's TorchScript: same module -> same bytes, no debug records, loads and computes the same."""
    import io

    import torch

    from tinygan.io import torchscript_bytes
    from tinygan.demo.judge import JudgeNet

    torch.manual_seed(0)
    net = JudgeNet([1, 9, 130]).eval()
    data = torchscript_bytes(torch.jit.script(net))
    assert data == torchscript_bytes(torch.jit.script(net))
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = z.namelist()
    assert names and all(n.startswith("archive/") for n in names) and not any(n.endswith(".debug_pkl") for n in names)
    loaded = torch.jit.load(io.BytesIO(data))
    x = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
        assert torch.equal(loaded(x, return_features=True), net(x, return_features=True))
    assert loaded.imagenet_classes.tolist() == [1, 9, 130]
