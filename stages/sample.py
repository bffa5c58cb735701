"""Stage `sample`: query the teacher once -> (z, y, image) HDF5 shards + manifest (data/teacher).

Several processes/GPUs split the shards: `torchrun --nproc-per-node N -m stages.sample` (RANK/WORLD_SIZE),
or `--shard i/n` by hand. A rerun after a crash continues from the completed shards."""
import os

import typer

from tinygan import params, prepare, sample
from tinygan.errors import ParamsFile, run_stage
from tinygan.errors import TinyGANError

OUT = "data/teacher"


def main(params_file: ParamsFile = "params.yaml",
         shard: str = typer.Option("", help="i/n: do only every n-th shard starting at i (default: RANK/WORLD_SIZE or 0/1)")) -> None:
    """Sample exactly per_class teacher images for every selected class into data/teacher."""
    p = params.load(params_file)
    s = p["sample"]
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if shard:
        try:
            rank, world = (int(v) for v in shard.split("/"))
            assert 0 <= rank < world
        except (ValueError, AssertionError):
            raise TinyGANError(f"--shard {shard!r}: expected i/n with 0 <= i < n, e.g. --shard 0/4") from None
    sample.sample(s["teacher"], s["format"], OUT, classes=prepare.param_classes(p), per_class=s["per_class"],
                  truncation=s["truncation"], seed=p["seed"], batch_size=p["runtime"]["sample"]["batch_size"],
                  shard_size=s["shard_size"], rank=rank, world_size=world, latent=s["latent"])


if __name__ == "__main__":
    run_stage(main)
