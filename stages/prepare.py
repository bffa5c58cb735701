"""Stage `prepare`: train tree (ImageNet, class folders or flat) -> real-image HDF5 shards + manifest (data/real)."""
from tinygan import params, prepare
from tinygan.errors import ParamsFile, run_stage

OUT = "data/real"


def main(params_file: ParamsFile = "params.yaml") -> None:
    """Centre-crop, resize and shard the real training images of the selected classes into data/real."""
    p = params.load(params_file)
    q = p["prepare"]
    prepare.prepare(q["imagenet_train"], OUT, classes=p["classes"], max_per_class=q["max_per_class"],
                    resolution=q["resolution"], shard_size=q["shard_size"], workers=p["runtime"]["prepare"]["workers"],
                    layout=q["layout"], jpeg_draft=q["jpeg_draft"])


if __name__ == "__main__":
    run_stage(main)
