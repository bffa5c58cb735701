"""How DVC handles a huge `prepare` dependency: a generated ImageNet-like tree of many small files is a stage
dependency; we time the first `dvc repro` (hashes every file), a no-change `dvc repro` and `dvc status`
(stat-only via DVC's state database), side by side in one run. Prints JSON. Not a test.

    python benchmarks/bench_dvc_status.py [--files 100000] [--dirs 1000]
"""
import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path


def sh(cmd, cwd):
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--dirs", type=int, default=1000)
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_dvc_"))
    tree = root / "train"
    t = time.perf_counter()
    per = a.files // a.dirs
    for d in range(a.dirs):
        wd = tree / f"n{d:08d}"
        wd.mkdir(parents=True)
        for k in range(per):
            (wd / f"n{d:08d}_{k}.JPEG").write_bytes(os.urandom(64))
    make_tree = time.perf_counter() - t
    sh("git init -q && dvc init -q && dvc config core.analytics false", root)
    (root / "dvc.yaml").write_text("stages:\n  prepare:\n    cmd: echo done > out.txt\n    deps: [train]\n"
                                   "    outs: [out.txt]\n")
    first = sh("dvc repro -q", root)
    nochange = sh("dvc repro -q", root)
    status = sh("dvc status -q", root)
    (tree / "n00000000" / "n00000000_0.JPEG").write_bytes(os.urandom(64))
    one_changed = sh("dvc repro -q", root)
    print(json.dumps({"files": per * a.dirs, "dirs": a.dirs, "make_tree_s": make_tree,
                      "first_repro_s": first, "nochange_repro_s": nochange, "status_s": status,
                      "one_file_changed_repro_s": one_changed,
                      "nochange_over_first": nochange / first, "status_over_first": status / first}, indent=2))
    subprocess.run(["rm", "-rf", str(root)])


if __name__ == "__main__":
    main()
