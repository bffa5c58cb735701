"""Any teacher, end to end through the library (sample → prepare → train → reference stats → evaluate → export →
generate) at the teacher's shape: a CIFAR-10-shaped teacher (32², 10 classes, z 512, StyleGAN-style latent,
TorchScript with declared attributes) with a class-folder real tree, and a 64² unconditional teacher with a
flat folder of real images."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tinygan import params, shards
from tinygan.demo.judge import train_demo_judge
from tinygan.evaluate import EvalConfig, evaluate, reference_stats
from tinygan.export import export
from tinygan.generate import generate
from tinygan.prepare import prepare
from tinygan.sample import sample
from tinygan.train import TrainConfig, train
from toy_teachers import save_torchscript_teacher

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def image_tree(root: Path, names: list[str], per_class: int = 6, side: int = 32) -> Path:
    """<root>/<class name>/*.png (or <root>/*.png for names == [""]), each class its own colour."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(names):
        (root / name).mkdir(parents=True, exist_ok=True)
        colour = np.array([(c * 37) % 200 + 40, (c * 91) % 200 + 40, (c * 13) % 200 + 40], np.float32)
        for k in range(per_class):
            img = np.clip(colour + rng.normal(0, 20, (side, side, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{k}.png")
    return root


CASES = {  # teacher attributes, latent it implies, real-data layout, class names, class picked in generate
    "cifar10_32px_z512_stylegan": ({"z_dim": 512, "c_dim": 10, "img_resolution": 32}, "stylegan", "folders",
                                   NAMES, ["cat", "truck"]),
    "unconditional_64px": ({"z_dim": 128, "c_dim": 0, "img_resolution": 64}, "stylegan", "flat", [""], ["0"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_any_teacher_end_to_end(tmp_path, case):
    torch.set_num_threads(1)
    shape, latent, layout, names, picked = CASES[case]
    side, classes = shape["img_resolution"], list(range(max(shape["c_dim"], 1)))
    handle = save_torchscript_teacher(tmp_path / "teacher.pt", resolution=side, attrs=shape)
    man = sample(handle, "torchscript", str(tmp_path / "teacher"), classes, per_class=32 // len(classes) * 2 + 4,
                 truncation=0.7, seed=0, batch_size=16, shard_size=40, progress=False)
    assert (man["z_dim"], man["c_dim"], man["resolution"], man["latent"]) == (shape["z_dim"], shape["c_dim"], side,
                                                                               latent)
    tree = image_tree(tmp_path / "tree", names, per_class=6 if len(names) > 1 else 30, side=side)
    real = prepare(tree, tmp_path / "real", "all", None, resolution=side, shard_size=30, progress=False,
                   layout=layout)
    assert real["resolution"] == side and real.get("c_dim", 1000) == shape["c_dim"]

    cfg = TrainConfig.from_params(params.load(ROOT / "params.yaml"), ch=4, d_ch=4, batch_size=8, epochs=5,
                                  holdout_per_class=2, checkpoint_every=100, sample_every=100, log_every=5,
                                  snapshot_every=0)
    gen = tmp_path / "student" / "generator.safetensors"
    summary = train(str(tmp_path / "teacher"), str(tmp_path / "real"), str(tmp_path / "ckpt.pt"), str(gen),
                    str(tmp_path / "live"), cfg, progress=False)
    g_cfg = json.loads(gen.with_suffix(".json").read_text())
    assert (g_cfg["resolution"], g_cfg["n_classes"], g_cfg["z_dim"]) == (side, shape["c_dim"], shape["z_dim"])
    assert summary["heldout_l1_end"] < summary["heldout_l1_start"]

    judge = tmp_path / "judge.pt"
    train_demo_judge(tmp_path / "real", judge, seed=0, epochs=1, progress=False)
    reference_stats(tmp_path / "real", judge, "judge", tmp_path / "refstats", batch_size=20, progress=False,
                    kid_reservoir=20)
    ecfg = EvalConfig(classes=tuple(classes), n_samples=20, per_class_samples=4, curve_samples=10, truncation=0.7,
                      seed=0, extractor_kind="judge", extractor_path=str(judge), d_ch=4, device="cpu",
                      batch_size=10, progress=False, kid_subsets=2, sheet_samples=2)
    metrics = evaluate(ecfg, gen, tmp_path / "teacher", tmp_path / "refstats", tmp_path / "eval",
                       real_dir=tmp_path / "real")
    assert all(np.isfinite(metrics[k]) for k in ("is", "fid", "intra_fid", "kid", "teacher_fid"))
    assert names[-1] in (tmp_path / "eval" / "per_class.csv").read_text()

    report = export(str(gen), str(tmp_path / "export"), classes, truncation=0.7, latent=latent,
                    class_names=shards.own_class_names(real) or None,
                    metrics_path=str(tmp_path / "eval" / "metrics.json"))
    assert max(report[f] for f in ("safetensors", "torchscript", "onnx")) <= report["atol"]
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert (config["latent"], config["resolution"], config["z_dim"]) == (latent, side, shape["z_dim"])
    out = generate(str(tmp_path / "export" / "generator.onnx"), str(tmp_path / "g.png"), picked, 3, 0.7, 0)
    assert Image.open(out[0]).size == (3 * side, len(picked) * side)
