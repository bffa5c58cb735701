"""Any teacher, end to end through the library (sample → prepare → train → reference stats → evaluate → export →
generate) at the teacher's shape:

- a CIFAR-10-shaped TorchScript teacher (32², 10 classes, z 512, StyleGAN-style latent, declared attributes) with
  a class-folder real tree;
- a 64² unconditional TorchScript teacher with a flat folder of real images;
- a 256² BigGAN-shaped TF SavedModel (z 128, 1000 classes, BigGAN latent) with an ImageNet-layout tree;
- a TF-Hub-style SavedModel whose output is declared [None, None, None, 3] (resolved by a dry call), 4 classes.
"""
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tinygan import params, shards
from tinygan.classes import wnid_of
from tinygan.demo.judge import train_demo_judge
from tinygan.evaluate import EvalConfig, evaluate, reference_stats
from tinygan.export import export
from tinygan.generate import generate
from tinygan.prepare import prepare
from tinygan.sample import sample
from tinygan.train import TrainConfig, train
from toy_teachers import save_tf_teacher, save_torchscript_teacher

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@dataclass
class Case:
    make_teacher: object        # tmp_path -> (handle, format)
    shape: tuple                # (z_dim, c_dim, resolution) the teacher declares
    latent: str                 # the recipe `latent: auto` resolves to
    layout: str                 # prepare.layout of the real tree
    classes: list               # teacher class indices used
    folders: list               # the real tree's folder names ("" = flat)
    picked: list                # what `generate -c` is given


CASES = {
    "cifar10_32px_z512_stylegan_torchscript": Case(
        lambda d: (save_torchscript_teacher(d / "t.pt", resolution=32,
                                            attrs={"z_dim": 512, "c_dim": 10, "img_resolution": 32}), "torchscript"),
        (512, 10, 32), "stylegan", "folders", list(range(10)), CIFAR, ["cat", "truck"]),
    "unconditional_64px_torchscript": Case(
        lambda d: (save_torchscript_teacher(d / "t.pt", resolution=64,
                                            attrs={"z_dim": 128, "c_dim": 0, "img_resolution": 64}), "torchscript"),
        (128, 0, 64), "stylegan", "flat", [0], [""], ["0"]),
    "biggan_shaped_256px_savedmodel": Case(
        lambda d: (save_tf_teacher(d / "t", resolution=256), "tfhub"),
        (128, 1000, 256), "biggan", "imagenet", [1, 9, 130], [wnid_of(c) for c in (1, 9, 130)], ["goldfish"]),
    "tfhub_output_dims_unknown_64px": Case(
        lambda d: (save_tf_teacher(d / "t", y_width=4, resolution=64, dynamic_output=True), "tfhub"),
        (128, 4, 64), "biggan", "folders", [0, 1, 2, 3], ["a", "b", "c", "d"], ["c"]),
}


def image_tree(root: Path, names: list[str], per_class: int, side: int) -> Path:
    """<root>/<name>/*.png (<root>/*.png for the name ""), each class its own colour."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(names):
        (root / name).mkdir(parents=True, exist_ok=True)
        colour = np.array([(c * 37) % 200 + 40, (c * 91) % 200 + 40, (c * 13) % 200 + 40], np.float32)
        for k in range(per_class):
            img = np.clip(colour + rng.normal(0, 20, (side, side, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{k}.png")
    return root


def _train(tmp_path: Path) -> tuple[Path, dict]:
    cfg = TrainConfig.from_params(params.load(ROOT / "params.yaml"), ch=4, d_ch=4, batch_size=8, epochs=5,
                                  holdout_per_class=2, checkpoint_every=100, sample_every=100, log_every=5,
                                  snapshot_every=0)
    gen = tmp_path / "student" / "generator.safetensors"
    summary = train(str(tmp_path / "teacher"), str(tmp_path / "real"), str(tmp_path / "ckpt.pt"), str(gen),
                    str(tmp_path / "live"), cfg, progress=False)
    return gen, summary


def _evaluate(tmp_path: Path, gen: Path, classes: list[int]) -> dict:
    judge = tmp_path / "judge.pt"
    train_demo_judge(tmp_path / "real", judge, seed=0, epochs=1, progress=False)
    reference_stats(tmp_path / "real", judge, "judge", tmp_path / "refstats", batch_size=20, progress=False,
                    kid_reservoir=20)
    cfg = EvalConfig(classes=tuple(classes), n_samples=20, per_class_samples=4, curve_samples=10, truncation=0.7,
                     seed=0, extractor_kind="judge", extractor_path=str(judge), protocol="stylegan2-ada",
                     encoder=None, d_ch=4, device="cpu", batch_size=10, teacher_samples="stored", pr_samples=20,
                     progress=False, kid_subsets=2, sheet_samples=2)
    return evaluate(cfg, gen, tmp_path / "teacher", tmp_path / "refstats", tmp_path / "eval",
                    real_dir=tmp_path / "real")


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_any_teacher_end_to_end(tmp_path, name):
    torch.set_num_threads(1)
    case = CASES[name]
    z_dim, c_dim, side = case.shape
    handle, fmt = case.make_teacher(tmp_path)
    per_class = max(64 // len(case.classes), 6) if side <= 64 else 8  # 256²: few pairs, CPU time
    man = sample(handle, fmt, str(tmp_path / "teacher"), case.classes, per_class=per_class, truncation=0.7, seed=0,
                 batch_size=16, shard_size=40, progress=False)
    assert (man["z_dim"], man["c_dim"], man["resolution"], man["latent"]) == (z_dim, c_dim, side, case.latent)
    tree = image_tree(tmp_path / "tree", case.folders, per_class=max(48 // len(case.folders), 6) if side <= 64 else 6,
                      side=side)
    selection = case.classes if case.layout == "imagenet" else "all"
    real = prepare(tree, tmp_path / "real", selection, None, resolution=side, shard_size=30, progress=False,
                   layout=case.layout)
    assert real["resolution"] == side

    gen, summary = _train(tmp_path)
    g_cfg = json.loads(gen.with_suffix(".json").read_text())
    assert (g_cfg["resolution"], g_cfg["n_classes"], g_cfg["z_dim"]) == (side, c_dim, z_dim)
    assert np.isfinite(summary["heldout_l1_end"])

    metrics = _evaluate(tmp_path, gen, case.classes)
    assert all(np.isfinite(metrics[k]) for k in ("is", "fid", "intra_fid", "kid", "teacher_fid"))

    report = export(str(gen), str(tmp_path / "export"), case.classes, truncation=0.7, latent=case.latent,
                    class_names=shards.own_class_names(real) or None,
                    metrics_path=str(tmp_path / "eval" / "metrics.json"))
    assert max(e["max_abs_diff"] for e in report["formats"].values()) <= report["atol"]
    assert set(report["formats"]) == {"safetensors", "torchscript", "onnx", "openvino"}
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert (config["resolution"], config["z_dim"], config.get("latent", "biggan")) == (side, z_dim, case.latent)
    out = generate(str(tmp_path / "export" / "generator.onnx"), str(tmp_path / "g.png"), case.picked, 3, 0.7, 0)
    assert Image.open(out[0]).size == (3 * side, len(case.picked) * side)


def test_students_learn_a_cifar10_shaped_teacher(tmp_path):
    """At 32²/z512 the student gets closer to the teacher (held-out L1 falls) in a few steps."""
    torch.set_num_threads(1)
    case = CASES["cifar10_32px_z512_stylegan_torchscript"]
    handle, fmt = case.make_teacher(tmp_path)
    sample(handle, fmt, str(tmp_path / "teacher"), case.classes, per_class=8, truncation=0.7, seed=0,
           batch_size=16, shard_size=40, progress=False)
    prepare(image_tree(tmp_path / "tree", CIFAR, 6, 32), tmp_path / "real", "all", None, resolution=32,
            shard_size=30, progress=False, layout="folders")
    _, summary = _train(tmp_path)
    assert summary["heldout_l1_end"] < summary["heldout_l1_start"]
