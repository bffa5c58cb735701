"""Stage `evaluate`: IS, FID, intra-FID and KID of the student and of the teacher's samples against the real
images; the compression table; per-class table and plots (paper Fig. 8-11) -> eval/."""
from tinygan import evaluate, params
from tinygan.errors import run_stage


def main(params_file: str = "params.yaml") -> None:
    """Evaluate data/student against data/refstats (and data/teacher for comparison); write eval/."""
    p = params.load(params_file)
    e = p["evaluate"]
    evaluate.evaluate("data/student/generator.safetensors", "data/teacher", "data/refstats", e["extractor_path"],
                      e["extractor"], "eval", classes=p["classes"], n_samples=e["n_samples"],
                      per_class_samples=e["per_class_samples"], truncation=p["sample"]["truncation"],
                      seed=p["seed"], **p["runtime"]["evaluate"],
                      snapshots_dir="data/train/snapshots", d_ch=p["train"]["d_ch"],
                      curve_samples=e["curve_samples"])


if __name__ == "__main__":
    run_stage(main)
