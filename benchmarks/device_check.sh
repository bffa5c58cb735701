#!/usr/bin/env bash
# The GPU checks as one prepared run, for a CUDA machine (from the repository root; python3 with torch, numpy,
# h5py, safetensors, pyyaml, tqdm, typer, scipy, pillow, onnx, onnxruntime, pytest and hydra-core; no TensorFlow,
# DVC or OpenVINO needed):
#
#     OUT=<folder> bash benchmarks/device_check.sh
#
# A machine that cannot reach a package index gets the pure-Python ones it lacks as wheels: make them here with
#
#     bash benchmarks/device_check.sh --fetch-wheels      # -> .device-wheels/ (git-ignored; WHEELS=<dir>)
#
# and copy that folder along (the device tool: carry [".device-wheels"]). Where python3 lacks one of NEEDS, the
# check installs the folder's wheels into a temp dir on PYTHONPATH (gone at the end); steps.txt says which modules
# are still missing.
#
# writes into $OUT (8 files at most):
#   steps.txt                 the GPU, driver and torch, then each step's exit status and seconds
#   test_cuda.log             tests/test_cuda.py: CUDA vs CPU in IEEE float32, each train.precision, compile,
#                             no host sync in a step, pinned worker batches (the train stage test needs dvclive)
#   bench_train.json          ours vs the official iteration at each train.precision, eager, paper + demo
#                             configs; the data path with 8 DataLoader workers
#   bench_train_compile.json  fp32 and bf16 with torch.compile, paper config
#   bench_evaluate.json       evaluate vs the bare extractor; extractor, student and reference stats on the GPU
#   bench_generate.json       every export format, with the CUDA rows (eager, TorchScript, onnxruntime CUDA)
#   stderr.txt                every step's standard error, under its name
# Each step has its own time limit (555 s in all at worst: one device call may run 600 s), a failing step does
# not stop the next, and the exit status is the number of steps that failed.
set -u
OUT=${OUT:-device-check}
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.device-wheels}
# every third-party module the steps import (tests/test_device_check.py keeps this list complete)
NEEDS="torch numpy h5py safetensors yaml tqdm typer scipy PIL onnx onnxruntime pytest hydra omegaconf antlr4"
FETCH="hydra-core omegaconf antlr4-python3-runtime"  # the pure-Python distributions a CUDA image may lack

if [ "${1:-}" = "--fetch-wheels" ]; then  # here, with a package index: the versions installed here
  pins=$("$PY" -c 'import sys; from importlib.metadata import version as v; print(*(f"{p}=={v(p)}" for p in sys.argv[1:]))' $FETCH) &&
    "$PY" -m pip wheel -q --no-deps -w "$WHEELS" $pins && ls "$WHEELS"
  exit
fi

mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TF_CPP_MIN_LOG_LEVEL=2
failed=0

missing() {
  "$PY" -c 'import importlib.util, sys; print(*(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))' $NEEDS
}
lacking=$(missing)
if [ -n "$lacking" ] && ls "$WHEELS"/*.whl > /dev/null 2>&1; then
  SITE=$(mktemp -d)
  trap 'rm -rf "$SITE"' EXIT
  "$PY" -m pip install -q --no-index --no-deps --target "$SITE" "$WHEELS"/*.whl 2>> "$OUT/stderr.txt"
  export PYTHONPATH="$PYTHONPATH:$SITE"
  lacking=$(missing)
fi

step() {  # step NAME LIMIT_SECONDS OUTPUT_FILE COMMAND...
  local name=$1 limit=$2 out=$3 t0=$SECONDS rc
  shift 3
  echo "== $name" >> "$OUT/stderr.txt"
  timeout "$limit" "$@" > "$OUT/$out" 2>> "$OUT/stderr.txt"
  rc=$?
  echo "$name: exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT/steps.txt"
  [ "$rc" -eq 0 ] || failed=$((failed + 1))
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name(0))'
  echo "python modules missing: ${lacking:-none}"
} > "$OUT/steps.txt" 2>&1

step test_cuda 140 test_cuda.log "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py
step bench_train 150 bench_train.json "$PY" benchmarks/bench_train.py --device cuda --configs paper,demo \
  --steps 20 --compile off --loader 4096 --workers 8
step bench_train_compile 120 bench_train_compile.json "$PY" benchmarks/bench_train.py --device cuda \
  --configs paper --steps 20 --precisions fp32,bf16 --compile on --loader 0
step bench_evaluate 70 bench_evaluate.json "$PY" benchmarks/bench_evaluate.py --device cuda --n 256 --images 256
step bench_generate 75 bench_generate.json "$PY" benchmarks/bench_generate.py --ch 32 8 --rounds-1 10 --rounds-64 5
echo "failed steps: $failed" | tee -a "$OUT/steps.txt"
exit "$failed"
