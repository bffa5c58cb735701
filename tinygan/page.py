"""The student in the browser: a static page, built into the export folder, that runs ``generator.onnx`` on the
client with onnxruntime-web (WebAssembly, one thread). Nothing is fetched from elsewhere and nothing is sent
anywhere: the page, its runtime and its noise table are files beside the model, and its Content-Security-Policy
allows only its own origin.

``build(page_dir, config, model_bytes)`` writes ``page_dir`` (the export's ``page/``):

- ``index.html``, ``page.js``  copied from this package (``page.html``, ``page.js``);
- ``page.json``                what the page needs: the model file (``../generator.onnx``), its size, the classes
  with their names, z width, resolution, latent recipe, default truncation, the noise table's shape;
- ``z.bin``                    the noise table: float32 little-endian [Z_SEEDS, z_dim], row s =
  ``tinygan.generate.draw_z(s, 1.0, z_dim, latent)`` (numpy PCG64; "biggan": the untruncated-scale truncated
  normal, "stylegan": standard normal). numpy's generator is not reproduced in JavaScript; the page scales a
  row as Python does: ``z = float32(truncation) * row`` (float32 product; "stylegan": the row itself), so seed
  s at truncation t is exactly the z of ``tinygan generate --interpolate seeds:s,...`` (first column);
- ``ort/``                     onnxruntime-web ``ORT_WEB_VERSION``: ``ORT_FILES``, copied from ``VENDOR_DIR``.

The runtime files are not in git (the .wasm is 14 MB): ``tinygan fetch-web-runtime`` (run by ``.ci/install``)
gets the pinned npm package with ``npm pack`` and keeps exactly these files, checked against the sha256 pinned
here; the build checks them again, so the page's bytes depend only on this module and the model. Without
them, the build fails with one line saying how to get them (or how to skip the page: ``export.page: false``).
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

from tinygan import classes as imagenet
from tinygan.errors import TinyGANError
from tinygan.generate import draw_z
from tinygan.io import write_bytes, write_json

ORT_WEB_VERSION = "1.30.0"
ORT_FILES = {  # file of the npm package's dist/ -> sha256 (single-threaded use of the SIMD build)
    "ort.wasm.min.js": "faece07e84faa9001f5104bbe4e5c70861d06cb2376a0dea1fa0ad33a67adc81",
    "ort-wasm-simd-threaded.mjs": "e13f7f94fc51b4ca72b12faeb1ee95f4ace6dfbc8939bc718aabdc0a27c4299b",
    "ort-wasm-simd-threaded.wasm": "3398c10d07d229bd91b364548e130e0e51a8e5704b88c7c083ebbeb78842dee2",
}
ORT_MAX_BYTES = 64 << 20  # bound on each runtime file read
VENDOR_DIR = "vendor/onnxruntime-web"  # git-ignored, relative to the repo root
TEMPLATES = {"index.html": "page.html", "page.js": "page.js"}  # page file -> package data file
PAGE_FILES = ("index.html", "page.js", "page.json", "z.bin", "ort")
Z_SEEDS = 64  # rows of the noise table: seeds 0..Z_SEEDS-1
MODEL_FILE = "generator.onnx"


def vendor_files(vendor: str | Path) -> dict[str, bytes]:
    """The pinned onnxruntime-web files in ``vendor``, checked; one TinyGANError line if any is missing or
    differs."""
    vendor, out = Path(vendor), {}
    how = ("run `tinygan fetch-web-runtime` (needs npm; `.ci/install` runs it) or set export.page: false to "
           "export without the browser page")
    for name, want in ORT_FILES.items():
        path = vendor / name
        if not path.is_file():
            raise TinyGANError(f"browser page: onnxruntime-web {ORT_WEB_VERSION} file {path} is missing; {how}")
        if path.stat().st_size > ORT_MAX_BYTES:
            raise TinyGANError(f"browser page: {path} is larger than {ORT_MAX_BYTES >> 20} MiB; {how}")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != want:
            raise TinyGANError(f"browser page: {path} is not onnxruntime-web {ORT_WEB_VERSION}'s (sha256 differs); "
                               f"{how}")
        out[name] = data
    return out


def fetch_runtime(vendor: str | Path = VENDOR_DIR) -> list[Path]:
    """``npm pack onnxruntime-web@ORT_WEB_VERSION`` into a temp dir; write ORT_FILES (sha256-checked) into
    ``vendor``, unless they are there already. Returns their paths."""
    vendor = Path(vendor)
    try:
        return [vendor / name for name in vendor_files(vendor)]
    except TinyGANError:
        pass  # missing or other files: fetch
    if shutil.which("npm") is None:
        raise TinyGANError("fetch-web-runtime needs npm (Debian: apt-get install npm), which is not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["npm", "pack", f"onnxruntime-web@{ORT_WEB_VERSION}", "--pack-destination", tmp, "--silent"]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        tgz = sorted(Path(tmp).glob("onnxruntime-web-*.tgz"))
        if run.returncode or not tgz:
            last = (run.stderr.strip().splitlines() or ["no package file"])[-1][:200]
            raise TinyGANError(f"`{' '.join(cmd[:3])}` failed ({last}); check the npm registry is reachable")
        written = []
        with tarfile.open(tgz[0]) as archive:  # read the named members only, never extractall
            for name, want in ORT_FILES.items():
                member = archive.getmember(f"package/dist/{name}")
                if not member.isfile() or member.size > ORT_MAX_BYTES:
                    raise TinyGANError(f"onnxruntime-web package: dist/{name} is not a file of a sane size")
                data = archive.extractfile(member).read()
                if hashlib.sha256(data).hexdigest() != want:
                    raise TinyGANError(f"onnxruntime-web {ORT_WEB_VERSION} from npm: dist/{name} does not have "
                                       f"the sha256 pinned in tinygan/page.py; refusing it")
                write_bytes(vendor / name, data)
                written.append(vendor / name)
    return written


def page_config(config: dict, model_bytes: int) -> dict:
    """page.json: the model's contract (from the export's config.json) and what the page shows."""
    names = config.get("class_names")
    classes = [{"index": c, "name": names.get(str(c), "") if names is not None else imagenet.name_of(c)}
               for c in config["classes"]]
    return {"model": f"../{MODEL_FILE}", "model_bytes": int(model_bytes), "conditional": bool(config["n_classes"]),
            "classes": classes, "z_dim": config["z_dim"], "resolution": config["resolution"],
            "latent": config.get("latent", "biggan"), "truncation": config["truncation"],
            "z_file": "z.bin", "z_seeds": Z_SEEDS, "onnxruntime_web": ORT_WEB_VERSION}


def z_table(z_dim: int, latent: str) -> np.ndarray:
    """float32 [Z_SEEDS, z_dim]: row s = ``draw_z(s, 1.0, z_dim, latent)`` (see the module docstring)."""
    return np.stack([draw_z(s, 1.0, z_dim, latent) for s in range(Z_SEEDS)]).astype("<f4")


def build(page_dir: str | Path, config: dict, model_bytes: int, vendor: str | Path = VENDOR_DIR) -> None:
    """Write the page into ``page_dir`` (a directory inside the export's temp dir: see ``export``)."""
    runtime = vendor_files(vendor)
    page_dir = Path(page_dir)
    for target, source in TEMPLATES.items():
        write_bytes(page_dir / target, resources.files("tinygan").joinpath(source).read_bytes())
    write_json(page_dir / "page.json", page_config(config, model_bytes))
    write_bytes(page_dir / "z.bin", z_table(config["z_dim"], config.get("latent", "biggan")).tobytes())
    for name, data in runtime.items():
        write_bytes(page_dir / "ort" / name, data)

