"""benchmarks/device_check.sh, the prepared run for a CUDA machine: valid bash, every option it passes to a
benchmark exists, and it writes no more files than the device tool brings back (8)."""
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
    assert len(limits) == 5 and sum(limits) <= 570  # a device call runs 600 s at most; the rest is set-up


def test_it_writes_at_most_eight_files():
    text = SCRIPT.read_text()
    outputs = set(re.findall(r'\$OUT/([\w.]+)', text)) | set(re.findall(r"^step \w+ \d+ ([\w.]+) ", text, re.M))
    assert 5 <= len(outputs) <= 8, outputs
