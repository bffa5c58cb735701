"""`tinygan doctor`: every problem is reported with its fix, a healthy setup passes, the CLI prints ok/problem
lines with exit codes 0 / 1 (2 for a params mistake)."""
import hashlib
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from tinygan import doctor, params
from tinygan.classes import wnid_of
from tinygan.cli import app
from toy_teachers import save_tf_teacher, save_torchscript_teacher

ROOT = Path(__file__).resolve().parents[1]
CLASSES = [1, 9, 130, 207, 281, 291, 323]  # seven, so a compact list shows five and "..."
Usage = namedtuple("Usage", "total used free")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A healthy setup: a TorchScript teacher, a class-folder tree with one image per class, a judge file."""
    root = tmp_path_factory.mktemp("doctor")
    teacher = save_torchscript_teacher(root / "teacher.pt")
    for c in CLASSES:
        (root / "train" / wnid_of(c)).mkdir(parents=True)
        (root / "train" / wnid_of(c) / "a.JPEG").write_bytes(b"an image")
    (root / "judge.pt").write_bytes(b"not needed before the demo stage")
    return root, teacher


@pytest.fixture
def healthy(assets, tmp_path, monkeypatch):
    """Validated repo params pointing at the healthy setup; runs in tmp_path with plenty of free disk."""
    root, teacher = assets
    p = params.load(ROOT / "params.yaml")
    p["classes"] = CLASSES
    p["sample"].update(teacher=teacher, teacher_dep=teacher, format="torchscript", per_class=10)
    p["prepare"].update(imagenet_train=str(root / "train"), max_per_class=20)
    p["evaluate"].update(extractor="judge", extractor_path=str(root / "judge.pt"))
    p["runtime"]["train"]["device"] = p["runtime"]["evaluate"]["device"] = "cpu"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda path: Usage(10 ** 12, 0, 10 ** 12))
    return p


def _one(problems: list[str], *words: str) -> str:
    """The single problem line, checked to hold each of ``words``."""
    assert len(problems) == 1, problems
    assert "\n" not in problems[0] and all(w in problems[0] for w in words), problems[0]
    return problems[0]


def test_healthy_setup_has_no_problems(healthy):
    assert doctor.check(healthy) == []
    results = doctor.run_checks(healthy)
    assert len(results) == 6 and all(ok and not problems for ok, problems in results)


def test_missing_teacher(healthy, tmp_path):
    healthy["sample"]["teacher"] = str(tmp_path / "nope.pt")
    _one(doctor.check(healthy), "nope.pt", "does not exist", "torch.jit.save")
    healthy["sample"]["format"] = "tfhub"
    _one(doctor.check(healthy), "nope.pt", "does not exist", "SavedModel dir")


def test_demo_world_paths_pass_until_the_demo_stage_has_built_them(healthy, tmp_path):
    healthy["sample"].update(teacher="data/demo/teacher", format="tfhub")  # cwd is tmp_path: nothing built yet
    healthy["prepare"]["imagenet_train"] = "data/demo/imagenet/../imagenet/train"
    assert doctor.check(healthy) == []
    passed = [ok for ok, _ in doctor.run_checks(healthy)]
    assert sum("the demo stage builds it (its world under data/demo)" in ok for ok in passed) == 2
    (tmp_path / "data/demo/imagenet/train").mkdir(parents=True)  # built (here: badly): checked as usual
    _one(doctor.check(healthy), "prepare.imagenet_train", "no images")
    healthy["demo"] = {}  # no demo world (the paper profiles): a missing teacher is a problem
    assert any("data/demo/teacher" in line and "does not exist" in line for line in doctor.check(healthy))


def test_tfhub_url_must_be_pre_placed(healthy, tmp_path, monkeypatch):
    pytest.importorskip("tensorflow_hub")
    cache = tmp_path / "hubcache"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    url = "https://tfhub.dev/deepmind/biggan-deep-128/1"
    module_dir = cache / hashlib.sha1(url.encode()).hexdigest()
    healthy["sample"].update(teacher=url, format="tfhub")
    _one(doctor.check(healthy), url, f"{module_dir}/saved_model.pb is missing", "tf-hub-format=compressed",
         f"extract it into {module_dir}/")
    save_tf_teacher(module_dir)  # the fix: the module pre-placed in the cache loads without network
    assert doctor.check(healthy) == []
    shutil.rmtree(module_dir)
    save_tf_teacher(module_dir, y_width=10)  # a module there, but a 10-class teacher: not the selected classes
    _one(doctor.check(healthy), url, "class indices [130, 207, 281, 291, 323] out of range [0, 10) of the teacher")


def test_imagenet_missing_and_empty_class_folders(healthy, assets, tmp_path):
    train = tmp_path / "train"
    shutil.copytree(assets[0] / "train", train)
    healthy["prepare"]["imagenet_train"] = str(train)
    for c in CLASSES[:6]:
        shutil.rmtree(train / wnid_of(c))
    (train / wnid_of(CLASSES[6]) / "a.JPEG").unlink()
    (line,) = doctor.check(healthy)  # prepare's own check, one line naming the classes and why
    assert "7 selected classes have no images" in line and "change the class selection" in line
    assert f"{CLASSES[0]} ({wnid_of(CLASSES[0])}: no class dir)" in line
    assert f"{CLASSES[6]} ({wnid_of(CLASSES[6])}: no image files)" in line
    healthy["prepare"]["imagenet_train"] = str(tmp_path / "no_such_dir")
    _one(doctor.check(healthy), "no_such_dir is not a directory", "set it to your ImageNet train dir")


def test_train_dir_check_follows_the_layout(healthy, tmp_path):
    train = tmp_path / "cifar"
    for name in ("cat", "dog"):
        (train / name).mkdir(parents=True)
        (train / name / "a.png").write_bytes(b"an image")
    healthy["prepare"].update(imagenet_train=str(train), layout="folders")
    healthy["classes"] = "all"
    assert doctor.check(healthy) == []
    assert doctor._shard_bytes(healthy)[1] == 2 * 20 * 128 * 128 * 3  # the disk estimate counts the 2 folders
    healthy["classes"] = ["cat", "emu"]
    _one(doctor.check(healthy), "prepare.imagenet_train", "'emu'")
    (train / "dog" / "a.png").unlink()
    healthy["classes"] = "all"
    _one(doctor.check(healthy), "1 (dog: no image files)", "class-folder tree")
    healthy["prepare"].update(imagenet_train=str(train / "cat"), layout="flat")
    assert doctor.check(healthy) == []
    healthy["prepare"]["imagenet_train"] = str(train / "dog")
    _one(doctor.check(healthy), "0 (.: no image files)", "a folder of images")


def test_inception_wrong_hash_and_missing(healthy, tmp_path):
    fake = tmp_path / "inception-2015-12-05.pt"
    fake.write_bytes(b"not the real weights")
    healthy["evaluate"].update(extractor="inception", extractor_path=str(fake))
    _one(doctor.check(healthy), "evaluate.extractor_path", hashlib.sha256(b"not the real weights").hexdigest(),
         "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4", "download https://")
    fake.unlink()
    _one(doctor.check(healthy), "not found", str(fake), "download https://")


def test_torchscript_extractor_must_load_and_run(healthy, tmp_path):
    """evaluate.extractor torchscript (e.g. a DINOv2 export): the file loads and runs on a probe batch."""
    enc = tmp_path / "encoder.pt"
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, 2, 1), torch.nn.AdaptiveAvgPool2d(1),
                                                        torch.nn.Flatten())), str(enc))
    healthy["evaluate"].update(extractor="torchscript", extractor_path=str(enc))
    assert doctor.check(healthy) == []
    assert "runs on a probe batch" in doctor.run_checks(healthy)[2][0]
    torch.jit.save(torch.jit.script(torch.nn.Conv2d(3, 5, 3)), str(enc))  # maps to feature maps, not vectors
    _one(doctor.check(healthy), "evaluate.extractor_path", str(enc), "does not run on a probe batch")
    enc.unlink()
    _one(doctor.check(healthy), "evaluate.extractor_path", str(enc), "not found")


def test_dime_encoder_is_checked_only_when_used(healthy, tmp_path, encoder_file):
    healthy["train"]["dime_encoder"] = str(tmp_path / "missing.pt")
    assert doctor.check(healthy) == []  # lambda_dime 0: train never opens it
    healthy["lambda_dime"] = 0.5
    _one(doctor.check(healthy), "train.dime_encoder", "missing.pt", "lambda_dime: 0")
    healthy["train"]["dime_encoder"] = str(encoder_file)
    assert doctor.check(healthy) == []


def test_disk_needed_vs_free(healthy, monkeypatch):
    healthy["classes"] = list(range(398))  # paper scale (the tree lacks these classes: a separate problem)
    healthy["sample"]["per_class"] = 3000
    healthy["prepare"]["max_per_class"] = None
    healthy["evaluate"].update(teacher_samples="stored")
    disk = lambda: [x for x in doctor.check(healthy) if x.startswith("disk:")]  # noqa: E731
    # 398 * 3000 * (128*128*3 + 128*4 + 8) + 398 * 1300 * 128*128*3 = 59.31 GB + 25.43 GB
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda path: Usage(10 ** 12, 0, 50 * 10 ** 9))
    _one(disk(), "84.74 GB", "59.31 GB", "25.43 GB", "only 50.00 GB is free",
         "lower sample.per_class / prepare.max_per_class")
    # the authors' teacher row: 5,000 fresh teacher images per class more (398 * 8000 * ... = 158.16 GB)
    healthy["evaluate"].update(teacher_samples="fresh", teacher_per_class=5000)
    _one(disk(), "183.59 GB", "158.16 GB", "25.43 GB", "evaluate.teacher_per_class")
    healthy["evaluate"].update(teacher_samples="stored")
    seen = []
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda path: seen.append(path) or Usage(10 ** 12, 0, 10 ** 11))
    assert disk() == []
    healthy["classes"] = CLASSES
    assert doctor.check(healthy, data_dir="not/made/yet/data") == []
    assert seen[-1] == Path.cwd()  # the nearest existing parent of the data dir


def test_cuda_requested_without_cuda(healthy, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    healthy["runtime"]["train"]["device"] = "cuda"
    _one(doctor.check(healthy), "runtime.train.device is cuda", "no CUDA device", "set it to auto or cpu")
    healthy["runtime"]["train"]["device"] = "auto"
    healthy["runtime"]["evaluate"]["device"] = "cuda"
    _one(doctor.check(healthy), "runtime.evaluate.device is cuda")
    healthy["runtime"]["evaluate"]["device"] = "auto"
    assert doctor.check(healthy) == []


def _write_params(p: dict, path: Path) -> str:
    path.write_text(yaml.safe_dump(p))
    return str(path)


def test_cli_exit_codes_and_lines(healthy, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["doctor", _write_params(healthy, tmp_path / "good.yaml")])
    assert res.exit_code == 0, res.output
    assert res.output.count("ok: ") == 6 and "problem:" not in res.output
    healthy["prepare"]["imagenet_train"] = str(tmp_path / "no_such_dir")
    res = runner.invoke(app, ["doctor", _write_params(healthy, tmp_path / "bad.yaml")])
    assert res.exit_code == 1
    assert res.output.count("problem: ") == 1 and res.output.count("ok: ") == 5 and "no_such_dir" in res.output
    res = runner.invoke(app, ["doctor", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 2 and "neither a profile" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["doctor", "--help"])
    assert res.exit_code == 0 and "PARAMS FILE" in res.output.upper()


def test_cli_checks_a_profile_with_overrides(assets, monkeypatch):
    root, teacher = assets
    monkeypatch.chdir(ROOT)  # profiles live in conf/
    res = CliRunner().invoke(app, ["doctor", "paper", "-S", f"prepare.imagenet_train={root / 'train'}",
                                   "-S", "evaluate.extractor_path=/no/such/inception.pt"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "problem: evaluate.extractor_path:" in res.output and "/no/such/inception.pt" in res.output
    assert "problem: teacher https://tfhub.dev/deepmind/biggan-deep-128/1" in res.output
    assert "391 selected classes have no images" in res.output  # the tree has 7 of the 398 animal classes
    res = CliRunner().invoke(app, ["doctor", "params.yaml", "-S", "seed=1"])
    assert res.exit_code == 2 and "-S overrides apply to a profile" in res.output


def test_cli_default_params_file(healthy, tmp_path):
    _write_params(healthy, tmp_path / "params.yaml")  # cwd is tmp_path
    res = CliRunner().invoke(app, ["doctor"])
    assert res.exit_code == 0 and "ok: teacher" in res.output
