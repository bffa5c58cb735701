"""Stage `refstats`: feature statistics of the real images (overall and per class) with the evaluation's
feature extractor, computed once and cached as their own output (data/refstats)."""
from tinygan import evaluate, params
from tinygan.cli import run_stage


def main(params_file: str = "params.yaml") -> None:
    """Stream every real image of data/real through the extractor; save compact exact statistics."""
    p = params.load(params_file)
    e = p["evaluate"]
    evaluate.reference_stats("data/real", e["extractor_path"], e["extractor"], "data/refstats",
                             batch_size=e["batch_size"], device=e["device"], seed=p["seed"])


if __name__ == "__main__":
    run_stage(main)
