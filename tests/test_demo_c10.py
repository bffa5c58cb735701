"""The CIFAR-10-shaped demo world (tinygan/demo/cifar.py, profile demo-c10): its TorchScript teacher meets the
teacher contract, it is deterministic, and (slow) `dvc repro` of the demo-c10 profile runs every stage."""
import json
import sys

import numpy as np
import pytest
from PIL import Image

from tinygan.demo import cifar
from tinygan.teacher import describe, load_teacher

from test_pipeline import copy_repo, sh

TINY = ["demo.cifar10.images_per_class=8", "demo.cifar10.judge_epochs=2", "sample.per_class=6",
        "train.ch=4", "train.d_ch=4", "train.batch_size=8", "train.epochs=2", "train.holdout_per_class=2",
        "train.sample_every=4", "train.snapshot_every=4", "evaluate.n_samples=20", "evaluate.per_class_samples=2",
        "evaluate.curve_samples=10", "runtime.train.checkpoint_every=4", "runtime.train.log_every=2",
        "runtime.evaluate.batch_size=10"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("c10")
    cifar.build(root, images_per_class=3, seed=0)
    return root


def test_teacher_meets_the_torchscript_contract(world):
    t = load_teacher(str(world / cifar.TEACHER_FILE), "torchscript")
    assert (t.z_dim, t.c_dim, t.resolution, t.latent) == (512, 10, 32, "stylegan")
    z = np.random.default_rng(0).standard_normal([4, 512]).astype(np.float32)
    img = t(z, np.array([0, 0, 8, 8]), 0.7)
    assert img.shape == (4, 32, 32, 3) and np.abs(img).max() <= 1.0
    assert np.abs(img[0] - img[2]).mean() > 0.1, "classes must look different"
    flat = t(z, np.array([0, 0, 8, 8]), 0.0)
    assert np.abs(flat[0] - flat[1]).max() < 1e-6, "ψ = 0 gives every z of a class the mean style"
    assert describe(str(world / cifar.TEACHER_FILE), "torchscript")["name"] == cifar.ABOUT["name"]


def test_world_is_deterministic_and_has_bad_files(world, tmp_path):
    cifar.build(tmp_path, images_per_class=3, seed=0)
    for f in sorted(p for p in world.rglob("*") if p.is_file()):
        assert f.read_bytes() == (tmp_path / f.relative_to(world)).read_bytes(), f
    tree = world / cifar.TREE_DIR
    assert sorted(p.name for p in tree.iterdir()) == list(cifar.CLASS_NAMES)
    assert Image.open(tree / "truck" / "0002.png").size == (32, 32)
    assert (tree / "bird" / "bad_empty.png").stat().st_size == 0
    cifar.build(tmp_path, images_per_class=3, seed=1)
    assert (tmp_path / "cifar10/train/cat/0000.png").read_bytes() != (tree / "cat" / "0000.png").read_bytes()


@pytest.mark.slow
def test_dvc_repro_of_the_demo_c10_profile(tmp_path):
    from tinygan import profiles

    copy_repo(tmp_path)
    (tmp_path / "params.yaml").write_text(profiles.compose_yaml("demo-c10", overrides=TINY))
    sh("git init -q && git add -A && git commit -qm base", tmp_path)
    res = sh("dvc repro", tmp_path)
    log = res.stdout + res.stderr
    for stage in ("demo@cifar10", "prepare", "sample", "train", "refstats", "evaluate", "export"):
        assert f"Running stage '{stage}'" in log, stage
    teacher = json.loads((tmp_path / "data/teacher/manifest.json").read_text())
    assert (teacher["z_dim"], teacher["c_dim"], teacher["resolution"], teacher["latent"]) == (512, 10, 32,
                                                                                             "stylegan")
    g_cfg = json.loads((tmp_path / "data/student/generator.json").read_text())
    assert (g_cfg["resolution"], g_cfg["n_classes"], g_cfg["z_dim"]) == (32, 10, 512)
    metrics = json.loads((tmp_path / "eval/metrics.json").read_text())
    assert all(np.isfinite(metrics[k]) for k in ("is", "fid", "intra_fid", "kid", "teacher_fid"))
    assert metrics["extractor_note"] == "not Inception; demo figures only"
    assert (tmp_path / "export/generator.onnx").is_file()
    sh(f"{sys.executable} -m tinygan.cli generate export/generator.onnx -c cat -n 2 -o cats.png", tmp_path)
    assert Image.open(tmp_path / "cats.png").size == (2 * 32, 32)
