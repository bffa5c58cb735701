"""Stage `demo`: build the offline demo world in demo.root — a synthetic ImageNet-layout train tree
(imagenet/train/<wnid>/*.JPEG, bad files included), a procedural teacher SavedModel with BigGAN-deep-128's
interface (teacher/), and preview.png."""
from tinygan import demo, params
from tinygan.cli import run_stage


def main(params_file: str = "params.yaml") -> None:
    """Build the demo world (see module docstring)."""
    p = params.load(params_file)
    d = p["demo"]
    demo.build(d["root"], classes=sorted(demo.DEMO_CLASSES), images_per_class=d["images_per_class"],
               seed=p["seed"], min_side=d["min_side"], max_side=d["max_side"])


if __name__ == "__main__":
    run_stage(main)
