"""`tinygan score` on each kind of source, and reference statistics exported to / imported from mu/sigma .npz."""
import dataclasses
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tinygan import export as ex
from tinygan.cli import app
from tinygan.errors import TinyGANError
from tinygan.evaluate import EvalConfig, reference_stats
from tinygan.extractors import load_extractor
from tinygan.frechet import ClassStats, save_npz
from tinygan.generate import open_model
from tinygan.reference import export_npz, import_npz, read_npz
from tinygan.score import score
from tinygan.train import save_generator

from conftest import random_generator

CLASSES = (1, 9)


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_data, encoder_file):
    root = tmp_path_factory.mktemp("score")
    reference_stats(tiny_data / "real", encoder_file, "judge", root / "ref", batch_size=8, progress=False,
                    kid_reservoir=16)
    G = random_generator(3, n_classes=10, z_dim=32, resolution=32)
    save_generator(G, root / "g.safetensors")
    ex.export(str(root / "g.safetensors"), str(root / "model"), list(CLASSES), None, None, None, None)
    cfg = EvalConfig(classes=CLASSES, n_samples=20, per_class_samples=2, curve_samples=2, truncation=0.5, seed=0,
                     extractor_kind="judge", extractor_path=str(encoder_file), protocol="stylegan2-ada",
                     encoder=None, d_ch=None, device="cpu", batch_size=8, teacher_samples="stored", pr_samples=20,
                     progress=False, kid_subsets=3)
    return {"root": root, "cfg": cfg, "model": root / "model", "encoder": encoder_file}


KEYS = {"source", "source_kind", "n", "is", "is_std", "fid", "kid", "extractor", "protocol", "preprocessing"}


def _uint8_images(world, n=20):
    runner, _ = open_model(world["model"] / "generator.safetensors")
    z = np.random.default_rng(0).standard_normal((n, 32)).astype(np.float32) * 0.5
    x = runner(z, np.arange(n) % 2 + 1)
    return ((x.transpose(0, 2, 3, 1) + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["generator.safetensors", "generator.onnx"])
def test_score_an_exported_generator(world, fmt):
    m = score(world["model"] / fmt, world["root"] / "ref", world["cfg"])
    assert KEYS <= set(m) and m["source_kind"] == "generator" and m["n"] == 20
    assert all(np.isfinite(m[k]) for k in ("is", "fid", "kid")) and m["protocol"] == "stylegan2-ada"
    same = score(world["model"] / "generator.safetensors", world["root"] / "ref", world["cfg"])
    assert m["fid"] == pytest.approx(same["fid"], rel=1e-3)  # one noise recipe: ONNX and torch agree


def test_score_a_torchscript_export(world):
    path = world["model"] / "generator.torchscript.pt"
    try:
        open_model(path)
    except TinyGANError:
        pytest.skip("tinygan.generate.open_model does not load TorchScript exports on this branch (deploy's part)")
    m = score(path, world["root"] / "ref", world["cfg"])
    ref = score(world["model"] / "generator.safetensors", world["root"] / "ref", world["cfg"])
    assert m["fid"] == pytest.approx(ref["fid"], rel=1e-3)


def test_score_a_folder_and_an_npz_of_the_same_images_agree(world, tmp_path):
    images = _uint8_images(world)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"{i:03d}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "notes.txt").write_text("ignored")
    save_npz(tmp_path / "imgs.npz", {"arr_0": images})
    a = score(folder, world["root"] / "ref", world["cfg"])
    b = score(tmp_path / "imgs.npz", world["root"] / "ref", world["cfg"])
    assert a["n"] == b["n"] == 20 and a["skipped"] == 1 and a["source_kind"] == "folder"
    for k in ("is", "is_std", "fid", "kid"):
        assert a[k] == b[k]
    assert score(tmp_path / "imgs.npz", world["root"] / "ref", world["cfg"], n=12)["n"] == 12


def test_score_refuses_bad_sources_in_one_line(world, tmp_path):
    save_npz(tmp_path / "f.npz", {"images": np.zeros((20, 8, 8, 3), np.float32)})
    (tmp_path / "mixed").mkdir()
    for i, size in enumerate((8, 8, 9)):
        Image.new("RGB", (size, size)).save(tmp_path / "mixed" / f"{i}.png")
    for source, match in [(tmp_path / "f.npz", "uint8"), (tmp_path / "mixed", "one size"),
                          (tmp_path / "nothing", "does not exist"), (tmp_path / "f.npz", "uint8")]:
        with pytest.raises(TinyGANError, match=match) as e:
            score(source, world["root"] / "ref", world["cfg"])
        assert "\n" not in str(e.value)
    with pytest.raises(TinyGANError, match="evaluate.protocol"):  # the stats were measured as stylegan2-ada
        score(world["model"] / "generator.onnx", world["root"] / "ref",
              dataclasses.replace(world["cfg"], protocol="authors"))


def test_refstats_round_trip_and_score_with_the_import(world, tmp_path):
    info = export_npz(world["root"] / "ref", tmp_path / "ref.npz")
    arrays = read_npz(tmp_path / "ref.npz")
    overall = ClassStats.load(world["root"] / "ref").overall
    np.testing.assert_array_equal(arrays["mu"], overall.mean)
    np.testing.assert_array_equal(arrays["sigma"], overall.cov())
    assert str(arrays["protocol"]) == "stylegan2-ada" and info["extractor"] == str(arrays["extractor"])
    ext = load_extractor(world["encoder"], "judge")
    import_npz(tmp_path / "ref.npz", tmp_path / "imported", ext, world["encoder"])
    back = ClassStats.load(tmp_path / "imported").overall
    np.testing.assert_allclose(back.cov(), overall.cov(), rtol=1e-12)
    np.testing.assert_array_equal(back.reservoir, overall.reservoir)
    src = world["model"] / "generator.onnx"
    a, b = score(src, world["root"] / "ref", world["cfg"]), score(src, tmp_path / "imported", world["cfg"])
    assert b["fid"] == pytest.approx(a["fid"], rel=1e-9) and b["kid"] == a["kid"] and b["is"] == a["is"]
    # one class, and the bytes are deterministic
    export_npz(world["root"] / "ref", tmp_path / "c9.npz", cls=9)
    export_npz(world["root"] / "ref", tmp_path / "c9b.npz", cls=9)
    assert (tmp_path / "c9.npz").read_bytes() == (tmp_path / "c9b.npz").read_bytes()
    assert list(read_npz(tmp_path / "c9.npz")["classes"]) == [9]


def test_import_refuses_other_extractors_and_bad_files(world, tmp_path):
    export_npz(world["root"] / "ref", tmp_path / "ref.npz")
    arrays = read_npz(tmp_path / "ref.npz")
    authors = load_extractor(world["encoder"], "judge", protocol="authors")
    with pytest.raises(TinyGANError, match="preprocessing") as e:
        import_npz(tmp_path / "ref.npz", tmp_path / "x", authors, world["encoder"])
    assert "\n" not in str(e.value) and not (tmp_path / "x").exists()
    ext = load_extractor(world["encoder"], "judge")
    plain = {"mu": arrays["mu"], "sigma": arrays["sigma"]}  # what pytorch-fid / clean-fid write
    save_npz(tmp_path / "plain.npz", plain)
    with pytest.raises(TinyGANError, match="--assume-extractor"):
        import_npz(tmp_path / "plain.npz", tmp_path / "x", ext, world["encoder"])
    info = import_npz(tmp_path / "plain.npz", tmp_path / "p", ext, world["encoder"], assume=True)
    assert info["n"] is None and info["kid_reservoir"] == 0
    m = score(world["model"] / "generator.onnx", tmp_path / "p", world["cfg"])
    assert m["kid"] is None and "KID n/a" in m["kid_note"] and np.isfinite(m["fid"])
    d = len(arrays["mu"])
    bad = {"nan": {**plain, "mu": np.full(d, np.nan)}, "shape": {**plain, "sigma": np.eye(d + 1)},
           "asym": {**plain, "sigma": np.triu(np.ones((d, d)))}, "huge": {**plain, "mu": np.zeros(10**5)},
           "nomu": {"sigma": arrays["sigma"]}, "dim": {"mu": np.zeros(3), "sigma": np.eye(3)}}
    for name, content in bad.items():
        save_npz(tmp_path / f"{name}.npz", content)
        with pytest.raises(TinyGANError) as e:
            import_npz(tmp_path / f"{name}.npz", tmp_path / "x", ext, world["encoder"], assume=True)
        assert "\n" not in str(e.value), name
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(TinyGANError, match="not a readable"):
        read_npz(tmp_path / "junk.npz")


def test_cli_score_and_refstats_help_and_run(world, tmp_path, monkeypatch):
    runner = CliRunner()
    for cmd in (["score", "--help"], ["refstats", "--help"], ["refstats", "export", "--help"],
                ["refstats", "import", "--help"]):
        assert runner.invoke(app, cmd).exit_code == 0
    params = tmp_path / "params.yaml"
    from tinygan.profiles import compose_yaml
    params.write_text(compose_yaml("demo", [f"evaluate.extractor_path={world['encoder']}", "classes=[1,9]",
                                             "evaluate.n_samples=10"]))
    r = runner.invoke(app, ["score", str(world["model"] / "generator.onnx"), "--refstats", str(world["root"] / "ref"),
                            "--params", str(params), "-o", str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "m.json").read_text())["n"] == 10
    r = runner.invoke(app, ["score", str(world["model"] / "generator.onnx"), "--refstats", str(world["root"] / "ref"),
                            "--params", str(params), "--protocol", "tf"])
    assert r.exit_code != 0 and "protocol" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["refstats", "export", str(world["root"] / "ref"), str(tmp_path / "r.npz")])
    assert r.exit_code == 0 and (tmp_path / "r.npz").is_file()
    r = runner.invoke(app, ["refstats", "import", str(tmp_path / "r.npz"), str(tmp_path / "imp"),
                            "--params", str(params)])
    assert r.exit_code == 0, r.output
