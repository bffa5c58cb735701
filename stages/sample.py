"""Stage `sample`: query the teacher once -> (z, y, image) HDF5 shards + manifest (data/teacher).

Several processes/GPUs split the shards: `torchrun --nproc-per-node N -m stages.sample` (RANK/WORLD_SIZE),
or `--shard i/n` by hand. A rerun after a crash continues from the completed shards."""
import typer

from tinygan import params, prepare, sample
from tinygan.errors import ParamsFile, run_stage

OUT = "data/teacher"


def main(params_file: ParamsFile = "params.yaml",
         shard: str = typer.Option("", help="i/n: do only every n-th shard starting at i (default: RANK/WORLD_SIZE or 0/1)")) -> None:
    """Sample exactly per_class teacher images for every selected class into data/teacher."""
    p = params.load(params_file)
    s = p["sample"]
    rank, world = sample.process_share(shard)
    sample.sample(s["teacher"], s["format"], OUT, classes=prepare.param_classes(p), per_class=s["per_class"],
                  truncation=s["truncation"], seed=p["seed"], batch_size=p["runtime"]["sample"]["batch_size"],
                  shard_size=s["shard_size"], rank=rank, world_size=world, latent=s["latent"])


if __name__ == "__main__":
    run_stage(main)
