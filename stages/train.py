"""Stage `train`: distil the teacher into a TinyGAN student (paper Eq. 1-7).

Reads data/teacher and data/real; resumes from data/train/ckpt.pt; writes data/student/generator.safetensors
(+ .json config), G snapshots for FID-over-training, and dvclive logs (losses, λ_pix, lr, images/s, grids).
Several GPUs: `torchrun --nproc-per-node N -m stages.train` (DDP; gloo on CPU)."""
from tinygan import params, train
from tinygan.errors import ParamsFile, run_stage


def main(params_file: ParamsFile = "params.yaml") -> None:
    """Train the student; rerun after a crash to resume from the last checkpoint."""
    p = params.load(params_file)
    train.train("data/teacher", "data/real", ckpt_path="data/train/ckpt.pt",
                generator_out="data/student/generator.safetensors", live_dir="dvclive/train",
                snapshot_dir="data/train/snapshots", cfg=train.TrainConfig.from_params(p))


if __name__ == "__main__":
    run_stage(main)
