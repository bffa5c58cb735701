"""dvc.lock tells the truth: each stage's code deps are exactly the code it runs, runtime knobs re-run nothing,
result params invalidate exactly the stages that use them, profiles are DVC-native, and stages run the
workspace's code whatever tinygan is installed."""
import ast
import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tinygan import params, profiles

ROOT = Path(__file__).resolve().parents[1]
DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())


def _stage_defs() -> dict[str, dict]:
    """Stage name -> its definition as written (a foreach stage's ``do`` template)."""
    return {name: s.get("do", s) for name, s in DVC_YAML["stages"].items()}


def _module_file(module: str) -> Path | None:
    path = ROOT.joinpath(*module.split("."))
    return next((p for p in (path.with_suffix(".py"), path / "__init__.py") if p.is_file()), None)


def _imports(path: Path) -> set[Path]:
    """Files of the tinygan/stages modules that ``path`` imports anywhere (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] in ("tinygan", "stages"):
                parts = name.split(".")
                found |= {f for i in range(1, len(parts) + 1) if (f := _module_file(".".join(parts[:i])))}
    return found


def _data_files(path: Path) -> set[Path]:
    """Package data files a module names in a string constant (e.g. tinygan/imagenet_wnids.txt)."""
    consts = {n.value for n in ast.walk(ast.parse(path.read_text()))
              if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    names = {c for c in consts if c.strip() and len(c) < 100 and not set(c) & set("/\\\n") and not c.endswith(".py")}
    return {path.parent / c for c in names if (path.parent / c).is_file()}


def import_closure(script: Path) -> set[str]:
    """The script, every tinygan/stages module it imports transitively, and the data files they read."""
    seen, todo = set(), [script, ROOT / "stages" / "__init__.py"]
    while todo:
        f = todo.pop()
        if f not in seen:
            seen.add(f)
            if f.suffix == ".py":
                todo += sorted(_imports(f) | _data_files(f))
    return {str(f.relative_to(ROOT)) for f in seen}


def _script(stage: dict) -> Path:
    cmd = stage["cmd"].split()
    assert cmd[:3] == ["python", "-m", cmd[2]] and cmd[2].startswith("stages."), stage["cmd"]
    return _module_file(cmd[2])


@pytest.mark.parametrize("name", list(_stage_defs()))
def test_code_deps_equal_the_import_closure(name):
    stage = _stage_defs()[name]
    code = {d for d in stage["deps"] if d.startswith(("stages/", "tinygan/"))}
    want = import_closure(_script(stage))
    assert code == want, (f"dvc.yaml stage {name!r}: missing {sorted(want - code)}, extra {sorted(code - want)}; "
                          f"the deps must be exactly:\n" + "\n".join(f"      - {d}" for d in sorted(want)))


def test_import_closure_sees_lazy_imports(tmp_path):
    # the check itself can fail: a module imported inside a function is part of the closure
    closure = import_closure(ROOT / "stages" / "train.py")
    assert {"tinygan/train.py", "tinygan/losses.py", "tinygan/classes.py", "tinygan/imagenet_wnids.txt",
            "tinygan/__init__.py", "stages/__init__.py"} <= closure
    assert "tinygan/evaluate.py" not in closure


def test_params_yaml_is_the_default_profile_composed():
    assert (ROOT / "params.yaml").read_text() == profiles.compose_yaml(conf_dir=ROOT / "conf"), \
        "params.yaml is generated: edit conf/ and run `tinygan profile > params.yaml` (or `dvc exp run`)"


@pytest.mark.parametrize("profile", profiles.names(ROOT / "conf"))
def test_every_profile_is_valid(profile):
    p = params.validate(profiles.compose(profile, conf_dir=ROOT / "conf"))
    assert set(p) == set(params.SCHEMA)


def test_no_stage_lists_runtime_params_and_every_result_param_is_used():
    listed = {p for s in _stage_defs().values() for p in s.get("params", [])}
    assert not any(p == "runtime" or p.startswith("runtime.") for p in listed)
    for key in params.SCHEMA:
        if key != "runtime":
            assert any(p == key or p.split(".")[0] == key for p in listed), f"param {key!r} is used by no stage"


# ---- DVC itself, on a repo copy whose outputs are committed (dummy files: no stage runs) ---------------------

@contextlib.contextmanager
def dvc_repo(path: Path):
    """DVC's Python API, run from inside the repo (it resolves stage paths against the cwd)."""
    from dvc.repo import Repo

    old = os.getcwd()
    os.chdir(path)
    try:
        with Repo(str(path)) as repo:
            yield repo
    finally:
        os.chdir(old)


def _copy_repo(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\n")
    for f in filter(None, files):
        if (ROOT / f).is_file() and not (f.startswith("data/") and f != "data/.gitignore"):
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)


def _touch_outputs(repo) -> None:
    """Dummy files for every output, and for deps inside output dirs (e.g. the train grid export copies)."""
    for stage in repo.index.stages:
        for out in [*stage.outs, *stage.deps]:
            p = Path(out.fs_path)
            if p.exists():
                continue
            if out.fs_path.endswith((".pt", ".json", ".png", ".csv")):
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text("x")
            else:
                (p / "train" / "n01443537").mkdir(parents=True, exist_ok=True)  # demo tree: prepare's input
                (p / "train" / "n01443537" / "f").write_text("x")


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    dst = tmp_path_factory.mktemp("dvcrepo")
    _copy_repo(dst)
    subprocess.run("git init -q && git add -A && git commit -qm base", cwd=dst, shell=True, check=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@l", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@l"})
    with dvc_repo(dst) as repo:
        _touch_outputs(repo)
        repo.commit(force=True)
    return dst


def _changed_stages(repo_dir: Path, key: str, value) -> set[str]:
    text = (repo_dir / "params.yaml").read_text()
    raw = yaml.safe_load(text)
    node, *path = raw, *key.split(".")
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    (repo_dir / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        with dvc_repo(repo_dir) as repo:
            return {name.split(":")[-1] for name in repo.status()}
    finally:
        (repo_dir / "params.yaml").write_text(text)


def test_committed_pipeline_is_clean(committed):
    with dvc_repo(committed) as repo:
        assert repo.status() == {}


RUNTIME_CHANGES = {"runtime.prepare.workers": 3, "runtime.sample.batch_size": 7, "runtime.train.device": "cpu",
                   "runtime.train.workers": 2, "runtime.train.log_every": 3, "runtime.train.checkpoint_every": 9,
                   "runtime.evaluate.device": "cpu", "runtime.evaluate.batch_size": 11}


@pytest.mark.parametrize("key,value", RUNTIME_CHANGES.items())
def test_runtime_knobs_rerun_nothing(committed, key, value):
    assert _changed_stages(committed, key, value) == set()


ALL = {"demo@imagenet", "prepare", "sample", "teacher_eval", "train", "refstats", "evaluate", "export"}


@pytest.mark.parametrize("key,value,stages", [
    ("seed", 1, ALL - {"prepare"}),
    ("classes", [1, 9], {"prepare", "sample", "teacher_eval", "evaluate", "export"}),
    ("lambda_pix", 0.1, {"train", "export"}),
    ("lambda_dime", 0.5, {"train", "export"}),
    ("train.dime_kernel", "polynomial", {"train", "export"}),
    ("demo.imagenet.images_per_class", 5, {"demo@imagenet"}),
    ("prepare.shard_size", 7, {"prepare"}),
    ("sample.per_class", 9, {"sample"}),
    ("sample.truncation", 0.4, {"sample", "teacher_eval", "train", "evaluate", "export"}),
    ("sample.shard_size", 7, {"sample", "teacher_eval"}),
    ("evaluate.teacher_per_class", 60, {"teacher_eval", "evaluate"}),
    ("evaluate.teacher_samples", "stored", {"teacher_eval", "evaluate"}),
    ("train.ch", 4, {"train", "export"}),
    ("train.d_ch", 4, {"train", "evaluate", "export"}),
    ("evaluate.n_samples", 20, {"evaluate"}),
    ("evaluate.extractor", "inception", {"refstats", "evaluate", "export"}),
    ("export.opset", 16, {"export"}),
    ("export.quality_samples", 16, {"export"}),
])
def test_result_params_invalidate_exactly_their_stages(committed, key, value, stages):
    assert _changed_stages(committed, key, value) == stages


def _changed_when_edited(repo_dir: Path, rel: str) -> set[str]:
    """The stages DVC finds changed once the file ``rel`` (a path in the repo copy) gains a few bytes."""
    path = repo_dir / rel
    old = path.read_bytes()
    path.write_bytes(old + b"changed")
    try:
        with dvc_repo(repo_dir) as repo:
            return {name.split(":")[-1] for name in repo.status()}
    finally:
        path.write_bytes(old)


def test_train_depends_on_the_dime_encoder_file(committed):
    # DVC tracks L_DiME's encoder (train.dime_encoder; the demo judge here): a new encoder re-runs train
    raw = yaml.safe_load((committed / "params.yaml").read_text())
    changed = _changed_when_edited(committed, raw["train"]["dime_encoder"])
    assert "train" in changed and changed <= {"demo@imagenet", "train", "refstats", "evaluate", "export"}


def test_train_depends_on_the_embed_init_file(committed):
    # train.embed_init_dep is a dependency of train: the placeholder while embed_init is null, else the .npy
    raw = yaml.safe_load((committed / "params.yaml").read_text())
    assert _changed_when_edited(committed, raw["train"]["embed_init_dep"]) == {"train"}


def test_sample_depends_on_the_real_class_names(committed):
    # folders layout: `classes` names the tree's folders, which prepare records in data/real/manifest.json; a new
    # class folder re-runs prepare, and through its manifest sample and teacher_eval (their class list shifts)
    changed = _changed_when_edited(committed, "data/real/manifest.json")
    assert {"sample", "teacher_eval"} <= changed


@pytest.mark.parametrize("profile,teacher_conf", [("paper", "conf/teacher/biggan-deep-128.yaml"),
                                                   ("paper256", "conf/teacher/biggan-deep-256.yaml")])
def test_paper_profile_has_no_demo_stage_and_no_demo_dependency(tmp_path, profile, teacher_conf):
    _copy_repo(tmp_path)
    (tmp_path / "params.yaml").write_text(profiles.compose_yaml(profile, conf_dir=tmp_path / "conf"))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    with dvc_repo(tmp_path) as repo:
        stages = {s.addressing: s for s in repo.index.stages}
        assert set(stages) == {"prepare", "sample", "teacher_eval", "train", "refstats", "evaluate", "export"}
        deps = [d.def_path for s in stages.values() for d in s.deps]
    data_deps = [d for d in deps if not d.startswith(("stages/", "tinygan/"))]
    assert not [d for d in data_deps if "demo" in d], data_deps
    assert teacher_conf in deps


def test_stages_run_the_workspace_code_not_the_installed_one(tmp_path):
    # a second checkout: its own code must run, though `tinygan` is installed from (or found at) the first
    _copy_repo(tmp_path)
    marker = "tinygan-from-the-second-checkout"
    mod = tmp_path / "tinygan" / "params.py"
    mod.write_text(mod.read_text() + f"\nprint({marker!r})\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    for name, stage in _stage_defs().items():
        cmd = stage["cmd"].replace("${key}", "imagenet") + " --help"
        res = subprocess.run(cmd, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0 and marker in res.stdout, (name, res.stderr[-2000:])
