"""Stage `demo`: build the offline demo world in demo.root. Kind imagenet: a synthetic ImageNet-layout train
tree (imagenet/train/<wnid>/*.JPEG, bad files included) and a procedural teacher SavedModel with
BigGAN-deep-128's interface (teacher/); kind cifar10: a 32² tree (cifar10/train/<class name>/*.png) and a
z-512 StyleGAN-style TorchScript teacher (teacher/teacher.pt), see tinygan.demo.cifar. Both: the demo judge
(judge.pt: a small classifier trained on the tree's images, Inception's stand-in for the demo metrics) and
preview.png. One world of the params' `demo` group per run (`--world`)."""
import tempfile
from pathlib import Path

import typer

from tinygan import params, prepare
from tinygan.demo import cifar, judge
from tinygan.demo.classes import DEMO_CLASSES
from tinygan.demo.tree import check_sizes
from tinygan.demo.world import build
from tinygan.errors import ParamsFile, TinyGANError, run_stage


def main(world: str = typer.Option(..., help="which world of the params' `demo` group to build"),
         params_file: ParamsFile = "params.yaml") -> None:
    """Build the demo world (see module docstring)."""
    p = params.load(params_file)
    if world not in p["demo"]:
        raise TinyGANError(f"demo: no world {world!r} in params 'demo' (have: {', '.join(p['demo']) or 'none'})")
    d = p["demo"][world]
    check_sizes(d["images_per_class"], d["min_side"], d["max_side"], where=f"params 'demo.{world}'")
    root = Path(d["root"])
    if d["kind"] == "cifar10":
        tree, layout, classes, side = cifar.build(root, d["images_per_class"], p["seed"]), "folders", "all", 32
    else:
        tree, layout, classes, side = root / "imagenet" / "train", "imagenet", sorted(DEMO_CLASSES), 128
        build(root, classes=classes, images_per_class=d["images_per_class"], seed=p["seed"],
              min_side=d["min_side"], max_side=d["max_side"])
    with tempfile.TemporaryDirectory(dir=root) as tmp:  # the judge learns from the tree, decoded as prepare does
        prepare.prepare(tree, tmp, classes=classes, max_per_class=None, resolution=side, layout=layout)
        report = judge.train_demo_judge(tmp, root / "judge.pt", seed=p["seed"], epochs=d["judge_epochs"])
    print(f"demo judge: train accuracy {report.get('train_accuracy')}, held-out {report.get('heldout_accuracy')}")


if __name__ == "__main__":
    run_stage(main)
