"""Export: three formats with parity against the eager model, one-file dynamic-batch ONNX, config, model card."""
import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from tinygan import card
from tinygan import export as ex
from tinygan.errors import TinyGANError
from tinygan.generate import load_generator
from tinygan.models import Generator
from tinygan.train import save_generator

from conftest import random_generator, stand_in_encoder

CLASSES = [1, 9, 207]
METRICS = {  # as the evaluate stage writes them (demo judge, a teacher of unknown size)
    "extractor": "demo-judge (not Inception; demo figures only)", "extractor_note": "not Inception; demo figures only",
    "is": 7.184338243944818, "is_std": 0.044741038802790324, "fid": 12.5, "intra_fid": 30.25, "kid": 0.0100357,
    "teacher_is": 7.61, "teacher_is_std": 0.011, "teacher_fid": 0.84, "teacher_intra_fid": 1.86,
    "teacher_kid": -0.0077, "g_params": 634611, "d_params": 302841, "g_macs": 34859008, "teacher_g_params": None,
    "teacher_g_macs": None, "teacher_figures": "procedural demo teacher, n/a", "compression_ratio": None,
    "macs_ratio": None, "teacher_note": "teacher IS/FID/KID use the 24 stored teacher images"}
TEACHER_MANIFEST = {"teacher": "data/demo/teacher", "teacher_sha256": "ab" * 32, "n": 192, "per_class": 64,
                    "classes": CLASSES, "truncation": 0.5, "seed": 0,
                    "teacher_info": {"name": "procedural demo teacher", "g_params": None, "g_macs": None,
                                     "source": "procedural demo teacher, n/a"}}


def save_train_output(G: Generator, path) -> str:
    """Written exactly as the train stage writes its generator."""
    save_generator(G, path)
    return str(path)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    G = random_generator()
    src = save_train_output(G, root / "generator.safetensors")
    grid = root / "grid.png"
    from PIL import Image
    Image.new("RGB", (64, 32), (200, 10, 10)).save(grid)
    metrics = root / "metrics.json"
    metrics.write_text(json.dumps(METRICS))
    judge = root / "judge.pt"
    torch.jit.save(stand_in_encoder(), str(judge))
    out = root / "model"
    report = ex.export(src, str(out), CLASSES, metrics_path=str(metrics),
                       train_summary={"train_pairs": 480, "heldout_pairs": 32, "steps": 360, "loss_g": 0.25},
                       params_snapshot={"train": {"ch": 4, "epochs": 12}}, grid_png=str(grid),
                       teacher="data/demo/teacher", truncation=0.5, extractor="judge", extractor_path=str(judge),
                       quality_samples=24, calibration_samples=8, teacher_manifest=TEACHER_MANIFEST,
                       real_manifest={"n": 323, "classes": CLASSES},
                       dataset=card.dataset_info("data/demo/imagenet/train", "imagenet", "data/demo/teacher"))
    return G, out, report, grid


def test_files_and_parity_report(exported):
    G, out, report, _ = exported
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["generator.safetensors", "config.json", "generator.torchscript.pt", "generator.onnx", "parity.json",
         "generator.openvino.xml", "generator.openvino.bin", "generator.int8.onnx", "generator.fp16.onnx",
         "samples.png", "README.md"])  # no external-data side files, no temp files left
    assert sorted(f for f in ex.OUT_FILES if f != "page/") == sorted(p.name for p in out.iterdir())  # no page asked for
    assert set(report) == {"parity_version", "atol", "inputs", "formats", "quantized"}
    assert set(report["formats"]) == {"safetensors", "torchscript", "onnx", "openvino"}
    for fmt, e in report["formats"].items():
        assert 0.0 <= e["max_abs_diff"] <= 1e-4
        assert e["bytes"] >= (out / e["file"]).stat().st_size > 0 and len(e["sha256"]) == 64
    ov = report["formats"]["openvino"]
    assert ov["bytes"] == sum((out / f).stat().st_size for f in ("generator.openvino.xml", "generator.openvino.bin"))
    assert json.loads((out / "parity.json").read_text()) == report


def test_safetensors_and_config(exported):
    G, out, _, _ = exported
    cfg = json.loads((out / "config.json").read_text())
    assert {k: cfg[k] for k in G.config} == G.config
    assert cfg["classes"] == CLASSES and cfg["class_wnids"][2] == "n02099601"
    assert cfg["truncation"] == 0.5 and cfg["layout"] == "NCHW" and cfg["output_range"] == [-1.0, 1.0]
    assert cfg["format_version"] == ex.FORMAT_VERSION
    with safe_open(str(out / "generator.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["config"])["classes"] == CLASSES
        # BN running statistics travel with the weights
        assert torch.equal(f.get_tensor("bn.running_var"), G.bn.running_var)
    G2 = load_generator(out / "generator.safetensors")
    assert not G2.training
    z, y = torch.randn(3, 128) * 0.5, torch.tensor([1, 9, 207])
    with torch.no_grad():
        assert torch.equal(G2(z, y), G(z, y))


def test_eval_mode_bn_is_non_trivial(exported):
    # the running stats differ from the init (0, 1), so eval and train mode outputs differ
    G, *_ = exported
    assert not torch.allclose(G.blocks[0].cbn0.bn.running_var, torch.ones_like(G.blocks[0].cbn0.bn.running_var))


def test_torchscript_dynamic_batch(exported):
    G, out, _, _ = exported
    ts = torch.jit.load(str(out / "generator.torchscript.pt"))
    for n in (1, 3):
        z, y = torch.randn(n, 128) * 0.5, torch.randint(0, 1000, (n,))
        with torch.no_grad():
            assert (ts(z, y) - G(z, y)).abs().max().item() <= 1e-5


def test_onnx_one_file_dynamic_batch(exported):
    import onnx
    import onnxruntime as ort

    G, out, _, _ = exported
    model = onnx.load(str(out / "generator.onnx"))
    onnx.checker.check_model(model)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    inputs = {i.name: i.type.tensor_type for i in model.graph.input}
    assert set(inputs) == {"z", "y"}
    assert inputs["z"].elem_type == onnx.TensorProto.FLOAT and inputs["y"].elem_type == onnx.TensorProto.INT64
    assert inputs["z"].shape.dim[0].dim_param and inputs["z"].shape.dim[1].dim_value == 128
    assert [o.name for o in model.graph.output] == ["image"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["tinygan_config"])["classes"] == CLASSES

    sess = ort.InferenceSession(str(out / "generator.onnx"), providers=["CPUExecutionProvider"])
    for n in (1, 3):
        z = (np.random.default_rng(n).standard_normal((n, 128)) * 0.5).astype(np.float32)
        y = np.array([1, 207, 9][:n], dtype=np.int64)
        img = sess.run(["image"], {"z": z, "y": y})[0]
        assert img.shape == (n, 3, 128, 128) and img.dtype == np.float32
        assert np.abs(img).max() <= 1.0
        with torch.no_grad():
            ref = G(torch.from_numpy(z), torch.from_numpy(y)).numpy()
        assert np.abs(img - ref).max() <= 1e-4


def test_parity_failure_names_the_format(exported):
    G, out, _, _ = exported
    broken = load_generator(out / "generator.safetensors")
    with torch.no_grad():
        broken.to_rgb.bias += 0.5  # the eager model no longer matches the files on disk
    with pytest.raises(TinyGANError, match=r"parity check failed: safetensors .* differs .* by"):
        ex.check_parity(broken, out, CLASSES, 0.5, atol=1e-4)


def test_model_card(exported):
    G, out, _, grid = exported
    text = (out / "README.md").read_text()
    assert ("**Feature extractor: `demo-judge (not Inception; demo figures only)`** — not Inception; demo figures "
            "only: these figures are NOT comparable") in text
    assert f"{sum(p.numel() for p in G.parameters()):,}" in text  # parameter count
    assert "MACs per image" in text and "`data/demo/teacher` (procedural demo teacher)" in text
    assert f"`{'ab' * 32}`" in text  # the teacher's content hash, from its manifest
    assert "| teacher pairs used for training | 480 |" in text and "| real images | 323 of 3 classes" in text
    assert "loss_g" not in text  # the run summary, not the last logged losses
    assert "| `train.epochs` | 12 |" in text
    assert "](samples.png)" in text and (out / "samples.png").read_bytes() == grid.read_bytes()
    for snippet in ("torch.jit.load", "onnxruntime", "load_generator"):
        assert snippet in text
    assert "## In the browser" not in text  # no page/ was built


def _table_rows(text: str, heading: str) -> list[list[str]]:
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("|") and not line.startswith("|---")][1:]


def test_model_card_front_matter_and_metric_table(exported):
    text = (exported[1] / "README.md").read_text()
    meta = card.read_front_matter(text)
    assert {"license", "library_name", "tags", "model-index"} <= set(meta)
    assert "datasets" not in meta  # demo data is no Hub dataset
    [entry] = meta["model-index"]
    [result] = entry["results"]
    assert result["task"]["type"] and result["dataset"]["type"] and result["dataset"]["name"]
    got = {m["type"]: m["value"] for m in result["metrics"]}
    assert got == {"inception_score": METRICS["is"], "fid": METRICS["fid"], "intra-fid": METRICS["intra_fid"],
                   "kid": METRICS["kid"]}  # exactly metrics.json's values
    assert all(m["args"]["feature_extractor"] == METRICS["extractor"] for m in result["metrics"])
    rows = _table_rows(text, "Evaluation")
    assert [r[0].split(" (")[0] for r in rows] == ["IS", "FID", "intra-FID", "KID"]  # metrics only, once each
    assert rows[1][1:3] == ["12.5", "0.84"] and rows[0][1] == "7.184 ± 0.045"
    assert "None" not in text and "| extractor" not in text and "g_params" not in text
    assert METRICS["teacher_note"] in text


def test_card_names_imagenet_and_teacher_size_only_when_known():
    from tinygan.teacher import PUBLISHED

    hub = "https://tfhub.dev/deepmind/biggan-deep-128/1"
    assert card.dataset_info("/data/train", "imagenet", hub)["hub_id"] == "ILSVRC/imagenet-1k"
    assert card.dataset_info("/data/train", "folders", hub)["hub_id"] is None
    cfg = ex.make_config({"variant": "dw", "ch": 32, "n_classes": 1000, "z_dim": 128, "emb_dim": 128,
                          "resolution": 128}, [1, 2], 0.5)
    meta = card.front_matter(cfg, None, card.dataset_info("/d", "imagenet", hub))
    assert meta["datasets"] == ["ILSVRC/imagenet-1k"] and "model-index" not in meta and "pipeline_tag" not in meta
    teacher = PUBLISHED[hub]
    lines = card.compression_section(3_000_000, 1_000_000_000, {"teacher_g_params": teacher["g_params"],
                                                                "teacher_g_macs": teacher["g_macs"]}, None)
    assert "| generator parameters | 3,000,000 | 50,400,000 | 16.8× |" in "\n".join(lines)
    unconditional = {**cfg, "n_classes": 0, "classes": [0]}
    assert card.front_matter(unconditional, None, None)["pipeline_tag"] == "unconditional-image-generation"


@pytest.mark.parametrize("metrics, shown, warned", [
    ({"extractor": "demo-judge (judge)"}, "`demo-judge (judge)`", False),  # the name is not searched
    ({"extractor": "inception-2015-12-05", "extractor_note": "a caveat"}, "— a caveat:", True),
    ({}, "not recorded in `m.json`", False),
])
def test_extractor_line_shows_the_recorded_note(metrics, shown, warned):
    line = card.extractor_line(metrics, "m.json")
    assert shown in line and ("NOT comparable" in line) == warned


def test_export_without_metrics_renders_samples(tmp_path):
    src = save_train_output(random_generator(1), tmp_path / "g.safetensors")
    ex.export(src, str(tmp_path / "m"), [207], None, None, None, None)
    from PIL import Image
    assert Image.open(tmp_path / "m" / "samples.png").size == (8 * 128, 128)
    assert "No metrics were given" in (tmp_path / "m" / "README.md").read_text()


def test_export_bad_inputs(tmp_path):
    with pytest.raises(TinyGANError, match="does not exist"):
        ex.export(str(tmp_path / "nope.safetensors"), str(tmp_path / "m"), [1], None, None, None, None)
    src = save_train_output(random_generator(2), tmp_path / "g.safetensors")
    with pytest.raises(TinyGANError, match="classes"):
        ex.export(src, str(tmp_path / "m"), [1000], None, None, None, None)
    with pytest.raises(TinyGANError, match="metrics file"):
        ex.export(src, str(tmp_path / "m"), [1], str(tmp_path / "missing.json"), None, None, None)


class _ViewGenerator(Generator):
    """The generator with the fc output reshaped by view(-1, C, 4, 4), which the legacy ONNX exporter
    cannot shape-infer with a dynamic batch: save_onnx must still produce an exact graph."""

    def forward(self, z, y):
        emb = self.embedding(y)
        h = self.fc(z).view(-1, self.c0, self.s0, self.s0)
        for block in self.blocks:
            h = block(h, emb)
        return torch.tanh(self.to_rgb(torch.relu(self.bn(h))))


def test_onnx_export_of_view_reshape(tmp_path):
    import onnxruntime as ort

    G = _ViewGenerator("dw", 4)
    G.load_state_dict(random_generator(3).state_dict())
    G.eval()
    ex.save_onnx(G, tmp_path / "g.onnx", ex.make_config(G.config, [1], 0.5), opset=17)
    sess = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    z, y = (np.random.default_rng(0).standard_normal((3, 128)) * 0.5).astype(np.float32), np.array([1, 2, 3])
    with torch.no_grad():
        ref = G(torch.from_numpy(z), torch.from_numpy(y)).numpy()
    assert np.abs(sess.run(["image"], {"z": z, "y": y})[0] - ref).max() <= 1e-4
    assert G.fc._forward_hooks == {}  # the export hook is gone


# ---- other teacher shapes: resolution, class count, z size, unconditional (issue 10) ----------------------------

@pytest.mark.parametrize("shape, classes", [
    (dict(resolution=32, n_classes=10, z_dim=512), [0, 3, 9]),
    (dict(resolution=64, n_classes=0), [0]),
])
def test_export_and_parity_at_other_shapes(tmp_path, shape, classes):
    import onnxruntime as ort

    G = random_generator(4, **shape)
    res, z_dim = shape["resolution"], G.config["z_dim"]
    report = ex.export(save_train_output(G, tmp_path / "g.safetensors"), str(tmp_path / "m"), classes,
                       None, None, None, None)
    assert all(report["formats"][f]["max_abs_diff"] <= 1e-4 for f in ex.FORMATS)
    assert all(np.isfinite(e["max_abs_diff"]) for e in report["quantized"].values())
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["output"] == ["N", 3, res, res] and cfg["inputs"]["z"] == ["N", z_dim] and cfg["classes"] == classes
    z = torch.randn(3, z_dim) * 0.5
    y = torch.tensor([classes[-1], 0, classes[-1]])
    with torch.no_grad():
        ref = G(z, y)
        assert ref.shape == (3, 3, res, res)
        ts = torch.jit.load(str(tmp_path / "m" / "generator.torchscript.pt"))
        assert (ts(z, y) - ref).abs().max().item() <= 1e-5
    sess = ort.InferenceSession(str(tmp_path / "m" / "generator.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["z", "y"]  # y stays an input, ignored when unconditional
    img = sess.run(["image"], {"z": z.numpy(), "y": y.numpy()})[0]
    assert np.abs(img - ref.numpy()).max() <= 1e-4
    if not shape["n_classes"]:
        other = sess.run(["image"], {"z": z.numpy(), "y": np.array([5, 7, 11])})[0]
        assert np.array_equal(other, img)
        text = (tmp_path / "m" / "README.md").read_text()
        assert "none (unconditional: y is ignored)" in text and "4 residual up-blocks" in text
        assert "Unconditional 64×64 image generator" in text and "[N,3,64,64]" in text
        from PIL import Image

        from tinygan import generate as gen
        [png] = gen.generate(str(tmp_path / "m" / "generator.onnx"), str(tmp_path / "u.png"), ["0"], 3, 0.5, 0)
        assert Image.open(png).size[1] == 64
        with pytest.raises(TinyGANError, match="needs a class-conditional model"):
            gen.generate(str(tmp_path / "m" / "generator.safetensors"), str(tmp_path / "i.png"), [], 1, 0.5, 0,
                         interpolate="classes:0,0")
        with pytest.raises(TinyGANError, match=r"indices 0-0 \(0: an unconditional model\)"):
            ex.export(str(tmp_path / "g.safetensors"), str(tmp_path / "m2"), [1], None, None, None, None)


def test_generate_from_a_32px_export(tmp_path):
    from PIL import Image

    from tinygan import generate as gen

    G = random_generator(5, n_classes=10, z_dim=512, resolution=32)
    ex.export(save_train_output(G, tmp_path / "g.safetensors"), str(tmp_path / "m"), [2, 3], None, None, None, None)
    grids = {}
    for fmt in (*ex.FILES.values(), *ex.QUANTIZED.values()):  # every model file the export writes
        [png] = gen.generate(str(tmp_path / "m" / fmt), str(tmp_path / f"{fmt}.png"), ["2", "3"], 4, 0.5, 0)
        assert Image.open(png).size == (4 * 32, 2 * 32)
        grids[fmt] = np.asarray(Image.open(png), np.int16)
    for fmt, grid in grids.items():  # uint8 images: float32 formats within a rounding step, int8 / fp16 close
        limit = 1 if fmt in ex.FILES.values() else 48
        assert np.abs(grid - grids["generator.safetensors"]).max() <= limit, fmt
    with pytest.raises(TinyGANError, match="out of range"):
        gen.generate(str(tmp_path / "m" / "generator.onnx"), str(tmp_path / "x.png"), ["10"], 1, 0.5, 0)


# ---- the export directory is all-new or all-old (issue 8) -----------------------------------------------------

def tree(d) -> dict:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def temp_leftovers(*dirs) -> list[str]:
    from tinygan.io import is_temp_name

    return [p.name for d in dirs for p in d.iterdir() if is_temp_name(p.name)]


@pytest.fixture
def previous_export(tmp_path, exported):
    """A copy of a finished export in ``tmp_path/model``, and the trained generator to export again."""
    out = tmp_path / "model"
    out.mkdir()
    for name, data in tree(exported[1]).items():
        (out / name).write_bytes(data)
    src = save_train_output(random_generator(5), tmp_path / "g.safetensors")  # other weights: other files
    return src, out


def fail_in(monkeypatch, name):
    def boom(*args, **kwargs):
        raise RuntimeError("killed")
    monkeypatch.setattr(ex, name, boom)


@pytest.mark.parametrize("step", ["save_onnx", "check_parity", "model_size"])
def test_crash_mid_export_keeps_the_previous_export(previous_export, monkeypatch, step):
    src, out = previous_export
    before = tree(out)
    fail_in(monkeypatch, step)  # the files before it (safetensors, config, TorchScript, ...) were written
    with pytest.raises(RuntimeError, match="killed"):
        ex.export(src, str(out), [1, 9], None, None, None, None)
    assert tree(out) == before  # byte-identical: no new weights beside an old parity.json
    assert temp_leftovers(out, out.parent) == []


def test_parity_failure_keeps_the_previous_export(previous_export, monkeypatch):
    src, out = previous_export
    before = tree(out)
    real = ex.check_parity
    monkeypatch.setattr(ex, "check_parity", lambda G, d, classes, t, atol: real(G, d, classes, t, atol=-1.0))
    with pytest.raises(TinyGANError, match="parity check failed"):
        ex.export(src, str(out), [1, 9], None, None, None, None)
    assert tree(out) == before and temp_leftovers(out, out.parent) == []


def test_disk_full_mid_export_is_one_line_naming_the_file(previous_export, monkeypatch):
    import errno
    import os
    from pathlib import Path

    src, out = previous_export
    before = tree(out)
    real = Path.write_bytes

    def write_bytes(self, data):
        if ".generator.onnx." in self.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, data)
    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    with pytest.raises(TinyGANError) as e:
        ex.export(src, str(out), [1, 9], None, None, None, None)
    msg = str(e.value)
    assert "\n" not in msg and f"to write {out / 'generator.onnx'} " in msg and "free some space" in msg
    assert tree(out) == before and temp_leftovers(out, out.parent) == []


def test_next_export_removes_what_a_killed_one_left(previous_export):
    src, out = previous_export
    (out.parent / ".model.k1lled00.tmp").mkdir()  # the half-written directory of a killed export
    (out.parent / ".model.k1lled00.tmp" / "generator.safetensors").write_bytes(b"half")
    (out / ".generator.onnx.k1lled01.tmp").write_bytes(b"half")  # as older versions left (and DVC cached)
    report = ex.export(src, str(out), [1, 9], None, None, None, None)
    assert sorted(tree(out)) == sorted(f for f in ex.OUT_FILES if f != "page/")  # no page asked for
    assert temp_leftovers(out, out.parent) == []
    assert json.loads((out / "parity.json").read_text()) == report
    assert json.loads((out / "config.json").read_text())["classes"] == [1, 9]


def test_export_refuses_a_directory_with_other_files(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "my_notes.txt").write_text("precious")
    src = save_train_output(random_generator(1), tmp_path / "g.safetensors")
    with pytest.raises(TinyGANError, match="holds my_notes.txt"):
        ex.export(src, str(out), [1], None, None, None, None)
    assert tree(out) == {"my_notes.txt": b"precious"}


def test_stylegan_folder_data_export_records_latent_and_names_and_generate_uses_them(tmp_path, capfd):
    from tinygan import generate as gen
    from tinygan.teacher import draw_z

    G = random_generator()
    src = save_train_output(G, tmp_path / "generator.safetensors")
    out = tmp_path / "model"
    ex.export(src, str(out), [0, 2], latent="stylegan", class_names={0: "cats", 1: "dogs", 2: "ferrets"},
              truncation=0.7)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["latent"] == "stylegan" and cfg["class_names"] == {"0": "cats", "2": "ferrets"}
    assert "class_wnids" not in cfg and "standard normal" in cfg["z_distribution"]
    text = (out / "README.md").read_text()
    assert "0 (cats), 2 (ferrets)" in text and "n01440764" not in text
    # generate: -c NAME resolves against the recorded names; z is the teacher's standard normal
    png = gen.generate(str(out / "generator.onnx"), str(tmp_path / "g.png"), ["ferrets"], 2, 0.7, 0)[0]
    z = draw_z("stylegan", 0, [2, 2], [0, 1], 0.7, 128)
    want = gen.tile(gen.to_uint8(G.eval()(torch.from_numpy(z), torch.tensor([2, 2])).detach().numpy()), 1, 2)
    assert np.abs(np.asarray(__import__("PIL.Image").Image.open(png), np.int16) - want).max() <= 1
    with pytest.raises(TinyGANError, match="unknown class 'tench'"):
        gen.generate(str(out / "generator.onnx"), str(tmp_path / "h.png"), ["tench"], 1, 0.7, 0)
    gen.generate(str(out / "generator.onnx"), str(tmp_path / "i.png"), ["1"], 1, 0.7, 0)  # untrained: unnamed
    assert "class 1 (unnamed) is not one of the 2 classes" in capfd.readouterr().err


def test_biggan_imagenet_export_has_no_latent_or_class_names_keys(exported):
    cfg = json.loads((exported[1] / "config.json").read_text())
    assert "latent" not in cfg and "class_names" not in cfg  # BigGAN/ImageNet exports stay byte-identical


# ---- OpenVINO, int8 / fp16 (issue 13) ------------------------------------------------------------------------

def test_openvino_ir_matches_the_eager_model_at_any_batch(exported):
    from tinygan.generate import import_openvino

    G, out, _, _ = exported
    compiled = import_openvino().Core().compile_model(str(out / "generator.openvino.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for n in (1, 4):
        z = (np.random.default_rng(n).standard_normal((n, 128)) * 0.5).astype(np.float32)
        y = np.array([1, 207, 9, 1][:n], dtype=np.int64)
        img = compiled({"z": z, "y": y})["image"]
        with torch.no_grad():
            ref = G(torch.from_numpy(z), torch.from_numpy(y)).numpy()
        assert img.shape == (n, 3, 128, 128) and np.abs(img - ref).max() <= 1e-4


def test_quantized_exports_report_size_diff_and_a_finite_quality_cost(exported):
    _, out, report, _ = exported
    q = report["quantized"]
    assert set(q) == {"onnx-int8", "onnx-fp16"}
    fp32_bytes = report["formats"]["onnx"]["bytes"]
    for name, e in q.items():
        assert (out / e["file"]).stat().st_size == e["bytes"] < fp32_bytes  # smaller than the fp32 ONNX
        assert np.isfinite(e["max_abs_diff"]) and 0 < e["max_abs_diff"] < 0.5  # rounded, but the same picture
        assert np.isfinite(e["fid_vs_fp32"]) and e["fid_vs_fp32"] >= -1e-6 and np.isfinite(e["kid_vs_fp32"])
        assert e["extractor"].startswith("demo-judge") and e["n_images"] == 24 and e["seed"] == 0
    assert q["onnx-int8"]["calibration"] == {"n": 8, "seed": 1}
    assert q["onnx-int8"]["bytes"] < 0.5 * fp32_bytes
    card = (out / "README.md").read_text()
    assert "`generator.int8.onnx`" in card and "`generator.openvino.xml`" in card


def test_quantized_onnx_keeps_the_interface_and_config(exported):
    import onnx

    _, out, _, _ = exported
    for name in ("generator.int8.onnx", "generator.fp16.onnx"):
        model = onnx.load(str(out / name))
        types = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
        assert types == {"z": onnx.TensorProto.FLOAT, "y": onnx.TensorProto.INT64}
        assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert json.loads({p.key: p.value for p in model.metadata_props}["tinygan_config"])["classes"] == CLASSES


def test_export_is_byte_identical_when_repeated(tmp_path):
    """Every file (the int8 quantisation and OpenVINO's node names included) from two fresh processes, as the
    export stage runs; within one process too, but TorchScript's class names (numbered per process) and the
    files that hold its sha256."""
    import subprocess
    import sys
    from pathlib import Path

    judge = tmp_path / "judge.pt"
    torch.jit.save(stand_in_encoder(), str(judge))
    src = save_train_output(random_generator(3), tmp_path / "g.safetensors")
    kw = dict(extractor="judge", extractor_path=str(judge), quality_samples=8, calibration_samples=8)
    root = Path(__file__).resolve().parents[1]
    for name in ("a", "b"):
        code = f"from tinygan import export as ex; ex.export({src!r}, {str(tmp_path / name)!r}, [1, 9], **{kw!r})"
        subprocess.run([sys.executable, "-c", code], cwd=root, check=True,
                       env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}, timeout=600)
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    ex.export(src, str(tmp_path / "c"), [1, 9], **kw)  # a third time, in this process
    per_process = {"generator.torchscript.pt", "parity.json", "README.md"}
    assert {k: v for k, v in tree(tmp_path / "c").items() if k not in per_process} == \
        {k: v for k, v in tree(tmp_path / "a").items() if k not in per_process}


def test_export_without_an_extractor_records_no_quality_figures(tmp_path):
    src = save_train_output(random_generator(2), tmp_path / "g.safetensors")
    report = ex.export(src, str(tmp_path / "m"), [1], calibration_samples=4)
    for e in report["quantized"].values():
        assert e["fid_vs_fp32"] is None and e["kid_vs_fp32"] is None and e["extractor"] is None
    assert "not measured" in (tmp_path / "m" / "README.md").read_text()


def test_export_refuses_a_missing_extractor_before_writing(tmp_path):
    src = save_train_output(random_generator(2), tmp_path / "g.safetensors")
    with pytest.raises(TinyGANError, match="demo judge not found"):
        ex.export(src, str(tmp_path / "m"), [1], extractor="judge", extractor_path=str(tmp_path / "no.pt"))
    assert not (tmp_path / "m").exists()


def test_card_files_table_reads_parity_v2_with_quantized_formats(tmp_path):
    """The parity.json v2 layout (issue 13): every fp32 format and every reduced-precision one gets a row, the
    latter with its quality cost (or why there is none); nothing is hard-coded to a format list."""
    entry = {"bytes": 2_500_000, "sha256": "c" * 64, "max_abs_diff": 3e-6}
    parity = {"parity_version": 2, "atol": 1e-4, "inputs": {"n": 8, "batches": [1, 5, 2], "seed": 12345},
              "formats": {"onnx": {"file": "generator.onnx", **entry},
                          "openvino": {"file": "generator.openvino.xml", "weights_file": "generator.openvino.bin",
                                       "weights_sha256": "d" * 64, **entry}},
              "quantized": {
                  "onnx-int8": {"file": "generator.int8.onnx", "bytes": 700_000, "sha256": "e" * 64,
                                "max_abs_diff": 0.031, "method": "static QDQ", "fid_vs_fp32": 1.25,
                                "kid_vs_fp32": 0.002, "extractor": "demo-judge (not Inception)", "n_images": 256},
                  "onnx-fp16": {"file": "generator.fp16.onnx", "bytes": 1_300_000, "sha256": "f" * 64,
                                "max_abs_diff": 0.001, "method": "fp16", "fid_vs_fp32": None, "kid_vs_fp32": None,
                                "extractor": None, "n_images": 256}}}
    text = "\n".join(card.files_section(tmp_path, parity))
    assert "| `generator.openvino.xml` + `generator.openvino.bin` | openvino | 2.50 MB | 3.00e-06 |" in text
    assert "| `generator.int8.onnx` | onnx-int8 | 0.70 MB | 0.031 | FID 1.25 / KID 0.002 vs fp32 images" in text
    assert "`demo-judge (not Inception)` features" in text and "1, 5, 2" in text
    assert "| `generator.fp16.onnx` | onnx-fp16 | 1.30 MB | 0.001 | not measured" in text
    assert "None" not in text
