"""Teacher adapters (TF-Hub/SavedModel, TorchScript), the description a teacher carries, truncated noise and
quantisation."""
import hashlib
import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from tinygan.errors import TinyGANError
from tinygan.io import sha256_file
from tinygan.teacher import (DESCRIPTION, PUBLISHED, content_hash, describe, draw_z, load_teacher, quantize,
                             resolve_latent, truncated_z, truncated_z_batch)
from toy_teachers import reference_images, save_tf1_hub_teacher, save_tf_teacher, save_torchscript_teacher


@pytest.fixture(scope="module")
def tf_teacher(tmp_path_factory):
    return save_tf_teacher(tmp_path_factory.mktemp("tf") / "teacher")


@pytest.fixture(scope="module")
def ts_teacher(tmp_path_factory):
    return save_torchscript_teacher(tmp_path_factory.mktemp("ts") / "teacher.pt")


def _inputs(n=5, seed=1):
    y = np.arange(n, dtype=np.int64) * 97 % 1000
    return truncated_z_batch(seed, y, np.arange(n), 0.5), y


# ---- truncated noise / quantisation ----

def test_truncated_z_range_and_determinism():
    z = truncated_z_batch(0, np.repeat(np.arange(4), 50), np.tile(np.arange(50), 4), 0.5)
    assert z.dtype == np.float32 and z.shape == (200, 128)
    assert np.abs(z).max() <= 2 * 0.5
    assert np.abs(z).max() > 0.9  # truncated at 2 std, not squeezed
    assert 0.35 < z.std() / 0.5 < 0.95  # std of N(0,1) truncated at +-2 is 0.88
    np.testing.assert_array_equal(truncated_z(0, 3, 7, 0.5), z[3 * 50 + 7])
    np.testing.assert_array_equal(truncated_z(0, 3, 7, 0.5), truncated_z(0, 3, 7, 0.5))
    assert not np.array_equal(truncated_z(0, 3, 7, 0.5), truncated_z(1, 3, 7, 0.5))
    assert not np.array_equal(truncated_z(0, 3, 7, 0.5), truncated_z(0, 4, 7, 0.5))
    assert not np.array_equal(truncated_z(0, 3, 7, 0.5), truncated_z(0, 3, 8, 0.5))
    np.testing.assert_allclose(truncated_z(0, 3, 7, 1.0) * 0.5, truncated_z(0, 3, 7, 0.5), rtol=1e-6)


def test_quantize_edges():
    # floor((x + 1) * 127.5 + 0.5): round half up, so 0 -> 127.5 -> 128.
    x = np.array([-1.0, 1.0, 0.0, -2.0, 2.0, np.nan, -1 + 0.5 / 127.5, -1 + 0.49 / 127.5], np.float32)
    np.testing.assert_array_equal(quantize(x), [0, 255, 128, 0, 255, 0, 1, 0])
    assert quantize(x).dtype == np.uint8


def test_quantize_matches_the_floor_formula_at_every_rounding_edge():
    """The fast path (clip, then the cast truncates) gives the bytes of floor((x + 1) * 127.5 + 0.5) clipped,
    computed step by step in float32, on random values and on the floats either side of every rounding edge;
    ``out`` gives the same bytes."""
    edges = (np.arange(256, dtype=np.float32) + np.float32(0.5)) / np.float32(127.5) - np.float32(1)
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0, -1.0, 1e30, -1e30], np.float32)
    x = np.concatenate([np.random.default_rng(0).uniform(-1.2, 1.2, 100_000).astype(np.float32),
                        np.nextafter(edges, np.float32(2)), np.nextafter(edges, np.float32(-2)), edges, special])
    with np.errstate(over="ignore"):
        v = np.add(x, np.float32(1.0), dtype=np.float32)
        v *= np.float32(127.5)
        v += np.float32(0.5)
        expect = np.minimum(np.fmax(np.floor(v), np.float32(0.0)), np.float32(255.0)).astype(np.uint8)
        np.testing.assert_array_equal(quantize(x), expect)
        out = np.full(x.shape, 7, np.uint8)
        assert quantize(x, out=out) is out
    np.testing.assert_array_equal(out, expect)


def test_quantize_in_range_takes_the_short_path_with_the_same_bytes():
    """Values whose (x + 1) * 127.5 + 0.5 lies in [0, 256) skip the clip and NaN passes: the bytes are still
    the floor formula's, up to the last float below 1 and down to -1; ``finite=True`` raises on NaN/inf only."""
    edges = (np.arange(255, dtype=np.float32) + np.float32(0.5)) / np.float32(127.5) - np.float32(1)
    x = np.concatenate([np.random.default_rng(1).uniform(-1, 1, 50_000).astype(np.float32), edges,
                        np.nextafter(edges, np.float32(2)), np.nextafter(edges, np.float32(-2)),
                        np.array([-1.0, 1.0, np.nextafter(np.float32(1), np.float32(2))], np.float32)])
    v = (x + np.float32(1)) * np.float32(127.5) + np.float32(0.5)
    assert v.min() >= 0 and v.max() < 256  # all on the short path
    expect = np.minimum(np.floor(v), np.float32(255.0)).astype(np.uint8)
    np.testing.assert_array_equal(quantize(x, finite=True), expect)
    assert quantize(np.array([1e30, -1e30], np.float32), finite=True).tolist() == [255, 0]  # finite: clipped
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="NaN or inf"):
            quantize(np.array([0.0, bad], np.float32), finite=True)
    assert quantize(np.array([0.0, np.nan], np.float32)).tolist() == [128, 0]  # not asked: NaN -> 0


def test_quantize_in_chunks_gives_the_bytes_of_one_pass(monkeypatch):
    """quantize works chunk by chunk (in cache): the bytes are the floor formula's whatever the chunk size,
    with a value out of range in a later chunk (after earlier chunks were written), a non-contiguous ``out`` or
    ``images``; ``finite`` still raises on a NaN in the last chunk."""
    from tinygan import teacher as teacher_mod

    x = np.random.default_rng(2).uniform(-1, 1, (7, 3, 50, 3)).astype(np.float32)  # 3,150 values
    v = (x + np.float32(1)) * np.float32(127.5) + np.float32(0.5)
    expect = np.minimum(np.floor(v), np.float32(255.0)).astype(np.uint8)
    monkeypatch.setattr(teacher_mod, "_QUANTIZE_CHUNK", 1000)
    np.testing.assert_array_equal(quantize(x), expect)
    wide = np.zeros((7, 3, 100, 3), np.uint8)
    assert quantize(x, out=wide[:, :, ::2]) is not None
    np.testing.assert_array_equal(wide[:, :, ::2], expect)
    np.testing.assert_array_equal(quantize(np.ascontiguousarray(x.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)),
                                  expect)  # strided images (generate's NCHW -> NHWC view)
    far = x.copy()
    far.reshape(-1)[2500] = 3.0  # in the third chunk: clipped to 255
    expect_far = expect.copy()
    expect_far.reshape(-1)[2500] = 255
    np.testing.assert_array_equal(quantize(far, finite=True), expect_far)
    far.reshape(-1)[3100] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        quantize(far, finite=True)
    expect_far.reshape(-1)[3100] = 0
    np.testing.assert_array_equal(quantize(far), expect_far)


# ---- TF-Hub / SavedModel adapter ----

def test_tfhub_savedmodel_roundtrip(tf_teacher):
    t = load_teacher(tf_teacher, "tfhub")
    assert (t.handle, t.z_dim, t.n_classes, t.resolution) == (tf_teacher, 128, 1000, 128)
    assert (t.c_dim, t.latent, resolve_latent("auto", t), resolve_latent("stylegan", t)) == (
        1000, "biggan", "biggan", "stylegan")
    with pytest.raises(TinyGANError, match=r"latent recipe 'normal' is unknown; expected auto or one of"):
        resolve_latent("normal", t)
    z, y = _inputs()
    out = t(z, y, 0.5)
    assert out.dtype == np.float32 and out.shape == (5, 128, 128, 3)
    np.testing.assert_allclose(out, reference_images(z, y, 0.5), atol=1e-5)
    t.max_batch = 2  # chunked calls give the same result
    np.testing.assert_array_equal(t(z, y, 0.5), out)


def test_tf1_hub_format_module(tmp_path):
    # BigGAN-deep-128 on TF-Hub is a TF1 Hub module: placeholders z, y, truncation; signature "default".
    t = load_teacher(save_tf1_hub_teacher(tmp_path / "hub1"), "tfhub")
    z, y = _inputs(3)
    np.testing.assert_allclose(t(z, y, 0.5), reference_images(z, y, 0.5), atol=1e-5)


@pytest.mark.parametrize("kwargs, words", [
    ({"z_dim": None}, "input 'z' has shape [None, None], expected [None, k] with the width k declared"),
    ({"truncation_input": False}, "has no input 'truncation'"),
    ({"out_key": "images"}, "has no output 'default'"),
])
def test_tfhub_wrong_signature(tmp_path, kwargs, words):
    path = save_tf_teacher(tmp_path / "bad", **kwargs)
    with pytest.raises(TinyGANError) as e:
        load_teacher(path, "tfhub")
    msg = str(e.value)
    assert words in msg and path in msg and "signature 'default'" in msg and "\n" not in msg


def test_tfhub_missing_path_and_not_a_savedmodel(tmp_path):
    with pytest.raises(TinyGANError, match="does not exist"):
        load_teacher(str(tmp_path / "nope"), "tfhub")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TinyGANError, match="cannot load as a SavedModel"):
        load_teacher(str(tmp_path / "empty"), "tfhub")
    with pytest.raises(TinyGANError, match="unknown teacher kind"):
        load_teacher(str(tmp_path), "onnx")


def _refused_url() -> str:
    """An http URL on a localhost port that refuses connections at once (bound, never listening)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _refused_url.sock = sock  # keep the port reserved for the test's lifetime
    return f"http://127.0.0.1:{sock.getsockname()[1]}/deepmind/biggan-deep-128/1"


def test_tfhub_offline_url_message_and_cache(tmp_path, monkeypatch, tf_teacher):
    cache = tmp_path / "hubcache"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    url = _refused_url()
    sha1 = hashlib.sha1(url.encode()).hexdigest()
    with pytest.raises(TinyGANError) as e:
        load_teacher(url, "tfhub")
    msg = str(e.value)
    assert "\n" not in msg and url in msg and "cannot fetch" in msg
    assert "TFHUB_CACHE_DIR" in msg and str(cache / sha1) in msg and "local SavedModel dir" in msg
    # The fix the message names works: pre-placing the module in <cache>/<sha1>/ loads it with no network.
    shutil.copytree(tf_teacher, cache / sha1)
    t = load_teacher(url, "tfhub")
    assert t.handle == url and t(*_inputs(2), 0.5).shape == (2, 128, 128, 3)


# ---- TorchScript adapter ----

def test_torchscript_roundtrip(ts_teacher, tf_teacher):
    t = load_teacher(ts_teacher, "torchscript", device="cpu")
    assert (t.handle, t.z_dim, t.n_classes, t.resolution) == (ts_teacher, 128, 1000, 128)
    assert (t.c_dim, t.latent) == (1000, "biggan")  # attribute-less: BigGAN-deep-128's shape and noise
    z, y = _inputs()
    out = t(z, y, 0.5)
    assert out.dtype == np.float32 and out.shape == (5, 128, 128, 3)  # NCHW -> NHWC
    np.testing.assert_allclose(out, reference_images(z, y, 0.5), atol=1e-5)
    np.testing.assert_allclose(out, load_teacher(tf_teacher)(z, y, 0.5), atol=1e-5)


def test_torchscript_bad_output_and_missing(tmp_path):
    path = save_torchscript_teacher(tmp_path / "small.pt", resolution=64)
    with pytest.raises(TinyGANError, match=r"returned \[1, 3, 64, 64\], expected \[1, 3, 128, 128\] .*BigGAN-deep-128's shape"):
        load_teacher(path, "torchscript")
    with pytest.raises(TinyGANError, match="does not exist"):
        load_teacher(str(tmp_path / "nope.pt"), "torchscript")
    (tmp_path / "junk.pt").write_bytes(b"not a torchscript file")
    with pytest.raises(TinyGANError, match="cannot load as TorchScript"):
        load_teacher(str(tmp_path / "junk.pt"), "torchscript")


# ---- any teacher: the shape a teacher declares, checked by a dry call ----

def _shape(t):
    return t.z_dim, t.c_dim, t.n_classes, t.resolution, t.latent


def test_torchscript_teacher_declares_its_shape(tmp_path):
    path = save_torchscript_teacher(tmp_path / "sg.pt", resolution=32,
                                    attrs={"z_dim": 512, "c_dim": 10, "img_resolution": 32})
    t = load_teacher(path, "torchscript", device="cpu")
    assert _shape(t) == (512, 10, 10, 32, "stylegan") and resolve_latent("auto", t) == "stylegan"
    y = np.array([0, 9, 3])
    z = draw_z("stylegan", 0, y, np.arange(3), 0.7, 512)
    np.testing.assert_allclose(t(z, y, 0.7), reference_images(z, y, 0.7, 32), atol=1e-5)
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 10\)"):
        t(z, np.array([0, 10, 3]), 0.7)


def test_unconditional_torchscript_teacher(tmp_path):
    path = save_torchscript_teacher(tmp_path / "u.pt", resolution=64,
                                    attrs={"z_dim": 16, "c_dim": 0, "img_resolution": 64})
    t = load_teacher(path, "torchscript", device="cpu")
    assert _shape(t) == (16, 0, 1, 64, "stylegan")
    z, y = draw_z("stylegan", 0, [0, 0], [0, 1], 1.0, 16), np.zeros(2, np.int64)  # the one class 0
    np.testing.assert_allclose(t(z, y, 1.0), reference_images(z, y, 1.0, 64), atol=1e-5)


def test_unconditional_tf_savedmodel(tmp_path):
    t = load_teacher(save_tf_teacher(tmp_path / "u", y_width=None, z_dim=20, resolution=32), "tfhub")
    assert _shape(t) == (20, 0, 1, 32, "biggan")
    z, y = truncated_z_batch(0, [0, 0], [0, 1], 0.5, 20), np.zeros(2, np.int64)
    np.testing.assert_allclose(t(z, y, 0.5), reference_images(z, y, 0.5, 32), atol=1e-5)


def test_tf_output_side_unknown_is_resolved_by_a_dry_call(tmp_path):
    path = save_tf_teacher(tmp_path / "dyn", y_width=10, z_dim=64, resolution=48, dynamic_output=True)
    t = load_teacher(path, "tfhub")
    assert _shape(t) == (64, 10, 10, 48, "biggan")
    z, y = truncated_z_batch(0, [2, 7], [0, 1], 0.5, 64), np.array([2, 7])
    np.testing.assert_allclose(t(z, y, 0.5), reference_images(z, y, 0.5, 48), atol=1e-5)


DECLARED = {"z_dim": 512, "c_dim": 10, "img_resolution": 32}


@pytest.mark.parametrize("kwargs, words", [
    ({"resolution": 64}, r"returned \[1, 3, 64, 64\], expected \[1, 3, 32, 32\] \(the resolution is 32\)"),
    ({"width": 48}, r"returned \[1, 3, 32, 48\], expected \[1, 3, 32, 32\] \(32x48 is not square\)"),
    ({"channels": 1}, r"returned \[1, 1, 32, 32\], expected \[1, 3, 32, 32\] \(1 channels, not RGB\)"),
    ({"scale": 3.0}, r"returned values up to 2\.\d+ .*expected images in \[-1, 1\]"),
    ({"attrs": {**DECLARED, "c_dim": -1}}, r"attributes .* must all be integers"),
    ({"attrs": {"z_dim": 512}}, r"attributes .* must all be integers"),
])
def test_a_teacher_that_lies_is_one_line(tmp_path, kwargs, words):
    path = save_torchscript_teacher(tmp_path / "liar.pt", **{"resolution": 32, "attrs": DECLARED, **kwargs})
    with pytest.raises(TinyGANError, match=words) as e:
        load_teacher(path, "torchscript", device="cpu")
    assert "\n" not in str(e.value) and path in str(e.value)


@pytest.mark.parametrize("shape", [[None, 32, 48, 3], [None, 32, 32, 1]])
def test_a_savedmodel_declaring_a_non_square_or_non_rgb_output_is_one_line(tmp_path, shape):
    import tensorflow as tf

    fn = tf.function(lambda z, truncation: {"default": tf.zeros([tf.shape(z)[0]] + shape[1:]) + truncation},
                     input_signature=[tf.TensorSpec([None, 8], tf.float32), tf.TensorSpec([], tf.float32)])
    module = tf.Module()
    module.fn = fn
    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"default": fn.get_concrete_function()})
    with pytest.raises(TinyGANError, match=rf"output 'default' has shape \[None, 32, {shape[2]}, {shape[3]}\], "
                                           r"expected \[None, R, R, 3\] \(square RGB, NHWC\)") as e:
        load_teacher(str(tmp_path / "m"), "tfhub")
    assert "\n" not in str(e.value)


@pytest.mark.filterwarnings("ignore:Converting a tensor to a Python boolean")  # StyleGAN's own `if psi != 1`
def test_the_documented_stylegan2_ada_wrapper_works(tmp_path, monkeypatch):
    """The README's wrapping code ("Your own teacher"), run on a stand-in for a StyleGAN2-ADA ``G``."""
    import importlib

    import torch

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = readme.split("**A StyleGAN2-ADA pickle's `G`**")[1].split("```python\n", 1)[1].split("```", 1)[0]
    load = 'with open("network.pkl", "rb") as f:\n    G = pickle.load(f)["G_ema"].eval().requires_grad_(False)\n'
    assert load in code  # the user's weights: replaced by the stand-in
    (tmp_path / "wrap_sg.py").write_text(code.replace(load, "G = toy_teachers.stand_in_stylegan()\n")
                                         .replace("import pickle, torch", "import torch\nimport toy_teachers"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    G = importlib.import_module("wrap_sg").G  # runs the snippet: writes teacher.pt
    t = load_teacher(str(tmp_path / "teacher.pt"), "torchscript", device="cpu")
    assert _shape(t) == (8, 4, 4, 16, "stylegan")
    y = np.array([1, 3])
    z = draw_z("stylegan", 0, y, [0, 1], 0.6, 8)
    c = torch.nn.functional.one_hot(torch.from_numpy(y), 4).float()
    want = G.synthesis(G.mapping(torch.from_numpy(z), c, truncation_psi=0.6)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(t(z, y, 0.6), want, atol=1e-6)  # psi reaches the mapping


def test_draw_z_recipes():
    classes, idxs = np.repeat(np.arange(4), 100), np.tile(np.arange(100), 4)
    big = draw_z("biggan", 3, classes, idxs, 0.5, 64)
    np.testing.assert_array_equal(big, truncated_z_batch(3, classes, idxs, 0.5, 64))  # one recipe, one code
    sg = draw_z("stylegan", 3, classes, idxs, 0.5, 64)
    assert sg.dtype == np.float32 and sg.shape == (400, 64)
    assert np.abs(sg).max() > 2.5 and 0.95 < sg.std() < 1.05  # standard normal, not truncated, not scaled
    np.testing.assert_array_equal(sg, draw_z("stylegan", 3, classes, idxs, 1.0, 64))  # psi goes to the teacher
    np.testing.assert_array_equal(sg[[5]], draw_z("stylegan", 3, [0], [5], 0.5, 64))  # per (seed, class, index)
    assert not np.array_equal(sg, draw_z("stylegan", 4, classes, idxs, 0.5, 64))
    with pytest.raises(TinyGANError, match="latent recipe 'gauss' is unknown"):
        draw_z("gauss", 0, [0], [0], 0.5)


# ---- content hash ----

def _tree(root, files: dict) -> str:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return str(root)


TREE = {"saved_model.pb": b"graph", "variables/variables.index": b"idx", "variables/variables.data-0": b"w" * 3000}


def test_content_hash_of_a_file_and_a_dir(tmp_path, ts_teacher):
    assert content_hash(ts_teacher, "torchscript") == sha256_file(ts_teacher)
    a = _tree(tmp_path / "a", TREE)
    h = content_hash(a, "tfhub")
    assert len(h) == 64 and h == content_hash(_tree(tmp_path / "copy", TREE))  # the content, not the path
    changed = [
        {**TREE, "variables/variables.data-0": b"w" * 2999 + b"x"},  # one byte of one file
        {**TREE, "assets/vocab.txt": b""},  # an extra (even empty) file
        {k.replace("variables.index", "variables.idx"): v for k, v in TREE.items()},  # a rename
    ]
    for i, files in enumerate(changed):
        assert content_hash(_tree(tmp_path / f"c{i}", files), "tfhub") != h, files.keys()
    # one line per file "path\0file\0sha256", sorted, hashed: a documented, reproducible definition
    lines = sorted(f"{rel}\0file\0{hashlib.sha256(data).hexdigest()}\n" for rel, data in TREE.items())
    assert h == hashlib.sha256("".join(lines).encode()).hexdigest()


def test_content_hash_symlinks_must_stay_inside(tmp_path):
    root = tmp_path / "model"
    _tree(root, TREE)
    (tmp_path / "secret").write_bytes(b"outside")
    h = content_hash(str(root))
    (root / "inside_link").symlink_to(root / "saved_model.pb")
    assert content_hash(str(root)) != h  # an inside link is fine, and part of the content
    for name, target in [("escape", tmp_path / "secret"), ("up", tmp_path), ("dangling", root / "gone")]:
        link = root / "variables" / name
        link.symlink_to(target)
        with pytest.raises(TinyGANError, match=f"variables/{name} is a symlink") as e:
            content_hash(str(root))
        assert "\n" not in str(e.value)
        link.unlink()
    # the handle itself may be a symlink to the dir
    (tmp_path / "alias").symlink_to(root)
    assert content_hash(str(tmp_path / "alias")) == content_hash(str(root))


def test_content_hash_errors(tmp_path):
    with pytest.raises(TinyGANError, match="TorchScript file does not exist"):
        content_hash(str(tmp_path / "nope.pt"), "torchscript")
    with pytest.raises(TinyGANError, match="local SavedModel dir does not exist"):
        content_hash(str(tmp_path / "nope"), "tfhub")
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(TinyGANError, match="is not a directory"):
        content_hash(str(tmp_path / "file"), "tfhub")
    with pytest.raises(TinyGANError, match="unknown teacher kind"):
        content_hash(str(tmp_path / "file"), "onnx")


def test_content_hash_of_a_tfhub_url_is_that_of_its_cached_module(tmp_path, monkeypatch):
    cache = tmp_path / "hubcache"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    url = _refused_url()
    with pytest.raises(TinyGANError, match="cannot fetch the TF-Hub module") as e:
        content_hash(url, "tfhub")
    assert "\n" not in str(e.value)
    module = cache / hashlib.sha1(url.encode()).hexdigest()
    _tree(module, TREE)
    assert content_hash(url, "tfhub") == content_hash(_tree(tmp_path / "local", TREE), "tfhub")


# ---- description: what a teacher says about itself ----

MINE = {"name": "my BigGAN copy", "g_params": 50_400_000, "g_macs": None, "source": "counted by me"}
UNKNOWN = {"g_params": None, "g_macs": None, "source": "unknown teacher, n/a"}


def test_a_savedmodel_dir_carries_its_description(tmp_path, tf_teacher):
    d = tmp_path / "biggan-deep-128"  # the path says nothing: without a description the teacher is unknown
    shutil.copytree(tf_teacher, d)
    assert describe(str(d), "tfhub") == {"name": str(d), **UNKNOWN}
    before = content_hash(str(d), "tfhub")
    (d / DESCRIPTION).write_text(json.dumps(MINE))
    assert describe(str(d), "tfhub") == MINE
    assert content_hash(str(d), "tfhub") != before  # the description is part of the teacher: a change re-samples
    z, y = _inputs(2)
    assert load_teacher(str(d), "tfhub")(z, y, 0.5).shape == (2, 128, 128, 3)


def test_a_torchscript_file_carries_its_description_as_an_extra_file(tmp_path, ts_teacher):
    import torch

    assert describe(ts_teacher, "torchscript") == {"name": ts_teacher, **UNKNOWN}
    path = tmp_path / "teacher.pt"
    torch.jit.save(torch.jit.load(ts_teacher), str(path), _extra_files={DESCRIPTION: json.dumps(MINE)})
    assert describe(str(path), "torchscript") == MINE
    z, y = _inputs(2)
    np.testing.assert_array_equal(load_teacher(str(path), "torchscript")(z, y, 0.5),
                                  load_teacher(ts_teacher, "torchscript")(z, y, 0.5))


def test_known_handles_have_published_figures_and_nothing_is_fetched(monkeypatch):
    monkeypatch.setattr(socket, "socket", None)  # any network use would fail
    url = "https://tfhub.dev/deepmind/biggan-deep-128/1"
    assert describe(url, "tfhub") == describe(url + "/", "tfhub") == PUBLISHED[url]
    assert PUBLISHED[url]["g_params"] == 50_400_000 and PUBLISHED[url]["g_macs"] == 8_320_000_000
    other = "https://tfhub.dev/deepmind/biggan-deep-256/1"
    assert describe(other, "tfhub") == {"name": other, **UNKNOWN}


@pytest.mark.parametrize("text", [
    "not json",
    json.dumps({k: v for k, v in MINE.items() if k != "source"}),
    json.dumps({**MINE, "g_params": "50.4M"}),
    json.dumps({**MINE, "g_macs": True}),
    json.dumps({**MINE, "name": " "}),
    json.dumps({**MINE, "extra": 1}),
    json.dumps([MINE]),
])
def test_a_malformed_description_is_one_line(tmp_path, text):
    (tmp_path / DESCRIPTION).write_text(text)
    with pytest.raises(TinyGANError, match=f"{DESCRIPTION} is not a description") as e:
        describe(str(tmp_path), "tfhub")
    assert "\n" not in str(e.value)
