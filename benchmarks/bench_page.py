"""Generation speed in the browser page (onnxruntime-web, WebAssembly, one thread, headless Chromium) vs
onnxruntime-python (CPU, one intra-op thread) on the same ONNX file and the same z, side by side in one run.

For each model (TinyGAN-dw ch=32, the paper's; ch=8, the demo's; random weights — speed does not depend on
them) the export (with its page) is built, the page is opened from a local static server, and batch 1 and batch
8 are timed round by round, browser then Python, so both see the same machine load. The browser's time is the
page's own ``performance.now()`` around ``session.run``. Prints JSON: median ms per call, images/s, and the
ratio browser / Python.

    python benchmarks/bench_page.py [--rounds 10] [--ch 32 8]

Needs Chromium and the vendored onnxruntime-web (``tinygan fetch-web-runtime``).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the Chromium driver the page test uses

from browser import Chromium, find_chromium, static_server  # noqa: E402

from tinygan import export, page  # noqa: E402
from tinygan.generate import draw_z  # noqa: E402
from tinygan.models import Generator  # noqa: E402
from tinygan.train import save_generator  # noqa: E402

CLASS, TRUNCATION = 9, 0.5
JS_RUN = """(() => {{ const t = window.tinygan, d = {d}, n = {n}, z = new Float32Array(n * d);
  for (let k = 0; k < n; k++) z.set(t.zFor(k, {t}), k * d);
  return t.run(z, new Array(n).fill({c})).then(r => r.ms); }})()"""


def python_runner(onnx_path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level, opts.intra_op_num_threads = 3, 1
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])

    def run(z, y) -> float:
        t0 = time.perf_counter()
        sess.run(["image"], {"z": z, "y": y})
        return (time.perf_counter() - t0) * 1e3
    return run


def bench_model(ch: int, rounds: int, tmp: Path) -> dict:
    torch.manual_seed(0)
    G = Generator("dw", ch).eval()
    save_generator(G, tmp / f"g{ch}.safetensors")
    out = tmp / f"export{ch}"
    export.export(str(tmp / f"g{ch}.safetensors"), str(out), [CLASS], page_vendor=str(ROOT / page.VENDOR_DIR))
    py = python_runner(out / "generator.onnx")
    d = G.config["z_dim"]
    result = {"variant": "dw", "ch": ch, "params": sum(p.numel() for p in G.parameters()),
              "onnx_bytes": (out / "generator.onnx").stat().st_size}
    with static_server(out) as url:
        browser = Chromium(find_chromium(), timeout=300)
        try:
            browser.navigate(f"{url}/page/?class={CLASS}")
            browser.wait_for("typeof window.tinygan === 'object'")
            browser.evaluate("window.tinygan.ready.then(() => true)")
            for n in (1, 8):
                z = np.stack([draw_z(k, TRUNCATION, d) for k in range(n)])
                y = np.full(n, CLASS, dtype=np.int64)
                js = JS_RUN.format(d=d, n=n, t=TRUNCATION, c=CLASS)
                browser.evaluate(js)  # warm-up
                py(z, y)
                web, native = [], []
                for _ in range(rounds):
                    web.append(browser.evaluate(js))
                    native.append(py(z, y))
                w, p = statistics.median(web), statistics.median(native)
                result[f"batch{n}"] = {"browser_ms": round(w, 2), "python_ms": round(p, 2),
                                       "browser_images_per_s": round(1e3 * n / w, 1),
                                       "python_images_per_s": round(1e3 * n / p, 1),
                                       "browser_over_python": round(w / p, 2)}
        finally:
            browser.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10, help="timed calls per batch size and backend")
    ap.add_argument("--ch", type=int, nargs="+", default=[32, 8], help="channel multipliers to time")
    args = ap.parse_args()
    if find_chromium() is None:
        sys.exit("bench_page: Chromium is not installed (apt-get install chromium)")
    page.vendor_files(ROOT / page.VENDOR_DIR)
    with tempfile.TemporaryDirectory() as tmp:
        models = [bench_model(ch, args.rounds, Path(tmp)) for ch in args.ch]
    print(json.dumps({"machine": platform.processor() or platform.machine(),
                      "runtime": f"onnxruntime-web {page.ORT_WEB_VERSION} (wasm, 1 thread) vs onnxruntime "
                                 f"python (CPU, 1 thread)", "models": models}, indent=2))


if __name__ == "__main__":
    main()
