"""Stage `refstats`: feature statistics of the real images (overall and per class) with the evaluation's
feature extractor, computed once and cached as their own output (data/refstats)."""
from tinygan import evaluate, params
from tinygan.errors import ParamsFile, run_stage


def main(params_file: ParamsFile = "params.yaml") -> None:
    """Stream every real image of data/real through the extractor; save compact exact statistics."""
    p = params.load(params_file)
    e = p["evaluate"]
    evaluate.reference_stats("data/real", e["extractor_path"], e["extractor"], "data/refstats",
                             seed=p["seed"], protocol=e["protocol"], encoder=e["encoder"], pr_samples=e["pr_samples"],
                             **p["runtime"]["evaluate"])


if __name__ == "__main__":
    run_stage(main)
