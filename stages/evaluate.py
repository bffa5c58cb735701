"""Stage `evaluate`: IS, FID, intra-FID and KID of the student and of the teacher's samples against the real
images; the compression table; the per-class and FID-over-training tables (charts drawn by `dvc plots`) and the
image sheets (paper Fig. 10, 11) -> eval/."""
from tinygan import evaluate, params
from tinygan.errors import ParamsFile, run_stage


def main(params_file: ParamsFile = "params.yaml") -> None:
    """Evaluate data/student against data/refstats (and the teacher's fresh evaluation set data/teacher_eval, or
    its training pairs data/teacher, for comparison); write eval/."""
    cfg = evaluate.EvalConfig.from_params(params.load(params_file))
    evaluate.evaluate(cfg, "data/student/generator.safetensors", "data/teacher", "data/refstats", "eval",
                      snapshots_dir="data/train/snapshots", real_dir="data/real",
                      teacher_eval_dir="data/teacher_eval")


if __name__ == "__main__":
    run_stage(main)
