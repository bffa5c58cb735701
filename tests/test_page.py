"""The browser page (tinygan/page.py): built into the export, deterministic, atomic, its noise recipe equal to
Python's, and (where Chromium and the vendored onnxruntime-web are installed) run in headless Chromium with its
pixels compared to onnxruntime-python's on the same inputs."""
import base64
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tinygan import export as ex
from tinygan import page
from tinygan.errors import TinyGANError
from tinygan.generate import draw_z, interpolation_sheet, open_model, to_uint8
from tinygan.train import save_generator

from browser import Chromium, find_chromium, static_server
from conftest import random_generator

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / page.VENDOR_DIR
CLASSES = [1, 9, 207]
# Page output vs onnxruntime-python on identical inputs: WebAssembly kernels sum in another order, so floats
# differ by rounding (measured ~1e-6); pixels may then differ by one step where a value sits on a rounding edge.
FLOAT_TOL, PIXEL_TOL = 1e-4, 1


def tree(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture
def fake_vendor(tmp_path, monkeypatch):
    """Small stand-ins for the onnxruntime-web files, pinned by their sha256 (no npm needed)."""
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    pins = {}
    for name in page.ORT_FILES:
        data = f"// stand-in for {name}\n".encode()
        (vendor / name).write_bytes(data)
        pins[name] = hashlib.sha256(data).hexdigest()
    monkeypatch.setattr(page, "ORT_FILES", pins)
    return vendor


def export_with_page(tmp_path: Path, vendor, name: str = "model", classes=CLASSES, **kw) -> Path:
    src = tmp_path / "g.safetensors"
    if not src.exists():
        save_generator(random_generator(), src)
    ex.export(str(src), str(tmp_path / name), classes, page_vendor=str(vendor), **kw)
    return tmp_path / name


def test_page_files_config_and_noise_table(tmp_path, fake_vendor):
    out = export_with_page(tmp_path, fake_vendor)
    assert sorted(p.name for p in (out / "page").iterdir()) == sorted(page.PAGE_FILES)
    assert sorted(p.name for p in (out / "page" / "ort").iterdir()) == sorted(page.ORT_FILES)
    cfg = json.loads((out / "page" / "page.json").read_text())
    assert cfg["model"] == "../generator.onnx" and cfg["model_bytes"] == (out / "generator.onnx").stat().st_size
    assert cfg["classes"] == [{"index": 1, "name": "goldfish"}, {"index": 9, "name": "ostrich"},
                              {"index": 207, "name": "golden retriever"}]
    assert cfg["latent"] == "biggan" and cfg["truncation"] == 0.5 and cfg["z_dim"] == 128
    table = np.frombuffer((out / "page" / "z.bin").read_bytes(), "<f4").reshape(page.Z_SEEDS, 128)
    for seed, t in ((0, 0.5), (5, 0.37), (63, 1.0)):
        # the page's recipe, float32(t) * row, is Python's z for (seed, t) bit for bit
        assert (np.float32(t) * table[seed]).tobytes() == draw_z(seed, t, 128).tobytes()
    text = (out / "README.md").read_text()
    assert "## In the browser" in text and "http.server" in text


def test_page_is_byte_identical_and_replaced_whole(tmp_path, fake_vendor):
    # (the TorchScript file, and the card that lists its sha256, are reproducible across processes only)
    a = export_with_page(tmp_path, fake_vendor, "a")
    b = export_with_page(tmp_path, fake_vendor, "b")
    assert tree(a / "page") == tree(b / "page") and tree(a / "page")
    (a / "page" / "stale.txt").write_text("from an older export")  # page/ is owned whole: replaced, not merged
    export_with_page(tmp_path, fake_vendor, "a")
    assert tree(a / "page") == tree(b / "page")


def test_missing_runtime_is_one_line_before_anything_is_written(tmp_path):
    with pytest.raises(TinyGANError) as e:
        export_with_page(tmp_path, tmp_path / "nowhere")
    msg = str(e.value)
    assert "\n" not in msg and "ort.wasm.min.js is missing" in msg and "tinygan fetch-web-runtime" in msg
    assert "export.page: false" in msg and not (tmp_path / "model").exists()


def test_tampered_runtime_is_refused(tmp_path, fake_vendor):
    (fake_vendor / "ort.wasm.min.js").write_text("// something else")
    with pytest.raises(TinyGANError, match="sha256 differs"):
        export_with_page(tmp_path, fake_vendor)


def test_crash_while_building_the_page_keeps_the_previous_export(tmp_path, fake_vendor, monkeypatch):
    out = export_with_page(tmp_path, fake_vendor)
    before = tree(out)

    def boom(*args, **kwargs):
        raise RuntimeError("killed")
    monkeypatch.setattr(page, "z_table", boom)
    save_generator(random_generator(7), tmp_path / "g.safetensors")  # other weights: other files
    with pytest.raises(RuntimeError, match="killed"):
        export_with_page(tmp_path, fake_vendor)
    assert tree(out) == before


# ---- in a real browser -----------------------------------------------------------------------------------------

def _b64(s: str, dtype) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype)


def _rgb(rgba_b64: str, width: int, height: int) -> np.ndarray:
    return _b64(rgba_b64, np.uint8).reshape(height, width, 4)[..., :3]


@pytest.fixture(scope="module")
def browser_ready():
    if find_chromium() is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; .ci/install does it)")
    try:
        page.vendor_files(VENDOR)
    except TinyGANError as e:
        pytest.skip(f"onnxruntime-web is not vendored: {e}")


@pytest.fixture(scope="module")
def browser_export(browser_ready, tmp_path_factory):
    return export_with_page(tmp_path_factory.mktemp("page"), VENDOR)


def run_page(out: Path, query: str, then: str | None = None, screenshot: Path | None = None) -> dict:
    """Open ``out``/page/?``query`` in headless Chromium: the first result, ``then``'s (a JS expression), the
    status line and the facts table; a screenshot at the end."""
    with static_server(out) as url:
        browser = Chromium(find_chromium())
        try:
            browser.navigate(f"{url}/page/?{query}")
            browser.wait_for("typeof window.tinygan === 'object'")
            got = {"first": browser.evaluate("window.tinygan.ready")}
            got["then"] = browser.evaluate(then) if then else None
            got["status"] = browser.evaluate("document.getElementById('status').textContent")
            got["facts"] = browser.evaluate("document.getElementById('facts').textContent")
            if screenshot:
                browser.screenshot(screenshot)
        finally:
            browser.close()
    return got


def check_result(got: dict, out: Path, cls: int, seed: int, seed2: int, t: float) -> None:
    """The page's z is Python's exactly; its image, pixels and strip match onnxruntime-python's on that z."""
    runner, cfg = open_model(out / "generator.onnx")
    r, latent = cfg["resolution"], cfg.get("latent", "biggan")
    assert (got["cls"], got["seed"], got["seed2"], got["truncation"]) == (cls, seed, seed2, t)
    z = draw_z(seed, t, cfg["z_dim"], latent)
    assert _b64(got["z"], np.float32).tobytes() == z.tobytes()  # the page drew Python's z exactly
    want = runner(z[None], np.array([cls]))
    image = _b64(got["image"], np.float32).reshape(want.shape)
    assert np.abs(image - want).max() <= FLOAT_TOL
    pixels = _rgb(got["pixels"], r, r).astype(np.int16)
    assert np.abs(pixels - to_uint8(want)[0]).max() <= PIXEL_TOL
    strip = interpolation_sheet(runner, "seeds", seed, seed2, [cls], 8, t, latent)  # tinygan generate's
    assert np.abs(_rgb(got["stripPixels"], 8 * r, r) - strip.astype(np.int16)).max() <= PIXEL_TOL


def test_page_in_chromium_matches_onnxruntime_python(browser_export, tmp_path):
    shot = Path(os.environ.get("TINYGAN_PAGE_SCREENSHOT", tmp_path / "page.png"))
    # the first image from the URL's settings, then the controls and the Generate path: other class, seeds, t
    got = run_page(browser_export, "class=9&seed=3&seed2=7&truncation=0.5", """(() => {
        document.getElementById('class').value = '207'; document.getElementById('seed').value = '12';
        document.getElementById('seed2').value = '0'; document.getElementById('truncation').value = '0.8';
        return window.tinygan.generate(); })()""", shot)
    check_result(got["first"], browser_export, 9, 3, 7, 0.5)
    check_result(got["then"], browser_export, 207, 12, 0, 0.8)
    assert "Generated 1 image in" in got["status"] and "ms per image" in got["status"]
    assert "generator.onnx" in got["facts"] and f"onnxruntime-web {page.ORT_WEB_VERSION}" in got["facts"]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_page_of_a_32px_stylegan_model_with_its_own_class_names(browser_ready, tmp_path):
    """Another teacher's shape (issue 10): z 512 standard normal (truncation acts inside the teacher), 32²."""
    save_generator(random_generator(4, resolution=32, n_classes=10, z_dim=512), tmp_path / "g.safetensors")
    out = export_with_page(tmp_path, VENDOR, classes=[1, 9], latent="stylegan",
                           class_names={1: "car", 9: "truck"}, truncation=0.7)
    got = run_page(out, "class=9&seed=2&seed2=4&truncation=0.7", "document.getElementById('class').textContent")
    check_result(got["first"], out, 9, 2, 4, 0.7)
    assert got["then"] == "car (1)truck (9)"


def test_fetch_web_runtime_takes_the_pinned_files_from_the_npm_package(tmp_path, fake_vendor, monkeypatch):
    import tarfile

    tgz = tmp_path / "pkg.tgz"
    with tarfile.open(tgz, "w:gz") as archive:
        for name in page.ORT_FILES:
            archive.add(fake_vendor / name, f"package/dist/{name}")
        archive.add(fake_vendor / name, "package/dist/ort.all.min.js")  # not wanted: not copied
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "npm").write_text(f'#!/bin/sh\n[ "$1" = pack ] && cp {tgz} "$4/onnxruntime-web-x.tgz"\n')
    (bin_dir / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    got = page.fetch_runtime(tmp_path / "v")
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == sorted(page.ORT_FILES) == sorted(p.name for p in got)
    assert page.vendor_files(tmp_path / "v")
    monkeypatch.setattr(page, "ORT_FILES", {**page.ORT_FILES, "ort.wasm.min.js": "0" * 64})
    with pytest.raises(TinyGANError, match="does not have the sha256 pinned"):
        page.fetch_runtime(tmp_path / "w")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(TinyGANError, match="needs npm"):
        page.fetch_runtime(tmp_path / "w")
