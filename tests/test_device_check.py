"""benchmarks/device_check.sh, the prepared run for a CUDA machine: valid bash, every option it passes to a
benchmark exists, every module its steps import is one it checks for, and it writes no more files than the device
tool brings back (8)."""
import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "device_check.sh"


def test_the_device_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_every_benchmark_option_it_passes_exists():
    text = SCRIPT.read_text().replace("\\\n", " ")
    calls = re.findall(r'"\$PY" (benchmarks/\S+\.py)([^\n]*)', text)
    assert {c[0] for c in calls} == {f"benchmarks/bench_{b}.py" for b in ("train", "evaluate", "generate")}
    for script, args in calls:
        usage = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout
        for option in re.findall(r"(--[a-z0-9-]+)", args):
            assert option in usage, (script, option)
    assert "tests/test_cuda.py" in text and (ROOT / "tests" / "test_cuda.py").is_file()


def test_its_time_limits_fit_one_device_call():
    limits = [int(x) for x in re.findall(r"^step \w+ (\d+) ", SCRIPT.read_text(), re.M)]
    assert len(limits) == 5 and sum(limits) <= 555  # a device call runs 600 s at most; the rest is set-up


def test_it_writes_at_most_eight_files():
    text = SCRIPT.read_text()
    outputs = set(re.findall(r'\$OUT/([\w.]+)', text)) | set(re.findall(r"^step \w+ \d+ ([\w.]+) ", text, re.M))
    assert 5 <= len(outputs) <= 8, outputs


# Imported by the steps' code only where present or asked for (guarded or inside the function that needs them):
OPTIONAL = {"tensorflow", "tensorflow_hub",  # TF-Hub teachers and the demo world's renderer
            "openvino",  # the OpenVINO export and bench_generate's row (left out where not installed)
            "dvclive",  # the train stage's logging (test_cuda's train stage test skips without it)
            "ninja"}  # the fused CPU norm kernel's build (the eager ops otherwise)


def _imports(path: Path) -> set[str]:
    """Top-level names of every absolute import in ``path``, at any depth (function-level ones too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_it_checks_for_every_module_its_steps_import():
    """The steps (bench_train, bench_evaluate, bench_generate, tests/test_cuda.py and the test modules it uses) and
    all of tinygan import no third-party module beyond NEEDS and the optional ones: a new one must be added to
    NEEDS (and to FETCH where a CUDA image lacks it), or the GPU run fails on an import."""
    needs = set(re.search(r'^NEEDS="([^"]+)"', SCRIPT.read_text(), re.M).group(1).split())
    files = [*(ROOT / "benchmarks").glob("bench_[teg]*.py"), *(ROOT / "tinygan").rglob("*.py"),
             *(ROOT / "tests" / f for f in ("test_cuda.py", "conftest.py", "test_train.py", "test_extractors.py"))]
    assert {f.name for f in files} >= {"bench_train.py", "bench_evaluate.py", "bench_generate.py"}
    local = {"tinygan", "conftest", "toy_teachers"} | {f.stem for f in (ROOT / "tests").glob("test_*.py")}
    third_party = set().union(*map(_imports, files)) - set(sys.stdlib_module_names) - local
    assert third_party - OPTIONAL <= needs, sorted(third_party - OPTIONAL - needs)
    assert "hydra" in third_party and "omegaconf" in third_party  # the profiles: not on the CUDA image
