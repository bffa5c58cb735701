"""End to end: `dvc repro` of the whole demo pipeline (tiny sizes) in a temp copy of the repo, a no-change
rerun, an experiment with `dvc exp run -S`, `dvc metrics diff`, and the README's commands."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tinygan.teacher import evaluation_seed

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

TINY = {
    "demo": {"imagenet": {"images_per_class": 6, "judge_epochs": 3}},
    "prepare": {"shard_size": 16},
    "sample": {"per_class": 8, "shard_size": 32},
    "train": {"ch": 4, "d_ch": 4, "batch_size": 8, "epochs": 2, "holdout_per_class": 2, "sample_every": 4,
              "snapshot_every": 6},
    "evaluate": {"n_samples": 40, "per_class_samples": 4, "curve_samples": 20},
    "runtime": {"sample": {"batch_size": 8}, "train": {"checkpoint_every": 4, "log_every": 2},
                "evaluate": {"batch_size": 20}},
}


def _merge(tree: dict, values: dict) -> None:
    for k, v in values.items():
        _merge(tree[k], v) if isinstance(v, dict) else tree.__setitem__(k, v)


def tiny_profile(dst: Path) -> None:
    """Shrink the demo profile in conf/ (what `dvc exp run` composes) and regenerate params.yaml from it."""
    from tinygan import profiles

    conf = dst / "conf" / "profile" / "demo.yaml"
    raw = yaml.safe_load(conf.read_text())
    _merge(raw, TINY)
    conf.write_text("# @package _global_\n" + yaml.safe_dump(raw, sort_keys=False))
    (dst / "params.yaml").write_text(profiles.compose_yaml(conf_dir=dst / "conf"))
ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@localhost", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
       "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}


def sh(cmd: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, shell=True, env=ENV, capture_output=True, text=True, timeout=1200)
    if check and res.returncode != 0:
        raise AssertionError(f"`{cmd}` failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


def copy_repo(dst: Path) -> None:
    """Copy the repo's tracked (and untracked, not ignored) files to ``dst``, without data/ (but its .gitignore),
    plus the onnxruntime-web files `.ci/install` fetches (git-ignored) for the export's browser page; where they
    were never fetched, the copy's profiles set export.page: false."""
    from tinygan import page

    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\n")
    for f in filter(None, files):
        if f.startswith("data/") and f != "data/.gitignore" or not (ROOT / f).is_file():
            continue
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dst / f)
    if (ROOT / page.VENDOR_DIR).is_dir():
        shutil.copytree(ROOT / page.VENDOR_DIR, dst / page.VENDOR_DIR)
    else:
        for conf in (dst / "conf" / "profile").glob("*.yaml"):
            conf.write_text(conf.read_text().replace("\n  page: true", "\n  page: false"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A fresh copy of the repo's tracked files with tiny params, after one full `dvc repro`."""
    dst = tmp_path_factory.mktemp("repo")
    copy_repo(dst)
    tiny_profile(dst)
    sh("git init -q && git add -A && git commit -qm base", dst)
    repro = sh("dvc repro", dst)
    sh("git add -A && git commit -qm 'demo run'", dst)
    return dst, repro.stdout + repro.stderr


def test_repro_runs_every_stage_and_writes_declared_outputs(repo):
    dst, log = repo
    for stage in ("demo@imagenet", "prepare", "sample", "teacher_eval", "train", "refstats", "evaluate", "export"):
        assert f"Running stage '{stage}'" in log
    for path in ("data/demo/teacher/saved_model.pb", "data/demo/judge.pt", "data/real/manifest.json",
                 "data/teacher/manifest.json", "data/student/generator.safetensors", "eval/metrics.json",
                 "eval/per_class.csv", "eval/worst10.png", "eval/interpolation.png", "eval/fid_curve.csv",
                 "export/generator.onnx", "export/generator.torchscript.pt", "export/README.md",
                 "dvclive/train/plots/images/grid.png"):
        assert (dst / path).exists(), path
    real = json.loads((dst / "data/real/manifest.json").read_text())
    assert real["skipped"], "the demo tree's unreadable files must be skipped and counted"
    teacher = json.loads((dst / "data/teacher/manifest.json").read_text())
    assert teacher["n"] == 8 * 8
    fresh = json.loads((dst / "data/teacher_eval/manifest.json").read_text())  # the teacher row's own images
    assert fresh["per_class"] == 4 and fresh["seed"] == evaluation_seed(0) and fresh["c_dim"] == teacher["c_dim"]
    assert teacher["teacher_info"]["name"] == "procedural demo teacher"  # what the demo teacher says of itself
    metrics = json.loads((dst / "eval/metrics.json").read_text())
    assert "demo-judge" in metrics["extractor"]
    assert metrics["extractor_note"] == "not Inception; demo figures only"  # what the judge says of itself
    card = (dst / "export/README.md").read_text()
    assert (dst / "export/page/index.html").is_file() == (dst / "vendor/onnxruntime-web").is_dir()
    assert "not Inception; demo figures only: these figures are NOT comparable" in card
    for key in ("is", "is_std", "fid", "intra_fid", "kid", "teacher_is", "teacher_fid", "teacher_intra_fid",
                "g_params", "d_params", "g_macs"):
        assert isinstance(metrics[key], (int, float)), key
    assert metrics["compression_ratio"] is None  # the procedural demo teacher has no published size
    assert metrics["teacher_figures"] == "procedural demo teacher, n/a"


def test_no_change_repro_does_nothing(repo):
    dst, _ = repo
    out = sh("dvc repro", dst).stdout
    assert "Running stage" not in out
    assert "up to date" in out.lower()


def test_exp_run_and_metrics_diff(repo):
    dst, _ = repo
    res = sh("dvc exp run -S lambda_pix=0.1", dst)
    log = res.stdout + res.stderr
    assert "Running stage 'train'" in log and "Running stage 'demo" not in log  # upstream stages cached
    diff = sh("dvc metrics diff --json", dst).stdout
    changes = json.loads(diff)
    assert any("fid" in k for f in changes.values() for k in f), diff
    params = sh("dvc params diff --json", dst).stdout
    assert "lambda_pix" in params


def test_readme_commands(repo):
    dst, _ = repo
    readme = (ROOT / "README.md").read_text()
    assert "bash .ci/install && dvc repro" in readme
    assert "bash .ci/install && python3 -m pytest -q" in readme
    cmds = [line.split("#")[0].strip() for line in readme.splitlines() if line.startswith("tinygan ")]
    assert len(cmds) >= 4
    for cmd in cmds:
        cmd = cmd.replace("[--layers]", "--layers")
        res = sh(f"{sys.executable} -m tinygan.cli {cmd[len('tinygan '):]}", dst, check=False)
        if cmd.startswith("tinygan doctor paper"):  # the recipe's example paths do not exist here
            assert res.returncode == 1 and "problem: prepare.imagenet_train" in res.stdout, res.stdout
        else:
            assert res.returncode == 0, (cmd, res.stderr[-2000:])
    assert (dst / "samples.png").exists()


def test_user_errors_are_one_line(repo):
    dst, _ = repo
    res = sh(f"{sys.executable} -m stages.train --params nope.yaml", dst, check=False)
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and "not found" in res.stderr
    res = sh(f"{sys.executable} -m tinygan.cli verify data", dst, check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    res = sh(f"{sys.executable} -m tinygan.cli generate export/generator.onnx -c no_such_animal", dst, check=False)
    assert res.returncode == 2 and "no_such_animal" in res.stderr and "Traceback" not in res.stderr
    for script in sorted((ROOT / "stages").glob("[a-z]*.py")):
        assert sh(f"{sys.executable} -m stages.{script.stem} --help", dst).returncode == 0
