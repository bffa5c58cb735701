"""Stage `export`: the trained student as safetensors (+ config.json), TorchScript, ONNX and OpenVINO, each checked
against the PyTorch model on fixed inputs (fails above export.atol); int8 and fp16 ONNX with their quality cost
(the evaluate extractor); samples.png, the model card README.md and the browser page page/ (export.page) in
export/. The teacher manifest gives the latent recipe, the teacher's content hash and the data counts; the real
manifest the class names (data other than ImageNet) and the image count."""
import json
from pathlib import Path

from tinygan import card, export, page, params, prepare, shards
from tinygan.errors import ParamsFile, run_stage

OUT = "export"


def training_params(p: dict) -> dict:
    """The params the model card lists (each one is among this stage's params in dvc.yaml)."""
    return {k: v for k, v in p.items() if k in ("seed", "train") or k.startswith("lambda_")}


def main(params_file: ParamsFile = "params.yaml") -> None:
    """Export data/student/generator.safetensors into export/ (every format, parity and quality checks)."""
    p = params.load(params_file)
    train_summary = json.loads(Path("dvclive/train/metrics.json").read_text())
    teacher_manifest, real_manifest = shards.read_manifest("data/teacher"), shards.read_manifest("data/real")
    latent, _ = shards.manifest_latent(teacher_manifest)
    dataset = card.dataset_info(p["prepare"]["imagenet_train"], p["prepare"]["layout"], p["sample"]["teacher"])
    export.export("data/student/generator.safetensors", OUT, classes=prepare.param_classes(p),
                  metrics_path="eval/metrics.json", latent=latent, class_names=shards.own_class_names(real_manifest),
                  train_summary=train_summary, params_snapshot=training_params(p),
                  grid_png="dvclive/train/plots/images/grid.png",
                  opset=p["export"]["opset"], atol=p["export"]["atol"], truncation=p["sample"]["truncation"],
                  teacher=p["sample"]["teacher"], seed=p["seed"],
                  extractor=p["evaluate"]["extractor"], extractor_path=p["evaluate"]["extractor_path"],
                  quality_samples=p["export"]["quality_samples"],
                  calibration_samples=p["export"]["calibration_samples"],
                  page_vendor=page.VENDOR_DIR if p["export"]["page"] else None,
                  teacher_manifest=teacher_manifest, real_manifest=real_manifest, dataset=dataset)

if __name__ == "__main__":
    run_stage(main)
