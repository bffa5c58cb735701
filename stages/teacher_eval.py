"""Stage `teacher_eval`: the authors' teacher evaluation set -> data/teacher_eval. For the teacher's row of
the metrics, `teacher_per_class` fresh teacher images per class, drawn with the evaluation noise stream
(`tinygan.teacher.evaluation_seed`) through the sample machinery (cached, resumable, split over ranks like
`sample`). With `evaluate.teacher_samples: stored` it leaves only a note: evaluate then uses data/teacher."""
import typer

from tinygan import params, prepare, sample
from tinygan.errors import ParamsFile, run_stage
from tinygan.teacher import evaluation_seed

OUT = "data/teacher_eval"


def main(params_file: ParamsFile = "params.yaml",
         shard: str = typer.Option("", help="i/n: do only every n-th shard starting at i (default: RANK/WORLD_SIZE or 0/1)")) -> None:
    """Sample evaluate.teacher_per_class fresh teacher images per evaluated class into data/teacher_eval."""
    p = params.load(params_file)
    s, e = p["sample"], p["evaluate"]
    if e["teacher_samples"] == "stored":
        return sample.mark_unused(OUT, "evaluate.teacher_samples is 'stored': evaluate measures the teacher on "
                                       "the training pairs in data/teacher, not on this set")
    rank, world = sample.process_share(shard)
    sample.clear_unused(OUT)
    sample.sample(s["teacher"], s["format"], OUT, classes=prepare.param_classes(p), per_class=e["teacher_per_class"],
                  truncation=s["truncation"], seed=evaluation_seed(p["seed"]),
                  batch_size=p["runtime"]["sample"]["batch_size"], shard_size=s["shard_size"], rank=rank,
                  world_size=world, latent=s["latent"])


if __name__ == "__main__":
    run_stage(main)
