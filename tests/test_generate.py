"""generate: grids / single PNGs / interpolation sheets from every exported model format; bad inputs."""
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tinygan import export as ex
from tinygan import generate as gen
from tinygan.errors import TinyGANError
from tinygan.train import save_generator

from conftest import random_generator

REPO = Path(__file__).resolve().parents[1]
CLASSES = [1, 9, 207]
R = 128



@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """An exported tiny (ch=4) generator with random weights and BN statistics: the export directory."""
    root = tmp_path_factory.mktemp("gen")
    G = random_generator()
    src = root / "train.safetensors"
    save_generator(G, src)
    ex.export(str(src), str(root / "model"), CLASSES, None, None, None, None)
    return root / "model"


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_grid_from_safetensors_is_deterministic(model, tmp_path):
    files = gen.generate(str(model / "generator.safetensors"), str(tmp_path / "a.png"),
                         ["207", "n01443537", "Ostrich"], n=2, truncation=0.5, seed=3)
    assert files == [str(tmp_path / "a.png")]
    img = png(files[0])
    assert img.shape == (3 * R, 2 * R, 3) and img.dtype == np.uint8
    again = gen.generate(str(model / "generator.safetensors"), str(tmp_path / "b.png"),
                         ["golden_retriever", "goldfish", "n01518878"], n=2, truncation=0.5, seed=3)
    assert Path(again[0]).read_bytes() == Path(files[0]).read_bytes()  # index, wnid and name agree
    other = gen.generate(str(model / "generator.safetensors"), str(tmp_path / "c.png"),
                         ["207", "n01443537", "Ostrich"], n=2, truncation=0.5, seed=4)
    assert Path(other[0]).read_bytes() != Path(files[0]).read_bytes()


def test_rows_do_not_depend_on_other_classes(model, tmp_path):
    both = png(gen.generate(str(model / "generator.safetensors"), str(tmp_path / "a.png"), ["1", "207"],
                            n=2, truncation=0.5, seed=0)[0])
    one = png(gen.generate(str(model / "generator.safetensors"), str(tmp_path / "b.png"), ["207"],
                           n=2, truncation=0.5, seed=0)[0])
    assert np.array_equal(both[R:], one)


def test_individual_pngs(model, tmp_path):
    out = tmp_path / "imgs"
    files = gen.generate(str(model / "generator.safetensors"), str(out), ["207", "1"], n=2, truncation=0.4,
                         seed=0, grid=False)
    assert sorted(Path(f).name for f in files) == sorted(
        ["n02099601_0.png", "n02099601_1.png", "n01443537_0.png", "n01443537_1.png"])
    assert all(png(f).shape == (R, R, 3) for f in files)
    grid = gen.generate(str(model / "generator.safetensors"), str(out), ["207", "1"], n=2, truncation=0.4, seed=0)
    assert grid == [str(out / "grid.png")]
    g = png(grid[0])
    assert np.array_equal(g[:R, R:], png(out / "n02099601_1.png"))


def test_onnx_without_torch(model, tmp_path):
    """The ONNX path runs on onnxruntime alone and matches the safetensors model."""
    onnx_png, st_png = tmp_path / "onnx.png", tmp_path / "st.png"
    code = textwrap.dedent(f"""
        import sys
        from tinygan.generate import generate
        generate({str(model / 'generator.onnx')!r}, {str(onnx_png)!r}, ['207', 'goldfish'], 3, 0.5, 7)
        generate({str(model / 'generator.onnx')!r}, {str(tmp_path / 'seeds.png')!r}, ['207'], 1, 0.5, 0,
                 interpolate='seeds:1,2', steps=3)
        assert 'torch' not in sys.modules, 'torch was imported'
        print('ok')
    """)
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr
    gen.generate(str(model / "generator.safetensors"), str(st_png), ["207", "goldfish"], 3, 0.5, 7)
    a, b = png(onnx_png).astype(int), png(st_png).astype(int)
    assert a.shape == (2 * R, 3 * R, 3) and np.abs(a - b).max() <= 1
    assert png(tmp_path / "seeds.png").shape == (R, 3 * R, 3)


def test_config_from_embedded_metadata(model, tmp_path):
    # a model file copied without its config.json still works: the config is embedded in the file
    for name in ("generator.onnx", "generator.safetensors"):
        (tmp_path / name).write_bytes((model / name).read_bytes())
        cfg = gen.read_config(tmp_path / name)
        assert cfg["classes"] == CLASSES and cfg["ch"] == 4


def test_class_names():
    names = gen.class_names()
    assert gen.resolve_class("207", names=names) == 207
    assert gen.resolve_class("n02099601", names=names) == 207
    for s in ("golden_retriever", "golden retriever", "Golden Retriever", " GOLDEN-retriever "):
        assert gen.resolve_class(s, names=names) == 207
    with pytest.raises(TinyGANError, match=r"ambiguous.*134.*517"):  # 'crane': the bird and the machine
        gen.resolve_class("crane", names=names)
    with pytest.raises(TinyGANError, match=r"unknown class 'golden retreiver'.*did you mean.*207 \(golden retriever\)"):
        gen.resolve_class("golden retreiver", names=names)
    with pytest.raises(TinyGANError, match="out of range"):
        gen.resolve_class("1000", names=names)
    with pytest.raises(TinyGANError, match="not one of the 1000"):
        gen.resolve_class("n99999999", names=names)


def test_demo_class_names_come_from_the_one_class_table():
    """`tinygan generate -c goldfish` works through the core table (imagenet_wnids.txt), not the demo package."""
    from tinygan.demo.classes import DEMO_CLASSES

    names = gen.class_names()
    for index, (wnid, name) in DEMO_CLASSES.items():
        assert gen.resolve_class(name, names=names) == gen.resolve_class(wnid, names=names) == index, name


def test_synset_mapping_file(tmp_path):
    f = tmp_path / "LOC_synset_mapping.txt"
    f.write_text("n01440764 tench, Tinca tinca\nn02099601 golden retriever\n")
    names = gen.class_names(str(f))
    assert gen.resolve_class("tinca tinca", names=names) == 0
    assert gen.resolve_class("Tinca_tinca", names=names) == 0
    bad = tmp_path / "bad.txt"
    bad.write_text("n01440764 tench\nxyz\n")
    with pytest.raises(TinyGANError, match=r"bad.txt:2"):
        gen.class_names(str(bad))
    with pytest.raises(TinyGANError, match="does not exist"):
        gen.class_names(str(tmp_path / "nope.txt"))


def test_untrained_class_warns(model, tmp_path, capfd):
    files = gen.generate(str(model / "generator.safetensors"), str(tmp_path / "g.png"), ["5"], 1, 0.5, 0)
    assert len(files) == 1
    assert "warning: class 5" in capfd.readouterr().err


@pytest.mark.parametrize("truncation", [0.0, 1.5, -0.5, float("nan")])
def test_bad_truncation(model, tmp_path, truncation):
    with pytest.raises(TinyGANError, match=r"truncation is .*, expected a number in \[0.02, 1.0\]"):
        gen.generate(str(model / "generator.safetensors"), str(tmp_path / "g.png"), ["207"], 1, truncation, 0)


def test_unknown_class(model, tmp_path):
    with pytest.raises(TinyGANError, match="unknown class 'golden retreiver'"):
        gen.generate(str(model / "generator.onnx"), str(tmp_path / "g.png"), ["golden retreiver"], 1, 0.5, 0)
    assert not (tmp_path / "g.png").exists()


def test_missing_model(tmp_path):
    with pytest.raises(TinyGANError, match=r"model file .*nope.onnx does not exist"):
        gen.generate(str(tmp_path / "nope.onnx"), str(tmp_path / "g.png"), ["207"], 1, 0.5, 0)
    with pytest.raises(TinyGANError, match=r"must be a file the export writes: generator\.safetensors / "
                                           r"\.torchscript\.pt / \.onnx .* / \.openvino\.xml"):
        gen.generate(str(tmp_path / "model.pth"), str(tmp_path / "g.png"), ["207"], 1, 0.5, 0)


@pytest.mark.parametrize("name", ["generator.safetensors", "generator.onnx"])
def test_corrupt_model(model, tmp_path, name):
    data = (model / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])  # truncated, no config.json beside it
    with pytest.raises(TinyGANError, match=rf"model file .*{name} is corrupt"):
        gen.generate(str(tmp_path / name), str(tmp_path / "g.png"), ["207"], 1, 0.5, 0)
    # with its config.json beside it the weights are still read (and found corrupt)
    (tmp_path / "config.json").write_bytes((model / "config.json").read_bytes())
    with pytest.raises(TinyGANError, match=rf"model file .*{name} is corrupt"):
        gen.generate(str(tmp_path / name), str(tmp_path / "g.png"), ["207"], 1, 0.5, 0)


def test_unwritable_output(model, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a regular file")
    with pytest.raises(TinyGANError, match="cannot create output directory"):
        gen.generate(str(model / "generator.onnx"), str(blocker / "out"), ["207"], 1, 0.5, 0, grid=False)
    with pytest.raises(TinyGANError, match="cannot create output directory"):
        gen.generate(str(model / "generator.onnx"), str(blocker / "g.png"), ["207"], 1, 0.5, 0)
    with pytest.raises(TinyGANError, match="need a directory"):
        gen.generate(str(model / "generator.onnx"), str(tmp_path / "g.png"), ["207"], 1, 0.5, 0, grid=False)


def test_forward_with_embedding_is_the_generator(model):
    G = gen.load_generator(model / "generator.safetensors")
    z, y = torch.randn(3, 128) * 0.5, torch.tensor([1, 9, 207])
    with torch.no_grad():
        assert torch.equal(gen.forward_with_embedding(G, z, G.embedding(y)), G(z, y))


def test_interpolation_sheets(model, tmp_path):
    st = str(model / "generator.safetensors")
    files = gen.generate(st, str(tmp_path), [], n=2, truncation=0.5, seed=0, interpolate="classes:goldfish,207",
                         steps=4)
    assert files == [str(tmp_path / "interp_classes_1_207.png")]
    sheet = png(files[0])
    assert sheet.shape == (2 * R, 4 * R, 3)
    # endpoints are the plain generator at the two classes with the row's z
    G = gen.load_generator(st)
    z = torch.from_numpy(np.stack([gen.draw_z(0, 0.5), gen.draw_z(1, 0.5)]))
    with torch.no_grad():
        left = gen.to_uint8(G(z, torch.tensor([1, 1])).numpy())
        right = gen.to_uint8(G(z, torch.tensor([207, 207])).numpy())
    assert np.abs(sheet[R:, :R].astype(int) - left[1]).max() <= 1
    assert np.abs(sheet[:R, 3 * R:].astype(int) - right[0]).max() <= 1

    files = gen.generate(st, str(tmp_path / "s.png"), ["207", "9", "1"], n=1, truncation=0.5, seed=0,
                         interpolate="seeds:5,6", steps=3)
    assert png(files[0]).shape == (3 * R, 3 * R, 3)
    # the reusable function takes a torch Generator directly (the evaluate stage's Fig. 10)
    assert gen.interpolation_sheet(G, "seeds", 5, 6, [207, 9, 1], steps=3).shape == (3 * R, 3 * R, 3)
    assert np.array_equal(gen.interpolation_sheet(G, "seeds", 5, 6, [207, 9, 1], steps=3), png(files[0]))
    assert gen.interpolation_sheet(G, "classes", 1, 207, [0], steps=5).shape == (R, 5 * R, 3)


def test_interpolation_errors(model, tmp_path):
    with pytest.raises(TinyGANError, match="use the exported generator.safetensors"):
        gen.generate(str(model / "generator.onnx"), str(tmp_path), [], 1, 0.5, 0, interpolate="classes:1,2")
    for spec in ("classes:1", "between:1,2", "seeds:a,b"):
        with pytest.raises(TinyGANError, match="interpolate"):
            gen.generate(str(model / "generator.onnx"), str(tmp_path), ["1"], 1, 0.5, 0, interpolate=spec)
    with pytest.raises(TinyGANError, match="steps"):
        gen.generate(str(model / "generator.onnx"), str(tmp_path), ["1"], 1, 0.5, 0, interpolate="seeds:1,2",
                     steps=1)


# ---- exported config.json is validated before anything is allocated (issue 8) ----------------------------------

BAD_CONFIGS = {
    "n_classes float": ({"n_classes": 1e9}, "n_classes must be an integer in 0-100000"),
    "n_classes huge": ({"n_classes": 10 ** 9}, "n_classes must be an integer in 0-100000"),
    "negative ch": ({"ch": -4}, "ch must be an integer in 1-512"),
    "ch huge": ({"ch": 100_000}, "ch must be an integer in 1-512"),
    "string resolution": ({"resolution": "128"}, r"resolution must be an integer in 8-1024, got '128'"),
    "resolution not a power of two": ({"resolution": 96}, "resolution must be a power of two"),
    "resolution huge": ({"resolution": 65536}, "resolution must be an integer in 8-1024"),
    "resolution tiny": ({"resolution": 4}, "resolution must be an integer in 8-1024"),
    "n_classes negative": ({"n_classes": -1}, "n_classes must be an integer in 0-100000"),
    "unknown variant": ({"variant": "huge"}, r"variant 'huge' is unknown"),
    "variant not a string": ({"variant": ["dw"]}, r"variant \['dw'\] is unknown"),
    "z_dim huge": ({"z_dim": 10 ** 7}, "z_dim must be an integer in 1-4096"),
    "emb_dim bool": ({"emb_dim": True}, "emb_dim must be an integer in 1-4096, got True"),
    "classes out of range": ({"classes": [1, 5000]}, "classes must be a list of class indices 0-999"),
    "classes not a list": ({"classes": "1,9"}, "classes must be a list"),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
@pytest.mark.parametrize("fmt", ["generator.safetensors", "generator.onnx"])
def test_bad_exported_config_is_one_line(model, tmp_path, monkeypatch, name, fmt):
    import json

    change, match = BAD_CONFIGS[name]
    (tmp_path / fmt).write_bytes((model / fmt).read_bytes())
    cfg = json.loads((model / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, **change}))
    from tinygan import models
    monkeypatch.setattr(models.Generator, "__init__", lambda *a, **k: pytest.fail("the model was built"))
    with pytest.raises(TinyGANError, match=rf"model config in .*config.json: {match}") as e:
        gen.generate(str(tmp_path / fmt), str(tmp_path / "g.png"), ["1"], 1, 0.5, 0)
    assert "\n" not in str(e.value) and not (tmp_path / "g.png").exists()
    if fmt.endswith(".safetensors"):
        with pytest.raises(TinyGANError, match=match):
            gen.load_generator(tmp_path / fmt)


def test_config_limits_accept_the_real_config(model):
    from tinygan.models import GENERATOR_VARIANTS, MAX_RESOLUTION, MIN_RESOLUTION

    cfg = gen.read_config(model / "generator.safetensors")
    assert gen.VARIANTS == GENERATOR_VARIANTS
    assert (gen.CONFIG_MINIMA["resolution"], gen.CONFIG_LIMITS["resolution"]) == (MIN_RESOLUTION, MAX_RESOLUTION)
    assert all(gen.CONFIG_MINIMA.get(k, 1) <= cfg[k] <= top for k, top in gen.CONFIG_LIMITS.items())


# ---- bounded memory: images streamed batch by batch (issue 8) ----------------------------------------------

class CountingRunner:
    """Wraps a real runner with a small batch; records the batch sizes it is called with."""

    def __init__(self, runner, batch):
        self.runner, self.batch, self.z_dim, self.calls = runner, batch, runner.z_dim, []

    def __call__(self, z, y):
        self.calls.append(len(z))
        return self.runner(z, y)


def counting_model(model, monkeypatch, batch=2):
    runner, cfg = gen.open_model(model / "generator.onnx")
    counting = CountingRunner(runner, batch)
    monkeypatch.setattr(gen, "open_model", lambda path: (counting, cfg))
    return counting, runner


def test_no_grid_writes_each_batch_before_making_the_next(model, tmp_path, monkeypatch):
    counting, runner = counting_model(model, monkeypatch)
    calls_at_write = []
    real = gen.save_png
    monkeypatch.setattr(gen, "save_png", lambda path, image: calls_at_write.append(len(counting.calls))
                        or real(path, image))
    files = gen.generate(str(model / "generator.onnx"), str(tmp_path), ["207", "1"], n=5, truncation=0.5, seed=0,
                         grid=False)
    assert counting.calls == [2, 2, 1, 2, 2, 1]  # never more than a batch of float images at once
    assert calls_at_write == [1, 1, 2, 2, 3, 4, 4, 5, 5, 6]  # each PNG written as soon as its batch is made
    assert [Path(f).name for f in files[:3]] == ["n02099601_0.png", "n02099601_1.png", "n02099601_2.png"]
    expected = gen.class_grid(runner, [207, 1], 5, 0.5, 0)
    for k, f in enumerate(files):
        assert np.array_equal(png(f), expected[k])


def test_grid_is_filled_batch_by_batch(model, tmp_path, monkeypatch):
    counting, runner = counting_model(model, monkeypatch, batch=3)
    files = gen.generate(str(model / "generator.onnx"), str(tmp_path / "g.png"), ["207", "9"], n=4,
                         truncation=0.5, seed=1)
    assert counting.calls == [3, 1, 3, 1]
    assert np.array_equal(png(files[0]), gen.tile(gen.class_grid(runner, [207, 9], 4, 0.5, 1), 2, 4))


@pytest.mark.parametrize("kw", [dict(n=100_000), dict(n=100_000, interpolate="classes:1,207", steps=8),
                                dict(n=1, interpolate="seeds:1,2", steps=100_000)])
def test_too_large_sheet_is_refused_before_generating(model, tmp_path, monkeypatch, kw):
    monkeypatch.setattr(gen, "open_model", lambda path: pytest.fail("the model was opened"))
    with pytest.raises(TinyGANError, match=r"Mpixel one PNG may have; use (--no-grid|fewer rows)") as e:
        gen.generate(str(model / "generator.safetensors"), str(tmp_path / "g.png"), ["207", "9"], truncation=0.5,
                     seed=0, **kw)
    assert "\n" not in str(e.value) and not (tmp_path / "g.png").exists()


def test_a_models_own_class_names_come_first_even_when_named_like_a_wnid():
    from tinygan.generate import class_names, resolve_class

    cfg = {"class_names": {"5": "n01440764", "1": "Golden Retriever"}}
    names = class_names(None, cfg)
    assert resolve_class("n01440764", 1000, names) == 5  # the folder, not ImageNet's tench (index 0)
    assert resolve_class("golden_retriever", 1000, names) == 1  # not ImageNet's 207
    assert resolve_class("n02099601", 1000) == 207  # ImageNet models: wnids as before
    with pytest.raises(TinyGANError, match="unknown class 'goldfish'"):
        resolve_class("goldfish", 1000, names)


# ---- every exported format, JPEG output, synonyms, CLI (issue 13) ---------------------------------------------

MODEL_FILES = ["generator.safetensors", "generator.torchscript.pt", "generator.onnx", "generator.openvino.xml",
               "generator.int8.onnx", "generator.fp16.onnx"]


@pytest.mark.parametrize("name", MODEL_FILES)
def test_generate_reads_every_file_the_export_writes(model, tmp_path, name):
    [path] = gen.generate(str(model / name), str(tmp_path / "g.png"), ["207", "goldfish"], 2, 0.5, 3)
    ref = png(gen.generate(str(model / "generator.safetensors"), str(tmp_path / "ref.png"), ["207", "1"], 2, 0.5,
                           3)[0]).astype(int)
    limit = 1 if name in ex.FILES.values() else 48  # float32: rounding; int8 / fp16: close, not equal
    assert png(path).shape == ref.shape and np.abs(png(path).astype(int) - ref).max() <= limit


@pytest.mark.parametrize("name", ["generator.torchscript.pt", "generator.openvino.xml"])
def test_config_embedded_in_torchscript_and_openvino(model, tmp_path, name):
    for f in {name, "generator.openvino.bin"} if name.endswith(".xml") else {name}:
        (tmp_path / f).write_bytes((model / f).read_bytes())  # without config.json
    cfg = gen.read_config(tmp_path / name)
    assert cfg["classes"] == CLASSES and cfg["ch"] == 4
    with pytest.raises(TinyGANError, match="use the exported generator.safetensors"):
        gen.generate(str(tmp_path / name), str(tmp_path), [], 1, 0.5, 0, interpolate="classes:1,2")


def test_corrupt_torchscript_and_openvino_are_one_line(model, tmp_path):
    for name in ("generator.torchscript.pt", "generator.openvino.xml"):
        (tmp_path / name).write_bytes((model / name).read_bytes()[:200])
        with pytest.raises(TinyGANError, match=rf"model file .*{name} is corrupt"):
            gen.generate(str(tmp_path / name), str(tmp_path / "g.png"), ["207"], 1, 0.5, 0)


@pytest.mark.parametrize("suffix", [".jpg", ".JPEG"])
def test_output_jpeg(model, tmp_path, suffix):
    [path] = gen.generate(str(model / "generator.onnx"), str(tmp_path / f"g{suffix}"), ["207"], 2, 0.5, 0)
    assert path == str(tmp_path / f"g{suffix}") and Path(path).is_file()
    with Image.open(path) as im:
        assert im.format == "JPEG" and im.size == (2 * R, R)
    ref = png(gen.generate(str(model / "generator.onnx"), str(tmp_path / "g.png"), ["207"], 2, 0.5, 0)[0])
    assert np.abs(np.asarray(Image.open(path), int) - ref).mean() < 8  # lossy, but the same picture


def test_output_other_image_format_is_refused_not_a_directory(model, tmp_path):
    with pytest.raises(TinyGANError, match=r"g\.webp: generate writes \.png or \.jpg"):
        gen.generate(str(model / "generator.onnx"), str(tmp_path / "g.webp"), ["207"], 1, 0.5, 0)
    assert not (tmp_path / "g.webp").exists()
    with pytest.raises(TinyGANError, match="need a directory"):
        gen.generate(str(model / "generator.onnx"), str(tmp_path / "g.jpg"), ["207"], 1, 0.5, 0, grid=False)


def test_imagenet_synonyms():
    names = gen.class_names()
    for s, i in (("tabby cat", 281), ("Tabby", 281), ("mountain lion", 286), ("Tinca tinca", 0),
                 ("killer whale", 148), ("orca", 148), ("polecat", 358)):  # polecat: main name of 358, synonym of 361
        assert gen.resolve_class(s, names=names) == i, s
    with pytest.raises(TinyGANError) as e:
        gen.resolve_class("cat", names=names)
    msg = str(e.value)
    assert msg.startswith("unknown class 'cat'; did you mean: 281 (tabby), 282 (tiger cat), 283 (Persian cat)")
    assert "ImageNet class name" in msg and "\n" not in msg
    with pytest.raises(TinyGANError, match=r"'panda' is ambiguous.*387 \(n02509815, lesser panda\).*388"):
        gen.resolve_class("panda", names=names)


def test_shipped_synsets_agree_with_the_class_table():
    """imagenet_synsets.txt (every name) and imagenet_wnids.txt (wnid, main name) describe the same classes."""
    from tinygan import classes

    lines = gen.SYNSETS.read_text(encoding="utf-8").splitlines()
    assert len(lines) == classes.N_CLASSES
    for i, line in enumerate(lines):
        wnid, _, names = line.partition(" ")
        assert wnid == classes.wnid_of(i) and names.split(", ")[0] == classes.name_of(i)


def test_own_class_model_unknown_class_does_not_mention_imagenet():
    names = gen.class_names(None, {"class_names": {"0": "cats", "3": "wild cats"}})
    with pytest.raises(TinyGANError) as e:
        gen.resolve_class("cat", 10, names)
    assert "ImageNet" not in str(e.value) and "wnid" not in str(e.value)
    assert "did you mean: 0 (cats);" in str(e.value)
    assert "one of the model's class names" in str(e.value)
    with pytest.raises(TinyGANError, match="unknown class 'n01440764'"):
        gen.resolve_class("n01440764", 10, names)  # an ImageNet wnid means nothing to this model


def run_cli(*args):
    from typer.testing import CliRunner

    from tinygan.cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_version_and_choices():
    import tinygan

    res = run_cli("--version")
    assert res.exit_code == 0 and res.output.strip() == f"tinygan {tinygan.__version__}"
    assert "dw|std" in run_cli("summary", "--help").output
    res = run_cli("summary", "--variant", "huge")
    assert res.exit_code != 0 and "huge" in res.output


def test_one_params_option_spelling():
    """`--params FILE` everywhere: tinygan check-params and every stage script."""
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    assert "--params" in run_cli("check-params", "--help").output
    for stage in sorted(p.stem for p in (REPO / "stages").glob("*.py") if p.stem != "__init__"):
        res = subprocess.run([sys.executable, "-m", f"stages.{stage}", "--help"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0 and "--params " in res.stdout and "--params-file" not in res.stdout, stage


def test_cli_generate_jpeg_from_torchscript(model, tmp_path):
    res = run_cli("generate", str(model / "generator.torchscript.pt"), "-c", "tabby", "-n", "1",
                  "-o", str(tmp_path / "x.jpg"))
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "x.jpg").format == "JPEG" and not (tmp_path / "x.jpg").is_dir()


def test_openvino_is_used_without_its_telemetry(model, tmp_path):
    """Importing openvino would count and send usage events (~/intel/...); tinygan's import keeps it off."""
    code = textwrap.dedent(f"""
        from tinygan import generate as gen
        gen.generate({str(model / 'generator.openvino.xml')!r}, {str(tmp_path / 'g.png')!r}, ['207'], 1, 0.5, 0)
        import sys
        assert sys.modules['openvino_telemetry'] is None
    """)
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home")}
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "g.png").is_file() and not (tmp_path / "home").exists()
