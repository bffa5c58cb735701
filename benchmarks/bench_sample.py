"""Benchmark the sample stage: sample() images/s vs a bare loop over the same teacher batches, and peak RSS.

    python benchmarks/bench_sample.py [--classes 4] [--per-class 64] [--batch-size 16] [--shard-size 64]

Prints one JSON object:
- ``bare_img_s``: the teacher alone, called on exactly the batches sample() uses (z/y drawn beforehand,
  nothing quantised or written); ``sample_img_s``: sample() end to end (z draws, teacher, quantise, HDF5
  write, checksums, manifest) into a fresh directory; ``ratio`` = sample / bare (goal >= 0.95). Runs are
  interleaved (bare, sample, bare, sample, ...) and the best of each is reported; ``ratio_paired_median`` is
  the median over repeats of bare / sample within one pair (the steadier figure when the machine's speed drifts
  between pairs). ``ratio_cpu``: the same
  with CPU seconds of this process (all threads) instead of wall seconds, the steadier figure on a busy
  machine (it leaves out time spent waiting, e.g. for fsync). Each repeat's shards are deleted once it is
  timed (untimed), so the temp dir holds one repeat's shards and each repeat writes into recycled page cache
  (on a virtual machine a write into guest memory never touched before costs far more: 25-30 ms per 12.6 MB
  shard against 3-8 ms measured here).
- ``accelerator_like``: the same comparison with a stand-in for a teacher on an accelerator: it sleeps
  ``--sim-ms`` per batch of ``--sim-batch`` (no CPU used, like a GPU) and returns fixed images. On a CPU-only
  machine the real teacher and sample()'s own work (quantise, HDF5 write, sha256, fsync) fight for the same
  cores; here sample()'s overhead is what remains: shard I/O not overlapped with the teacher, the last
  shard's write, the manifest. ``--sim-per-class`` x classes images, shards of ``--sim-shard`` (default 512).
- ``overhead_per_shard``: sample()'s own CPU per shard, the steady figure behind ``ratio`` (wall ratios on a
  shared 2-core machine swing by +-5% between runs): each piece timed alone on one shard of real teacher output
  (CPU ms of the thread doing it, best of 5): ``draw_z`` (the helper thread), ``quantize`` (with its finiteness
  check, batch by batch as the writer thread does it), ``write_shard`` (HDF5, fsync, sha256, sidecar).
  ``teacher_wall_ms`` / ``teacher_cpu_ms``: the bare loop's wall and CPU time per shard. ``ratio_if_serial`` =
  wall / (wall + overhead): the ratio to expect when the teacher waits out every CPU second sample() spends (what
  a 2-core machine shows: the teacher's two threads stall while a third runs); ``ratio_if_shared`` = cpu / (cpu +
  overhead): the ratio if the overhead only took its share of the cores.
- ``memory``: for a fresh process running sample() at N and at 4N images (and one that only loads the teacher
  and runs one batch): RSS after loading the teacher, peak RSS while sample() ran (sampled every 10 ms), and
  the process's whole-life peak RSS read for that child with ``os.wait4`` (goal: flat in N). The whole-life
  peak is usually set by TensorFlow loading the SavedModel, so the during-sample peak is the telling one.

The teacher is the demo teacher (``tinygan.demo.teacher.save_teacher``) when available, else the tiny test
SavedModel from tests/toy_teachers.py.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def save_teacher(path: Path) -> str:
    try:
        from tinygan.demo.teacher import save_teacher as save_demo
    except ImportError:
        save_demo = None
    if save_demo is not None:
        save_demo(path)
        return "tinygan.demo.teacher"
    sys.path.insert(0, str(REPO / "tests"))
    from toy_teachers import save_tf_teacher

    save_tf_teacher(path)
    return "tests/toy_teachers"


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(handle: str, out: str, classes: list[int], per_class: int, batch_size: int, shard_size: int,
          teacher_only: bool) -> None:
    """Body of a subprocess whose memory the parent measures. Prints (JSON) the RSS once the teacher is loaded
    and warmed up, and the peak RSS seen while sample() ran (sampled every 10 ms)."""
    import threading

    import numpy as np

    from tinygan.sample import sample
    from tinygan.teacher import load_teacher, truncated_z_batch

    t = load_teacher(handle, "tfhub")
    y = np.asarray(classes * batch_size, dtype=np.int64)[:batch_size]
    t(truncated_z_batch(0, y, np.arange(batch_size), 0.5), y, 0.5)
    loaded = _rss_mb()
    peak, stop = [loaded], threading.Event()

    def watch():
        while not stop.wait(0.01):
            peak.append(max(peak[-1], _rss_mb()))

    if not teacher_only:
        w = threading.Thread(target=watch, daemon=True)
        w.start()
        sample(handle, "tfhub", out, classes=classes, per_class=per_class, truncation=0.5, seed=0,
               batch_size=batch_size, shard_size=shard_size, progress=False, teacher=t)
        stop.set()
        w.join()
    print(json.dumps({"rss_teacher_loaded_mb": round(loaded, 1), "rss_peak_during_sample_mb": round(peak[-1], 1)}))


def measure_child(args: list[str]) -> dict:
    """Run this script as a child with ``args``; return its report plus its whole-life peak RSS, read for
    that child alone with ``os.wait4`` (ru_maxrss)."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=err)
        out = proc.stdout.read()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"child {args} failed:\n{err.read().decode(errors='replace')[-3000:]}")
    report = json.loads(out.decode().strip().splitlines()[-1])
    report["peak_rss_process_mb"] = round(usage.ru_maxrss / 1024, 1)  # ru_maxrss is in KiB on Linux
    return report


class SleepyTeacher:
    """A teacher on an 'accelerator': ``ms`` of sleep per call (no CPU), fixed images; the shape of ``like``."""

    def __init__(self, like, ms: float, batch: int):
        self.ms, self.handle, self.latent = ms, like.handle, like.latent
        self.z_dim, self.c_dim, self.resolution = like.z_dim, like.c_dim, like.resolution
        r = like.resolution
        self.x = __import__("numpy").random.default_rng(0).uniform(-1, 1, (batch, r, r, 3)).astype("float32")

    def __call__(self, z, y, truncation):
        time.sleep(self.ms / 1000)
        return self.x[:len(z)].copy()


def accelerator_like(handle: str, like, classes: list[int], a, tmp: Path) -> dict:
    """bare loop vs sample() with a ``SleepyTeacher`` (best of ``a.repeats``, interleaved)."""
    from tinygan.sample import _Plan, sample

    t = SleepyTeacher(like, a.sim_ms, a.sim_batch)
    plan = _Plan(sorted(classes), a.sim_per_class, a.sim_shard)
    sizes = [len(range(0, plan.size(k), a.sim_batch)) for k in range(plan.n_shards)]
    bare, samp = [], []
    for r in range(a.repeats):
        t0 = time.perf_counter()
        for _ in range(sum(sizes)):
            t(range(a.sim_batch), None, 0.5)
        bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sample(handle, "tfhub", str(tmp / f"sim{r}"), classes=classes, per_class=a.sim_per_class, truncation=0.5,
               seed=0, batch_size=a.sim_batch, shard_size=a.sim_shard, progress=False, teacher=t)
        samp.append(time.perf_counter() - t0)
        shutil.rmtree(tmp / f"sim{r}")
    return {"n_images": plan.n, "ms_per_batch": a.sim_ms, "batch_size": a.sim_batch, "shard_size": a.sim_shard,
            "bare_img_s": round(plan.n / min(bare), 1), "sample_img_s": round(plan.n / min(samp), 1),
            "ratio": round(min(bare) / min(samp), 3), "sample_s": [round(x, 3) for x in samp]}


def overhead_per_shard(teacher, classes: list[int], a, tmp: Path, bare_s: float, bare_cpu_s: float,
                       n_shards: int) -> dict:
    """sample()'s own work on one full shard, piece by piece (CPU ms, best of 5); see the module docstring."""
    import numpy as np

    from tinygan import shards
    from tinygan.sample import _Plan
    from tinygan.teacher import draw_z, quantize

    y, idx = _Plan(sorted(classes), a.per_class, a.shard_size).items(0)
    z = draw_z("biggan", 0, y, idx, 0.5, teacher.z_dim)
    x = np.concatenate([teacher(z[s:s + a.batch_size], y[s:s + a.batch_size], 0.5)
                        for s in range(0, len(y), a.batch_size)])
    images = np.empty(x.shape, np.uint8)

    def quantize_all():
        for s in range(0, len(x), a.batch_size):
            batch = x[s:s + a.batch_size]
            quantize(batch, out=images[s:s + len(batch)], finite=True)

    def best(f) -> float:
        times = []
        for r in range(5):
            t0 = time.thread_time()  # CPU of this thread: a wait (fsync) costs the teacher nothing
            f(r)
            times.append(time.thread_time() - t0)
        return round(min(times) * 1000, 2)

    parts = {"draw_z": best(lambda r: draw_z("biggan", 0, y, idx, 0.5, teacher.z_dim)),
             "quantize": best(lambda r: quantize_all()),
             "write_shard": best(lambda r: shards.write_shard(tmp / f"overhead-{r}.h5",
                                                               {"z": z, "y": y, "images": images},
                                                               {"kind": "teacher", "fingerprint": "bench"}))}
    wall, cpu, total = bare_s / n_shards * 1000, bare_cpu_s / n_shards * 1000, sum(parts.values())
    return {"shard_size": len(y), "ms": parts, "total_ms": round(total, 2), "teacher_wall_ms": round(wall, 1),
            "teacher_cpu_ms": round(cpu, 1), "ratio_if_serial": round(wall / (wall + total), 3),
            "ratio_if_shared": round(cpu / (cpu + total), 3)}


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=4, help="number of classes (the demo's first ones)")
    ap.add_argument("--per-class", type=int, default=32, help="N = classes * per_class images per timed run")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--shard-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sim-ms", type=float, default=100, help="accelerator-like teacher: ms per batch")
    ap.add_argument("--sim-batch", type=int, default=64)
    ap.add_argument("--sim-per-class", type=int, default=512)
    ap.add_argument("--sim-shard", type=int, default=512)
    ap.add_argument("--child", nargs=2, metavar=("HANDLE", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--teacher-only", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args()


def interleaved(handle: str, teacher, batches: list, classes: list[int], a, tmp: Path) -> dict:
    """Wall and CPU seconds of the bare teacher loop and of sample() on the same batches, alternating, per repeat."""
    from tinygan.sample import sample

    t = {"bare_s": [], "sample_s": [], "bare_cpu": [], "sample_cpu": []}
    for r in range(a.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for z, y in batches:
            teacher(z, y, 0.5)
        t["bare_s"].append(time.perf_counter() - t0)
        t["bare_cpu"].append(time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        sample(handle, "tfhub", str(tmp / f"out{r}"), classes=classes, per_class=a.per_class, truncation=0.5,
               seed=0, batch_size=a.batch_size, shard_size=a.shard_size, progress=False, teacher=teacher)
        t["sample_s"].append(time.perf_counter() - t0)
        t["sample_cpu"].append(time.process_time() - c0)
        shutil.rmtree(tmp / f"out{r}")  # (untimed) its page cache is free for the next repeat's shards
    return t


def memory(handle: str, a, n: int, tmp: Path) -> dict:
    """Peak RSS of a child that only runs the teacher, and of sample() children at N and 4N images."""
    rss = {"teacher_only": measure_child(["--child", handle, str(tmp / "rss0"), "--teacher-only",
                                          "--classes", str(a.classes), "--batch-size", str(a.batch_size)])}
    for mult in (1, 4):
        rss[f"N={n * mult}"] = measure_child(["--child", handle, str(tmp / f"rss{mult}"),
                                            "--classes", str(a.classes), "--per-class", str(a.per_class * mult),
                                            "--batch-size", str(a.batch_size), "--shard-size", str(a.shard_size)])
    return rss


def main() -> None:
    a = _args()
    classes = [1, 9, 130, 207, 281, 291, 323, 388][:a.classes] if a.classes <= 8 else list(range(a.classes))
    if a.child:
        child(a.child[0], a.child[1], classes, a.per_class, a.batch_size, a.shard_size, a.teacher_only)
        return
    from tinygan.sample import _Plan
    from tinygan.teacher import load_teacher, truncated_z_batch

    with tempfile.TemporaryDirectory(prefix="bench_sample_") as tmp:
        tmp = Path(tmp)
        handle = str(tmp / "teacher")
        source = save_teacher(Path(handle))
        teacher = load_teacher(handle, "tfhub")
        plan = _Plan(sorted(classes), a.per_class, a.shard_size)
        batches = []  # exactly the (z, y) batches sample() feeds: shard-aligned, batch_size at most
        for k in range(plan.n_shards):
            y, idx = plan.items(k)
            z = truncated_z_batch(0, y, idx, 0.5)
            batches += [(z[s:s + a.batch_size], y[s:s + a.batch_size]) for s in range(0, len(y), a.batch_size)]
        teacher(*batches[0], 0.5)  # warm-up
        t = interleaved(handle, teacher, batches, classes, a, tmp)
        n = plan.n
        bare, samp = n / min(t["bare_s"]), n / min(t["sample_s"])
        sim = accelerator_like(handle, teacher, classes, a, tmp) if a.sim_ms > 0 else None
        over = overhead_per_shard(teacher, classes, a, tmp, min(t["bare_s"]), min(t["bare_cpu"]), plan.n_shards)
        rss = memory(handle, a, n, tmp)

    print(json.dumps({
        "benchmark": "sample", "teacher": source, "n_images": n, "classes": len(classes),
        "batch_size": a.batch_size, "shard_size": a.shard_size, "repeats": a.repeats,
        "bare_img_s": round(bare, 2), "sample_img_s": round(samp, 2), "ratio": round(samp / bare, 3),
        "ratio_cpu": round(min(t["bare_cpu"]) / min(t["sample_cpu"]), 3),
        "ratio_paired_median": round(statistics.median(b / s for b, s in zip(t["bare_s"], t["sample_s"])), 3),
        "bare_s": [round(x, 3) for x in t["bare_s"]], "sample_s": [round(x, 3) for x in t["sample_s"]],
        "overhead_per_shard": over, "accelerator_like": sim, "memory": rss, "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }, indent=2))


if __name__ == "__main__":
    main()
