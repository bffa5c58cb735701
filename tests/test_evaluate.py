"""Evaluation orchestration: reference stats, the evaluate outputs (metrics.json, CSVs, PNGs), and the demo judge."""
import csv
import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tinygan import params, shards
from tinygan.errors import TinyGANError
from tinygan.demo.judge import NAME as JUDGE_NAME, NOTE as JUDGE_NOTE, train_demo_judge
from tinygan.evaluate import EvalConfig, _compression, _Measure, evaluate, reference_stats
from tinygan.extractors import load_extractor
from tinygan.frechet import ClassStats, StatsAccumulator, frechet_distance
from tinygan.metrics import inception_score
from tinygan.models import Generator
from tinygan.teacher import PUBLISHED, describe, draw_z, evaluation_seed
from tinygan.train import save_generator

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]

CLASSES = (1, 9, 130)
REAL_PER_CLASS, TEACHER_PER_CLASS = 16, 12
N_SAMPLES, PER_CLASS = 40, 14  # more than the teacher shards hold: the teacher note must say so
JUDGE_LABEL = f"{JUDGE_NAME} ({JUDGE_NOTE})"  # what metrics are labelled with
# The demo teacher's description (tinygan.demo.teacher.ABOUT), as the sample stage records it in the manifest.
DEMO_INFO = {"name": "procedural demo teacher", "g_params": None, "g_macs": None,
             "source": "procedural demo teacher, n/a"}
# The teacher's handle says nothing to evaluation: even BigGAN's URL gets the figures of the manifest's teacher_info.
BIGGAN_URL = "https://tfhub.dev/deepmind/biggan-deep-128/1"


def class_images(classes, per_class, seed):
    """(z, y, images): each class a colour, each image a random brightness ramp and a little noise."""
    rng = np.random.default_rng(seed)
    g = np.linspace(-1, 1, 128, dtype=np.float32)
    z, y, images = [], [], []
    for c in classes:
        colour = np.array([(c * 37) % 200 + 40, (c * 91) % 200 + 40, (c * 13) % 200 + 40], np.float32)
        for _ in range(per_class):
            zi = (0.5 * np.clip(rng.standard_normal(128), -2, 2)).astype(np.float32)
            ramp = 0.6 + 0.4 * np.tanh(3 * zi[0]) * g[None, :, None] + 0.2 * np.tanh(3 * zi[1]) * g[:, None, None]
            img = colour * ramp + rng.normal(0, 4, (128, 128, 3))
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            z.append(zi)
            y.append(c)
    return np.stack(z), np.asarray(y, np.int64), np.stack(images)


def write_real(out_dir, classes, per_class, seed):
    out_dir.mkdir(parents=True)
    _, y, images = class_images(classes, per_class, seed)
    names = np.asarray([f"img{i}.JPEG" for i in range(len(y))], dtype=object)
    infos = [shards.write_shard(out_dir / f"real-{k:05d}.h5", {"images": images[sl], "y": y[sl], "names": names[sl]},
                                {"kind": "real", "fingerprint": "test"})
             for k, sl in enumerate((slice(0, 20), slice(20, None)))]
    shards.write_manifest(out_dir, "real", infos, {c: per_class for c in classes}, fingerprint="test", resolution=128)


def write_teacher(out_dir, classes, per_class, seed, handle=BIGGAN_URL, teacher_info=DEMO_INFO, noise_seed=None):
    """Teacher shards; ``noise_seed`` (recorded as the manifest's seed, as the sample machinery does) makes it
    an evaluation set."""
    out_dir.mkdir(parents=True)
    z, y, images = class_images(classes, per_class, seed)
    info = shards.write_shard(out_dir / "teacher-00000.h5", {"z": z, "y": y, "images": images},
                              {"kind": "teacher", "fingerprint": "test"})
    extra = {"teacher": handle} if teacher_info is None else {"teacher": handle, "teacher_info": teacher_info}
    extra.update({} if noise_seed is None else {"seed": noise_seed, "per_class": per_class})
    shards.write_manifest(out_dir, "teacher", [info], {c: per_class for c in classes}, extra,
                          fingerprint="test", resolution=128)


def save_g(path, seed):
    torch.manual_seed(seed)
    G = Generator(variant="dw", ch=4)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_generator(G.eval(), path)
    return G


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    write_real(root / "real", CLASSES, REAL_PER_CLASS, seed=1)
    write_teacher(root / "teacher", CLASSES, TEACHER_PER_CLASS, seed=2)
    judge = train_demo_judge(root / "real", root / "judge" / "judge.pt", seed=0, epochs=3, progress=False)
    ref = reference_stats(root / "real", root / "judge" / "judge.pt", "judge", root / "refstats", batch_size=7,
                          progress=False, kid_reservoir=20, pr_samples=20)
    save_g(root / "student" / "generator.safetensors", seed=0)
    for step in (10, 20):
        save_g(root / "snapshots" / f"G-{step:07d}.safetensors", seed=step)
    cfg = EvalConfig(classes=CLASSES, n_samples=N_SAMPLES, per_class_samples=PER_CLASS, curve_samples=12,
                     truncation=0.5, seed=0, extractor_kind="judge", extractor_path=str(root / "judge" / "judge.pt"),
                     protocol="stylegan2-ada", encoder=None, d_ch=None, device="cpu", batch_size=16,
                     teacher_samples="stored", pr_samples=20, progress=False, kid_subsets=5, sheet_samples=2)
    w = {"root": root, "judge": judge, "ref": ref, "out": root / "out", "cfg": cfg}
    w["metrics"] = run_eval(w, root / "out", snapshots_dir=root / "snapshots")
    return w


def run_eval(w, out_dir, snapshots_dir=None, refstats_dir=None, teacher_eval_dir=None, **cfg_changes):
    """``evaluate`` on the world, with ``cfg_changes`` to its EvalConfig."""
    root = w["root"]
    return evaluate(dataclasses.replace(w["cfg"], **cfg_changes), root / "student" / "generator.safetensors",
                    root / "teacher", refstats_dir or root / "refstats", out_dir, snapshots_dir=snapshots_dir,
                    teacher_eval_dir=teacher_eval_dir)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---- reference statistics ----------------------------------------------------------------------------------

def test_train_demo_judge_writes_judge_and_sidecar(world):
    rep = world["judge"]
    assert rep["classes"] == list(CLASSES) and rep["num_train"] + rep["num_heldout"] == 3 * REAL_PER_CLASS
    side = json.loads((world["root"] / "judge" / "judge.json").read_text())
    assert side["classes"] == list(CLASSES) and side["sha256"] == rep["sha256"]
    ext = load_extractor(world["root"] / "judge" / "judge.pt", "judge")
    assert (ext.name, ext.note, ext.class_map) == (JUDGE_LABEL, JUDGE_NOTE, list(CLASSES))


def test_reference_stats_match_one_pass_extraction(world):
    root = world["root"]
    ref = ClassStats.load(root / "refstats")
    assert ref.classes == list(CLASSES)
    info = json.loads((root / "refstats" / "refstats.json").read_text())
    assert info == world["ref"]
    assert info["extractor"] == JUDGE_LABEL and info["n"] == 3 * REAL_PER_CLASS
    assert info["class_counts"] == {str(c): REAL_PER_CLASS for c in CLASSES} and info["kid_reservoir"] == 20
    assert ref.overall.n == 3 * REAL_PER_CLASS and ref.overall.reservoir.shape == (20, info["feature_dim"])
    # class-by-class streaming gives the statistics of a single pass over the shards in storage order
    ext = load_extractor(root / "judge" / "judge.pt", "judge")
    ds = shards.ShardDataset(root / "real", fields=("images", "y"))
    overall, per = StatsAccumulator(ext.feature_dim), {c: StatsAccumulator(ext.feature_dim) for c in CLASSES}
    for b in ds.iter_read(np.arange(len(ds)), batch_size=11):
        feats, _ = ext(torch.from_numpy(b["images"].transpose(0, 3, 1, 2).copy()), need_probs=False)
        overall.update(feats)
        for c in CLASSES:
            per[c].update(feats[b["y"] == c])
    one = overall.finalize()
    np.testing.assert_allclose(ref.overall.mean, one.mean, rtol=1e-6, atol=1e-7)
    assert abs(frechet_distance(ref.overall, one)) < 1e-6
    for c in CLASSES:
        assert ref[c].n == REAL_PER_CLASS
        np.testing.assert_allclose(ref[c].mean, per[c].finalize().mean, rtol=1e-6, atol=1e-7)


# ---- metrics.json ------------------------------------------------------------------------------------------

PRDC = ["precision", "recall", "density", "coverage"]
NUMERIC = ["is", "is_std", "fid", "intra_fid", "kid", "kid_std", *PRDC, "g_params", "d_params", "g_macs",
           *(f"teacher_{k}" for k in ["is", "is_std", "fid", "intra_fid", "kid", "kid_std", *PRDC])]
# metrics only: no params or settings (seed, n_samples, kid_subsets, ...), no nested copies; strings only where
# they say how to read a metric
KEYS = {*NUMERIC, "teacher_g_params", "teacher_g_macs", "teacher_figures", "compression_ratio", "macs_ratio",
        "extractor", "extractor_note", "teacher_note", "teacher_samples", "protocol"}


def test_metrics_schema(world):
    m = json.loads((world["out"] / "metrics.json").read_text())
    assert m == json.loads(json.dumps(world["metrics"]))
    assert set(m) == KEYS and not any(isinstance(v, (dict, list)) for v in m.values())
    for key in NUMERIC:
        assert isinstance(m[key], (int, float)) and not isinstance(m[key], bool) and math.isfinite(m[key]), key
    assert m["extractor"] == JUDGE_LABEL and m["extractor_note"] == JUDGE_NOTE == "not Inception; demo figures only"
    assert m["is"] >= 1.0 and m["teacher_is"] >= 1.0
    G = Generator(variant="dw", ch=4)
    assert m["g_params"] == sum(p.numel() for p in G.parameters()) and m["g_macs"] > 0 and m["d_params"] > 0
    # demo teacher (by the manifest's teacher_info, whatever the handle): no published figures, labelled as
    # such; the ratios are null (dvc skips them)
    assert m["teacher_figures"] == DEMO_INFO["source"] and m["teacher_g_params"] is None
    assert m["compression_ratio"] is None and m["macs_ratio"] is None
    # fewer teacher images than asked for: said so
    assert f"the {3 * TEACHER_PER_CLASS} stored teacher images" in m["teacher_note"]
    assert "fewer than n_samples" in m["teacher_note"] and "per_class_samples" in m["teacher_note"]


def test_intra_fid_is_mean_of_per_class_table(world):
    rows = read_csv(world["out"] / "per_class.csv")
    assert list(rows[0]) == ["class", "wnid", "name", "student_intra_fid", "teacher_intra_fid",
                             *(f"{who}_{k}" for who in ("student", "teacher") for k in PRDC)]
    assert [int(r["class"]) for r in rows] == list(CLASSES)
    assert rows[0]["wnid"] == "n01443537" and rows[0]["name"] == "goldfish"
    m = world["metrics"]
    assert m["intra_fid"] == pytest.approx(np.mean([float(r["student_intra_fid"]) for r in rows]), rel=1e-5)
    assert m["teacher_intra_fid"] == pytest.approx(np.mean([float(r["teacher_intra_fid"]) for r in rows]), rel=1e-5)


def test_teacher_is_closer_to_real_than_untrained_student(world):
    m = world["metrics"]
    assert m["teacher_fid"] < m["fid"]
    assert m["teacher_intra_fid"] < m["intra_fid"]
    assert m["teacher_kid"] < m["kid"]


def test_figures_exist(world):
    out = world["out"]
    for name in ("worst10.png", "interpolation.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.width > 100 and im.height > 100, name
    # the charts of per_class.csv and fid_curve.csv are drawn by `dvc plots` (dvc.yaml), not here
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["metrics.json", "per_class.csv", "fid_curve.csv", "worst10.png", "interpolation.png"])
    with Image.open(out / "worst10.png") as im:  # header + one row per class (3 < 10)
        assert im.height == 20 + 128 * len(CLASSES)
    with Image.open(out / "interpolation.png") as im:  # caption + 3 class rows, caption + 3 seed rows; 8 steps
        assert im.size == (8 * 128, 6 * 128 + 2 * 18)


def test_fid_curve_from_snapshots(world):
    rows = read_csv(world["out"] / "fid_curve.csv")
    assert [int(r["step"]) for r in rows] == [10, 20]
    assert all(math.isfinite(float(r["fid"])) for r in rows)
    assert "fid_curve_note" not in world["metrics"]


def test_no_snapshots_header_only_and_deterministic(world, tmp_path):
    m = run_eval(world, tmp_path / "out", snapshots_dir=tmp_path / "none")
    assert (tmp_path / "out" / "fid_curve.csv").read_text() == "step,fid\n"
    assert "no G-<step>.safetensors snapshots" in m["fid_curve_note"]
    for key in ("is", "fid", "kid", "kid_std", "intra_fid", "teacher_fid", "teacher_intra_fid", *PRDC):
        assert m[key] == world["metrics"][key], key  # same arguments, same numbers
    assert (tmp_path / "out" / "per_class.csv").read_bytes() == (world["out"] / "per_class.csv").read_bytes()


def test_stale_reference_stats_are_rejected(world, tmp_path):
    ref = tmp_path / "refstats"
    shutil.copytree(world["root"] / "refstats", ref)
    info = json.loads((ref / "refstats.json").read_text())
    (ref / "refstats.json").write_text(json.dumps(dict(info, extractor_sha256="0" * 64)))
    with pytest.raises(TinyGANError, match="rerun the reference statistics stage"):
        run_eval(world, tmp_path / "out", refstats_dir=ref)


def test_teacher_manifest_without_teacher_info_is_rejected(world, tmp_path):
    write_teacher(tmp_path / "teacher", CLASSES, TEACHER_PER_CLASS, seed=2, teacher_info=None)
    root = world["root"]
    with pytest.raises(TinyGANError, match="no teacher_info; rerun the sample stage"):
        evaluate(world["cfg"], root / "student" / "generator.safetensors", tmp_path / "teacher", root / "refstats",
                 tmp_path / "out")


def test_missing_extractor_surfaces(world, tmp_path):
    with pytest.raises(TinyGANError, match="demo judge not found"):
        run_eval(world, tmp_path / "out", extractor_path=str(tmp_path / "nope.pt"))


def test_crash_mid_write_keeps_old_outputs_then_a_rerun_replaces_them(world, tmp_path, monkeypatch):
    from tinygan import evaluate as ev
    from tinygan.io import is_temp_name

    out = tmp_path / "out"
    shutil.copytree(world["out"], out)
    (out / "per_class.png").write_text("a chart an earlier version drew")  # replaced away, not refused
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (tmp_path / ".out.k1lled00.tmp").mkdir()  # what a killed run left: its half-written directory ...
    (tmp_path / ".out.k1lled00.tmp" / "per_class.csv").write_text("half")
    (out / ".metrics.json.k1lled01.tmp").write_text("{")  # ... and a temp file inside the old one
    real = ev.save_png

    def save_png(path, image):  # dies once the CSVs are written
        if path.name == "worst10.png":
            raise RuntimeError("killed")
        return real(path, image)
    monkeypatch.setattr(ev, "save_png", save_png)
    with pytest.raises(RuntimeError, match="killed"):
        run_eval(world, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no new CSVs beside the old metrics.json
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # leftovers removed at the start

    monkeypatch.setattr(ev, "save_png", real)
    m = run_eval(world, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(ev.OUT_FILES)
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(m))
    assert (out / "fid_curve.csv").read_text() == "step,fid\n"  # the new run's (no snapshots), not the old one
    assert not any(is_temp_name(p.name) for p in tmp_path.iterdir())


def test_evaluate_refuses_an_out_dir_with_other_files_before_measuring(world, tmp_path, monkeypatch):
    from tinygan import evaluate as ev

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("precious")
    monkeypatch.setattr(ev, "load_extractor", lambda *a, **k: pytest.fail("measured before checking out_dir"))
    with pytest.raises(TinyGANError, match="holds thesis.tex"):
        run_eval(world, tmp_path / "out")
    assert (tmp_path / "out" / "thesis.tex").read_text() == "precious"


# ---- options -------------------------------------------------------------------------------------------------

PARAM_FIELDS = {"classes", "n_samples", "per_class_samples", "curve_samples", "truncation", "seed", "extractor_kind",
                "extractor_path", "protocol", "encoder", "d_ch", "device", "batch_size", "teacher_samples",
                "pr_samples"}


def test_eval_config_takes_every_setting_from_params_and_has_no_defaults_of_its_own():
    p = params.load(ROOT / "params.yaml")
    p["evaluate"].update(n_samples=123, per_class_samples=7, curve_samples=9, pr_samples=11)
    p["runtime"]["evaluate"].update(device="cpu", batch_size=5)
    cfg = EvalConfig.from_params(p)
    e = p["evaluate"]
    assert cfg.classes == tuple(p["classes"])
    assert (cfg.n_samples, cfg.per_class_samples, cfg.curve_samples, cfg.pr_samples) == (123, 7, 9, 11)
    assert (cfg.extractor_kind, cfg.extractor_path) == (e["extractor"], e["extractor_path"])
    assert (cfg.truncation, cfg.seed, cfg.d_ch) == (p["sample"]["truncation"], p["seed"], p["train"]["d_ch"])
    assert (cfg.device, cfg.batch_size) == ("cpu", 5)
    assert cfg.teacher_samples == e["teacher_samples"]
    # what comes from params has no default here (no second set of defaults to drift apart)
    assert {f.name for f in dataclasses.fields(EvalConfig) if f.default is dataclasses.MISSING} == PARAM_FIELDS


@pytest.mark.parametrize("change,match", [
    ({"classes": (1, 9, 1)}, "duplicates"),
    ({"classes": ()}, "no classes"),
    ({"n_samples": 5}, "n_samples must be an integer >= 10"),
    ({"batch_size": 0}, "batch_size"),
    ({"truncation": 1.5}, "truncation"),
    ({"teacher_samples": "both"}, "teacher_samples must be one of fresh, stored"),
])
def test_bad_eval_config_is_a_one_line_user_error(change, match):
    cfg = EvalConfig.from_params(params.load(ROOT / "params.yaml"))
    with pytest.raises(TinyGANError, match=match) as e:
        dataclasses.replace(cfg, **change)
    assert "\n" not in str(e.value)


# ---- pieces --------------------------------------------------------------------------------------------------

def test_streaming_inception_score_equals_batch_formula():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (103, 7))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    feats = rng.normal(size=(103, 4))
    m = _Measure(4, 103, splits=10)
    a = 0
    for size in (1, 13, 5, 40, 2, 42):
        m.update(feats[a:a + size], probs[a:a + size])
        a += size
    _, mean, std = m.result()
    ref_mean, ref_std = inception_score(probs, splits=10)
    assert mean == pytest.approx(ref_mean, rel=1e-12) and std == pytest.approx(ref_std, rel=1e-9, abs=1e-12)


def test_published_teacher_figures():
    G = Generator(variant="dw", ch=4)
    comp = _compression(G, 4, torch.device("cpu"), describe(BIGGAN_URL, "tfhub"))
    assert comp["teacher_g_params"] == 50_400_000 and comp["teacher_g_macs"] == 8_320_000_000
    assert comp["teacher_figures"] == PUBLISHED[BIGGAN_URL]["source"] and "published" in comp["teacher_figures"]
    assert comp["g_params"] == sum(p.numel() for p in G.parameters())
    assert comp["compression_ratio"] == pytest.approx(50.4e6 / comp["g_params"])
    assert comp["macs_ratio"] == pytest.approx(8.32e9 / comp["g_macs"])


# ---- the demo judge on the demo world ----------------------------------------------------------------------

DEMO = (1, 130, 388)  # goldfish, flamingo, giant panda


@pytest.fixture(scope="module")
def demo_judge(tmp_path_factory):
    from tinygan.demo.teacher import save_teacher
    from tinygan.demo.tree import make_tree
    from tinygan.prepare import prepare
    from tinygan.teacher import load_teacher, truncated_z_batch

    root = tmp_path_factory.mktemp("demo_judge")
    make_tree(root / "tree", list(DEMO), images_per_class=24, seed=0, min_side=64, max_side=96, progress=False)
    prepare(root / "tree", root / "real", list(DEMO), max_per_class=None, resolution=128, shard_size=64, workers=1,
            progress=False)
    report = train_demo_judge(root / "real", root / "judge.pt", seed=0, epochs=12, progress=False)
    save_teacher(root / "teacher")
    teacher = load_teacher(str(root / "teacher"))
    y = np.repeat(np.asarray(DEMO, np.int64), 6)
    k = np.tile(np.arange(6), len(DEMO))
    x = teacher(truncated_z_batch(1, y, k, 0.5), y, 0.5)
    images = np.clip(np.floor((x + 1) * 127.5 + 0.5), 0, 255).astype(np.uint8)
    return report, load_extractor(root / "judge.pt", "judge"), images, y


def test_demo_judge_distinguishes_teacher_classes(demo_judge):
    report, ext, images, y = demo_judge
    # 24 good images per class plus the demo tree's readable odd files (grayscale, CMYK, PNG bytes)
    assert report["classes"] == list(DEMO) and report["num_train"] + report["num_heldout"] >= 3 * 24
    feats, probs = ext(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
    pred = np.asarray(ext.class_map)[probs.argmax(1)]
    assert (pred == y).mean() >= 0.8
    # features: samples of one class are closer to their own class mean than to the other classes' means
    means = {c: feats[y == c].mean(0) for c in DEMO}
    nearest = np.asarray([min(DEMO, key=lambda c: np.linalg.norm(f - means[c])) for f in feats])
    assert (nearest == y).mean() >= 0.8


def test_folder_data_names_and_stylegan_noise_reach_the_outputs(world, tmp_path, monkeypatch):
    """A class-folder real manifest names the classes in per_class.csv (no wnid); a stylegan teacher's
    recipe draws the student's noise (standard normal) everywhere, the interpolation sheet included."""
    import tinygan.evaluate as ev
    import tinygan.generate as gen

    root = world["root"]
    for name in ("real", "teacher"):
        shutil.copytree(root / name, tmp_path / name)
    real = json.loads((tmp_path / "real" / "manifest.json").read_text())
    real.update(layout="folders", c_dim=131, class_names={str(c): f"folder{c}" for c in range(131)})
    (tmp_path / "real" / "manifest.json").write_text(json.dumps(real))
    teacher = json.loads((tmp_path / "teacher" / "manifest.json").read_text())
    teacher.update(latent="stylegan", z_dim=128)
    (tmp_path / "teacher" / "manifest.json").write_text(json.dumps(teacher))
    latents = []
    for mod, name in ((ev, "draw_z"), (gen, "latent_z")):
        real_fn = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda latent, *a, _f=real_fn: latents.append(latent) or _f(latent, *a))
    evaluate(world["cfg"], root / "student" / "generator.safetensors", tmp_path / "teacher", root / "refstats",
             tmp_path / "out", real_dir=tmp_path / "real")
    rows = read_csv(tmp_path / "out" / "per_class.csv")
    assert [(r["class"], r["wnid"], r["name"]) for r in rows] == [(str(c), "", f"folder{c}") for c in CLASSES]
    assert latents and set(latents) == {"stylegan"}


def test_class_labels_of_imagenet_data_are_the_imagenet_table(world):
    from tinygan.evaluate import class_labels

    m = shards.read_manifest(world["root"] / "real")
    assert class_labels(m, CLASSES) == class_labels(None, CLASSES)
    assert class_labels(m, CLASSES)[1] == ("n01443537", "goldfish")


# ---- the teacher row: fresh evaluation set (the authors' way) vs the stored training pairs -----------------------

def test_fresh_teacher_set_is_measured_and_named(world, tmp_path):
    fresh = tmp_path / "teacher_eval"
    write_teacher(fresh, CLASSES, PER_CLASS, seed=5, noise_seed=evaluation_seed(0))
    m = run_eval(world, tmp_path / "out", teacher_eval_dir=fresh, teacher_samples="fresh")
    assert m["teacher_samples"].startswith(f"fresh: {PER_CLASS} new teacher images per class")
    assert world["metrics"]["teacher_samples"].startswith("stored: the training pairs")
    # other images, other teacher figures; the teacher intra-FID now has per_class_samples images of each class
    assert m["teacher_fid"] != world["metrics"]["teacher_fid"]
    assert "fewer than per_class_samples" not in (m.get("teacher_note") or "")


def test_fresh_mode_evaluates_the_student_on_the_evaluation_noise(world):
    cfg = world["cfg"]
    assert cfg.noise_seed == 0  # stored: the training pairs' noise, as the stored teacher images
    fresh = dataclasses.replace(cfg, teacher_samples="fresh")
    assert fresh.noise_seed == evaluation_seed(0) != 0
    a = draw_z("biggan", fresh.noise_seed, [1, 1], [0, 1], 0.5)
    b = draw_z("biggan", cfg.noise_seed, [1, 1], [0, 1], 0.5)
    assert not np.allclose(a, b)


@pytest.mark.parametrize("noise_seed,per_class,match", [
    (0, PER_CLASS, "not drawn with the evaluation noise of seed 0"),
    (None, PER_CLASS, "not drawn with the evaluation noise"),
    ("eval", PER_CLASS - 1, f"fewer than per_class_samples={PER_CLASS}"),
])
def test_a_stale_fresh_teacher_set_is_one_line(world, tmp_path, noise_seed, per_class, match):
    fresh = tmp_path / "teacher_eval"
    write_teacher(fresh, CLASSES, per_class, seed=5, noise_seed=evaluation_seed(0) if noise_seed == "eval" else noise_seed)
    with pytest.raises(TinyGANError, match=match) as e:
        run_eval(world, tmp_path / "out", teacher_eval_dir=fresh, teacher_samples="fresh")
    assert "\n" not in str(e.value) and "teacher_eval" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_precision_recall_density_coverage_overall_and_per_class(world):
    m, rows = world["metrics"], read_csv(world["out"] / "per_class.csv")
    for who in ("", "teacher_"):
        assert all(0 <= m[f"{who}{k}"] <= 1 for k in ("precision", "recall", "coverage")) and m[f"{who}density"] >= 0
        assert m[f"{who}kid_std"] > 0
    # the teacher's images come from the real images' process; the untrained student's do not
    assert m["teacher_precision"] > m["precision"] and m["teacher_coverage"] > m["coverage"]
    for r in rows:
        for k in PRDC:
            assert r[f"student_{k}"] != "" and r[f"teacher_{k}"] != ""  # 14 / 12 images per class: enough for k=5
        assert float(r["teacher_coverage"]) >= float(r["student_coverage"])


@pytest.mark.parametrize("name", ["overall.npz", "class_0009.npz"])
def test_nan_in_reference_statistics_is_a_one_line_error(world, tmp_path, name):
    ref = tmp_path / "refstats"
    shutil.copytree(world["root"] / "refstats", ref)
    with np.load(ref / name) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["mean"] = arrays["mean"].copy()
    arrays["mean"][5] = np.nan
    from tinygan.frechet import save_npz

    save_npz(ref / name, arrays)
    with pytest.raises(TinyGANError, match=rf"{name}: mean: 1 NaN/inf") as e:
        run_eval(world, tmp_path / "out", refstats_dir=ref)
    assert "\n" not in str(e.value)


def test_reference_without_class_features_leaves_that_class_blank_and_says_so(world, tmp_path):
    from tinygan.frechet import Stats

    ref = tmp_path / "refstats"
    shutil.copytree(world["root"] / "refstats", ref)
    kept = Stats.load(ref / "class_0009.npz")  # mean/covariance only, as imported statistics
    Stats.from_moments(kept.mean, kept.cov(), kept.n).save(ref / "class_0009.npz")
    m = run_eval(world, tmp_path / "out", refstats_dir=ref)
    rows = {int(r["class"]): r for r in read_csv(tmp_path / "out" / "per_class.csv")}
    assert all(rows[9][f"{who}_{k}"] == "" for who in ("student", "teacher") for k in PRDC)
    assert all(rows[1][f"student_{k}"] != "" for k in PRDC)
    assert "empty for 1 of 3 classes" in m["prdc_note"]
    assert m["intra_fid"] == pytest.approx(world["metrics"]["intra_fid"], rel=1e-6)  # FID needs no raw features


def _tiny_encoder(path) -> dict:
    """A features-only TorchScript encoder (d = 5) saved at ``path``; returns its evaluate.encoder settings."""
    torch.manual_seed(0)
    enc = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, 2, 1), torch.nn.Tanh(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten())
    torch.jit.save(torch.jit.script(enc), str(path))
    return {"input_size": 32, "input_range": "signed", "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}


def test_a_features_only_encoder_gives_fid_and_no_is(world, tmp_path):
    """evaluate.extractor torchscript (any image encoder, e.g. DINOv2): FID / intra-FID / KID, IS null with a note,
    under the authors' protocol (float images)."""
    encoder = _tiny_encoder(tmp_path / "enc.pt")
    info = reference_stats(world["root"] / "real", tmp_path / "enc.pt", "torchscript", tmp_path / "ref", batch_size=16,
                           progress=False, kid_reservoir=20, protocol="authors", encoder=encoder)
    assert info["extractor"] == "torchscript enc.pt" and info["feature_dim"] == 5
    m = run_eval(world, tmp_path / "out", refstats_dir=tmp_path / "ref", extractor_kind="torchscript",
                 extractor_path=str(tmp_path / "enc.pt"), protocol="authors", encoder=encoder)
    assert m["is"] is None and m["teacher_is"] is None and "IS n/a" in m["is_note"]
    assert all(math.isfinite(m[k]) for k in ("fid", "kid", "intra_fid", "teacher_fid"))
    assert m["protocol"] == "authors" and m["extractor"] == "torchscript enc.pt"


def test_the_authors_protocol_end_to_end_with_the_judge(world, tmp_path):
    """evaluate.protocol authors: float images, reference statistics of the same protocol; the figures are those
    of other inputs than stylegan2-ada's (the uint8 round trip is gone), and metrics.json says which."""
    judge = world["root"] / "judge" / "judge.pt"
    info = reference_stats(world["root"] / "real", judge, "judge", tmp_path / "ref", batch_size=16, progress=False,
                           kid_reservoir=20, protocol="authors")
    assert info["protocol"] == "authors" and info["preprocessing"] != world["ref"]["preprocessing"]
    m = run_eval(world, tmp_path / "out", refstats_dir=tmp_path / "ref", protocol="authors")
    sg = world["metrics"]
    assert m["protocol"] == "authors" and sg["protocol"] == "stylegan2-ada"
    assert all(math.isfinite(m[k]) for k in NUMERIC if m.get(k) is not None)
    assert m["is"] != sg["is"] and m["fid"] != sg["fid"]
    with pytest.raises(TinyGANError, match="evaluate.protocol"):  # stylegan2-ada's statistics under authors
        run_eval(world, tmp_path / "out2", protocol="authors")


def test_classes_with_more_images_than_dimensions_keep_a_seeded_sample_for_precision_recall(world, tmp_path):
    """A class with n > d keeps a scatter matrix, not its features: refstats then stores a reservoir of pr_samples
    rows of it (and none for a class whose features are kept: they are the sample)."""
    encoder = _tiny_encoder(tmp_path / "enc.pt")
    info = reference_stats(world["root"] / "real", tmp_path / "enc.pt", "torchscript", tmp_path / "ref", batch_size=16,
                           progress=False, kid_reservoir=20, encoder=encoder, pr_samples=10)
    assert info["pr_samples"] == 10
    ref = ClassStats.load(tmp_path / "ref")
    assert ref[1].feats is None and ref[1].reservoir.shape == (10, 5)  # 16 images > d = 5
    m = run_eval(world, tmp_path / "out", refstats_dir=tmp_path / "ref", extractor_kind="torchscript",
                 extractor_path=str(tmp_path / "enc.pt"), encoder=encoder, pr_samples=10)
    assert "prdc_note" not in m and all(0 <= m[k] <= 1 for k in ("precision", "recall", "coverage"))
    rows = read_csv(tmp_path / "out" / "per_class.csv")
    assert all(r[f"{who}_{k}"] != "" for r in rows for who in ("student", "teacher") for k in PRDC)


def test_student_images_are_made_in_ieee_float32(monkeypatch):
    """evaluate's student images come from G with CUDA's TF32 off whatever the process allows, as the
    extractor's features (test_extractors), so a GPU's figures are IEEE float32 ones; the settings come back."""
    from types import SimpleNamespace

    from tinygan.evaluate import _generated

    for flags in (torch.backends.cudnn, torch.backends.cuda.matmul):
        monkeypatch.setattr(flags, "allow_tf32", True)
    seen = []

    def G(z, y):
        seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        return torch.zeros(len(z), 3, 4, 4)
    inp = SimpleNamespace(cfg=SimpleNamespace(batch_size=2, noise_seed=0, truncation=0.5), device=torch.device("cpu"),
                          latent="biggan", z_dim=128)
    out = list(_generated(G, np.array([1, 1, 2]), np.array([0, 1, 0]), inp))
    assert [len(x) for x in out] == [2, 1] and seen == [(False, False)] * 2
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (True, True)
