"""Reference statistics exchanged as a mu/sigma ``.npz``: the format pytorch-fid and clean-fid read and write.

``export_npz`` writes one set of statistics of a reference statistics directory (the refstats stage's output,
or an import): the overall statistics, or one class's. Keys:

- ``mu`` float64 [d], ``sigma`` float64 [d, d] (unbiased covariance): what pytorch-fid / clean-fid load;
- ``n`` (images), ``kid_reservoir`` float32 [k, d] (overall only: the seeded sample of raw features KID needs);
- what they were measured with, so they are never compared with features of another kind: ``extractor`` (the
  name metrics.json shows), ``extractor_sha256``, ``protocol``, ``preprocessing`` (``Extractor.preprocessing``),
  ``classes`` (the classes they cover), ``tinygan_format``.

``import_npz`` turns such a file (ours, or a plain pytorch-fid / clean-fid one) into a reference statistics
directory holding overall statistics only (no per-class ones: enough for ``tinygan score`` and FID/KID, not for
evaluate's intra-FID). The file must have been made with the extractor and preprocessing it is imported for:
a recorded mismatch is refused in one line; a file that records nothing (pytorch-fid, clean-fid) is refused
unless the user vouches for it (``assume=True``). Sizes are read from the array headers and bounded before any
array is loaded; values must be finite and sigma symmetric with a non-negative diagonal.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from tinygan.errors import TinyGANError
from tinygan.frechet import ClassStats, ClassStatsWriter, Stats, save_npz
from tinygan.io import atomic_dir, sha256_file, write_json

NPZ_FORMAT = "tinygan-refstats-npz-v1"
REFSTATS_JSON = "refstats.json"  # the description beside a reference statistics directory's arrays
DIR_FILES = ("index.json", "overall.npz", REFSTATS_JSON)  # what an imported directory holds
MAX_FEATURE_DIM = 8192      # sigma at d = 8192 is 512 MiB of float64
MAX_RESERVOIR = 50_000      # KID reservoir rows
STRING_KEYS = ("extractor", "extractor_sha256", "protocol", "preprocessing", "tinygan_format")
MAX_STRING = 4096


def export_npz(refstats_dir: str | os.PathLike, out_path: str | os.PathLike, cls: int | None = None) -> dict:
    """Write the overall (``cls`` None) or one class's statistics of ``refstats_dir`` to ``out_path``;
    returns the recorded description (everything but the arrays)."""
    refstats_dir = Path(refstats_dir)
    info_path = refstats_dir / REFSTATS_JSON
    ref = ClassStats.load(refstats_dir)
    if not info_path.is_file():
        raise TinyGANError(f"{info_path} is missing: {refstats_dir} is not a reference statistics directory")
    info = json.loads(info_path.read_text())
    if cls is None:
        stats, classes = ref.overall, ref.classes
        if stats is None:
            raise TinyGANError(f"{refstats_dir} has no overall statistics; rerun the reference statistics stage")
    elif cls in ref:
        stats, classes = ref[cls], [int(cls)]
    else:
        raise TinyGANError(f"{refstats_dir} has no statistics of class {cls}; it has {ref.classes[:20]}")
    meta = {"extractor": info.get("extractor"), "extractor_sha256": info.get("extractor_sha256"),
            "protocol": info.get("protocol"), "preprocessing": info.get("preprocessing"),
            "tinygan_format": NPZ_FORMAT}
    arrays = {"mu": stats.mean, "sigma": stats.cov(), "n": np.array(stats.n, np.int64),
              "classes": np.asarray(classes, np.int64), **{k: np.array(str(v)) for k, v in meta.items()}}
    if cls is None and stats.reservoir is not None:
        arrays["kid_reservoir"] = stats.reservoir.astype(np.float32)
    save_npz(out_path, arrays)
    return {**meta, "n": int(stats.n), "feature_dim": stats.d, "classes": [int(c) for c in classes],
            "kid_reservoir": 0 if "kid_reservoir" not in arrays else len(arrays["kid_reservoir"])}


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a mu/sigma file, shapes bounded (from the headers, before loading) and values checked."""
    path = Path(path)
    if not path.is_file():
        raise TinyGANError(f"statistics file {path} not found")
    try:
        with zipfile.ZipFile(path) as zf:
            out = {}
            for member in zf.infolist():
                key = member.filename[:-4] if member.filename.endswith(".npy") else member.filename
                with zf.open(member) as f:
                    shape, _, dtype = npy_header(f)
                _check_bounds(path, key, shape, dtype)
                with zf.open(member) as f:
                    out[key] = np.lib.format.read_array(f, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise TinyGANError(f"{path} is not a readable .npz of statistics ({str(e)[:160]})") from None
    _check_values(path, out)
    return out


def npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the .npy stream ``f``, read without loading the array; ``f`` is left
    at the first byte of the data."""
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(f)
    return tuple(int(s) for s in shape), bool(fortran), dtype


def _check_bounds(path: Path, key: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    bad = TinyGANError(f"{path}: array {key!r} has shape {shape} and dtype {dtype}, outside what a statistics "
                       f"file holds (d <= {MAX_FEATURE_DIM}, reservoir <= {MAX_RESERVOIR} rows)")
    if dtype.hasobject:
        raise bad
    if key in STRING_KEYS:
        if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * MAX_STRING:
            raise bad
    elif key == "mu" and (len(shape) != 1 or shape[0] > MAX_FEATURE_DIM):
        raise bad
    elif key == "sigma" and (len(shape) != 2 or max(shape) > MAX_FEATURE_DIM):
        raise bad
    elif key == "kid_reservoir" and (len(shape) != 2 or shape[0] > MAX_RESERVOIR or shape[1] > MAX_FEATURE_DIM):
        raise bad
    elif key in ("n", "classes") and (len(shape) > 1 or int(np.prod(shape)) > 1_000_000):
        raise bad
    elif key not in ("mu", "sigma", "kid_reservoir", "n", "classes", *STRING_KEYS) and np.prod(shape) > 1_000_000:
        raise bad  # an unknown extra key: tolerated (ignored) when small


def _check_values(path: Path, arrays: dict) -> None:
    if "mu" not in arrays or "sigma" not in arrays:
        raise TinyGANError(f"{path} lacks mu and sigma (keys: {sorted(arrays)[:10]}); it is not a statistics file")
    mu, sigma = arrays["mu"], arrays["sigma"]
    d = mu.shape[0]
    if sigma.shape != (d, d) or d < 1:
        raise TinyGANError(f"{path}: sigma has shape {sigma.shape}, expected ({d}, {d}) to match mu")
    res = arrays.get("kid_reservoir")
    if res is not None and res.shape[1] != d:
        raise TinyGANError(f"{path}: kid_reservoir has width {res.shape[1]}, expected {d}")
    for key in ("mu", "sigma", "kid_reservoir"):
        if key in arrays and not (arrays[key].dtype.kind == "f" and np.isfinite(arrays[key]).all()):
            raise TinyGANError(f"{path}: {key} must hold finite floating-point values")
    scale = max(float(np.abs(sigma).max()), 1e-30)
    if float(np.abs(sigma - sigma.T).max()) > 1e-5 * scale or float(np.diag(sigma).min()) < -1e-6 * scale:
        raise TinyGANError(f"{path}: sigma is not a covariance matrix (not symmetric, or a negative variance)")
    if "n" in arrays and (arrays["n"].shape != () or not 2 <= int(arrays["n"]) <= 10**12):
        raise TinyGANError(f"{path}: n must be an image count >= 2, got {arrays['n']!r}")


def import_npz(npz_path: str | os.PathLike, out_dir: str | os.PathLike, ext, extractor_path: str | os.PathLike,
               assume: bool = False) -> dict:
    """Reference statistics directory ``out_dir`` (overall statistics only) from a mu/sigma file made with
    ``ext`` (the ``tinygan.extractors.Extractor`` at ``extractor_path``, under its protocol); returns its
    refstats.json content. ``assume``: the file records no extractor, and the user vouches that it was made
    with this one and this preprocessing."""
    arrays = read_npz(npz_path)
    sha = sha256_file(extractor_path)
    recorded = {k: str(arrays[k]) for k in ("extractor", "extractor_sha256", "preprocessing") if k in arrays}
    _check_made_with(Path(npz_path), recorded, ext, sha, assume)
    d = arrays["mu"].shape[0]
    if d != ext.feature_dim:
        raise TinyGANError(f"{npz_path} holds {d}-dimensional statistics but {ext.name} gives {ext.feature_dim} "
                           f"features: it was made with another extractor")
    n_known = "n" in arrays
    n = int(arrays["n"]) if n_known else 2  # FID needs only mean and covariance: n cancels out of m2 / (n - 1)
    res = arrays.get("kid_reservoir")
    stats = Stats.from_moments(arrays["mu"], arrays["sigma"], n)
    stats.reservoir = None if res is None else res.astype(np.float32)
    info = {"extractor": ext.name, "extractor_sha256": sha, "feature_dim": d, "protocol": ext.protocol,
            "preprocessing": ext.preprocessing, "n": n if n_known else None, "num_classes": 0, "class_counts": {},
            "kid_reservoir": 0 if res is None else int(len(res)),
            "imported_from": Path(npz_path).name, "imported_sha256": sha256_file(npz_path)}
    with atomic_dir(out_dir, DIR_FILES) as tmp:
        write_json(tmp / REFSTATS_JSON, info)
        ClassStatsWriter(tmp).close(stats)
    return info


def _check_made_with(path: Path, recorded: dict, ext, sha: str, assume: bool) -> None:
    if not recorded:
        if assume:
            return
        raise TinyGANError(f"{path} does not record the extractor it was made with (a pytorch-fid / clean-fid "
                           f"file?); if it was made with {ext.name} as {ext.preprocessing!r}, pass "
                           f"--assume-extractor")
    mine = {"extractor": ext.name, "extractor_sha256": sha, "preprocessing": ext.preprocessing}
    for key, value in recorded.items():
        if value != mine[key]:
            raise TinyGANError(f"{path} was made with {key} {value!r}, but the extractor here has {mine[key]!r}: "
                               f"statistics of different extractors or protocols cannot be compared (set "
                               f"evaluate.extractor / extractor_path / protocol to match, or re-measure)")
