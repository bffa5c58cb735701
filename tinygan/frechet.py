"""Exact, fast Fréchet distance between Gaussians fitted to feature sets, and streaming feature stats.

    FD = ||mu1 - mu2||^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2)

The reference implementation (clean-fid, pytorch-fid) forms S1 @ S2 and calls ``scipy.linalg.sqrtm``
on the d x d product: a general (Schur) matrix square root, ~30 s and more at d = 2048 on a CPU.
Only the *trace* of the square root is needed, and that equals the sum of the square roots of the
eigenvalues of S1 S2, which are real and >= 0. We get them from small or symmetric problems:

* both sets have fewer samples than dimensions (n <= d): with centred feature matrices A1 [n1, d],
  A2 [n2, d] and S_i = A_i^T A_i / (n_i - 1), the non-zero eigenvalues of S1 S2 are the squared
  singular values of A1 A2^T / sqrt((n1 - 1)(n2 - 1)), an n1 x n2 matrix;
* one set low-rank (A1 given, S2 a full covariance): the non-zero eigenvalues of S1 S2 are those of
  the n1 x n1 PSD matrix A1 S2 A1^T / (n1 - 1) (symmetric eigvalsh; tiny negative round-off clipped);
* both full: with S1 = B B^T (Cholesky when S1 is positive definite, else B = V sqrt(W) from the
  symmetric eigendecomposition S1 = V W V^T), S1 S2 is similar to the symmetric PSD B^T S2 B.

Everything runs in float64. ``frechet_scipy`` keeps the clean-fid formula as the test oracle.

Streaming statistics (``StatsAccumulator`` -> ``Stats``) never grow with the sample count beyond
max(n, d) rows: while n <= d the raw features are kept (the low-rank paths above need them, and they
are smaller than a d x d matrix); past d they are folded into a float64 scatter matrix. Raw features
are stored in the dtype they arrive in (float32 from the extractors; float64 if given float64): the
stored values are the inputs bit for bit, so nothing is lost; centring happens in float64 on use.
Storing float32 *centred* features, or float16 anything, would round and is not done.

Sizes at d = 2048: one class of 1,300 real ImageNet images keeps 1300 x 2048 float32 = 10.6 MB of
raw features (398 classes: 4.2 GB), against 2048^2 float64 = 33.6 MB for a covariance (13.4 GB).
A set with n > d (50,000 samples, or 5,000 generated per class) costs one 33.6 MB scatter matrix
while it is accumulated, so compute per-class generated stats class by class, not all at once.
"""
from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import scipy.linalg

from tinygan.errors import TinyGANError
from tinygan.io import atomic_path, write_json

STATS_FORMAT = "tinygan-stats-v1"


def check_finite(x: np.ndarray, what: str) -> None:
    """One TinyGANError line naming ``what`` when ``x`` holds NaN or inf (a metric must never be a silent NaN)."""
    x = np.asarray(x)
    if x.dtype.kind in "fc" and not np.isfinite(x).all():
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise TinyGANError(f"{what}: {bad} NaN/inf value(s) of {np.size(x)}; the images, the extractor or the "
                           "file they came from are broken: fix them and recompute")


# ----------------------------------------------------------------------------------------------
# Reference formula (oracle)


def frechet_scipy(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance exactly as clean-fid computes it: ``scipy.linalg.sqrtm(sigma1 @ sigma2)``.

    If the square root is not finite, ``eps`` is added to both diagonals and it is retried; a small
    imaginary part from round-off is dropped (a large one raises ValueError, as in clean-fid).
    Slow (general d x d matrix square root); kept as the oracle the fast path is tested against.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


# The name the evaluation brief uses for the reference formula on (mean, covariance) pairs.
frechet_from_stats = frechet_scipy


# ----------------------------------------------------------------------------------------------
# Statistics of one feature set


@dataclass
class Stats:
    """Sufficient statistics of one feature set for the Fréchet distance (and KID's reservoir).

    Exactly one of ``feats`` / ``m2`` is set:
      feats: the raw features [n, d] (float32 or float64, as given) — kept while n <= d;
      m2:    the centred scatter matrix sum_i (x_i - mean)(x_i - mean)^T, float64 [d, d].
    mean is float64 [d]. ``reservoir`` optionally holds a seeded uniform sample of raw features
    (at most the accumulator's ``reservoir`` rows) for KID.
    """

    n: int
    mean: np.ndarray
    feats: np.ndarray | None = None
    m2: np.ndarray | None = None
    reservoir: np.ndarray | None = None

    @property
    def d(self) -> int:
        return int(self.mean.shape[0])

    @property
    def low_rank(self) -> bool:
        """True when the raw features are kept and there are no more of them than dimensions."""
        return self.feats is not None and self.n <= self.d

    def check_finite(self, where: str) -> None:
        """TinyGANError naming ``where`` and the array when any of mean/feats/m2/reservoir holds NaN or inf."""
        for name, a in (("mean", self.mean), ("feats", self.feats), ("m2", self.m2), ("reservoir", self.reservoir)):
            if a is not None:
                check_finite(a, f"{where}: {name}")

    def _check_n(self) -> None:
        if self.n < 2:
            raise TinyGANError(f"feature statistics need at least 2 samples, got {self.n}: "
                               "extract features from more images")

    def centered(self) -> np.ndarray:
        """Centred features A = X - mean, float64 [n, d] (needs ``feats``); cov = A^T A / (n - 1)."""
        if self.feats is None:
            raise ValueError("these stats keep a scatter matrix, not the raw features")
        return self.feats.astype(np.float64) - self.mean

    def cov(self) -> np.ndarray:
        """Unbiased covariance, float64 [d, d] (formed on demand; d x d memory)."""
        self._check_n()
        if self.m2 is not None:
            return self.m2 / (self.n - 1)
        a = self.centered()
        return a.T @ a / (self.n - 1)

    def trace_cov(self) -> float:
        self._check_n()
        if self.m2 is not None:
            return float(np.trace(self.m2)) / (self.n - 1)
        a = self.centered()
        return float(np.einsum("ij,ij->", a, a)) / (self.n - 1)

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def from_features(cls, feats: np.ndarray) -> "Stats":
        """Stats of an in-memory feature matrix [n, d] (same as one accumulator update)."""
        feats = np.asarray(feats)
        acc = StatsAccumulator(feats.shape[1])
        acc.update(feats)
        return acc.finalize()

    @classmethod
    def from_moments(cls, mean: np.ndarray, cov: np.ndarray, n: int) -> "Stats":
        """Stats from a mean and unbiased covariance of n samples (e.g. clean-fid's mu/sigma)."""
        mean = np.asarray(mean, dtype=np.float64)
        cov = np.asarray(cov, dtype=np.float64)
        if cov.shape != (mean.shape[0], mean.shape[0]):
            raise ValueError(f"cov shape {cov.shape} does not match mean shape {mean.shape}")
        out = cls(n=int(n), mean=mean, m2=cov * (int(n) - 1))
        out.check_finite("the given mean/covariance")
        return out

    # -- persistence --------------------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"format": np.array(STATS_FORMAT), "n": np.array(self.n, dtype=np.int64), "mean": self.mean}
        if self.feats is not None:
            out["feats"] = self.feats
        if self.m2 is not None:
            out["m2"] = self.m2
        if self.reservoir is not None:
            out["reservoir"] = self.reservoir
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write an uncompressed .npz atomically and deterministically (same stats -> same bytes)."""
        save_npz(path, self.arrays())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Stats":
        path = Path(path)
        if not path.is_file():
            raise TinyGANError(f"feature statistics file not found: {path}; run the stage that computes it")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as e:  # zipfile / format errors
            raise TinyGANError(f"cannot read feature statistics {path} ({e}); delete it and recompute") from None
        if str(arrays.get("format", "")) != STATS_FORMAT or "mean" not in arrays or "n" not in arrays:
            raise TinyGANError(f"{path} is not a {STATS_FORMAT} file; delete it and recompute")
        out = cls(n=int(arrays["n"]), mean=arrays["mean"], feats=arrays.get("feats"),
                  m2=arrays.get("m2"), reservoir=arrays.get("reservoir"))
        out.check_finite(f"feature statistics {path}")
        return out


def save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Uncompressed .npz readable by ``np.load``, written atomically with fixed zip timestamps."""
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key in sorted(arrays):
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                with zf.open(info, "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asarray(arrays[key]), allow_pickle=False)


# ----------------------------------------------------------------------------------------------
# Streaming accumulation


class StatsAccumulator:
    """Accumulate feature statistics batch by batch; memory stays O(min(n, d) * d).

    While n <= ``raw_limit`` (default d) the raw feature batches are kept. When a batch would take
    n past it, everything is folded into a scatter matrix about a fixed shift c (the mean of the
    data seen at the switch): S = sum (x - c)(x - c)^T, s = sum (x - c), both float64. Shifting by a
    value close to the mean keeps S - s s^T / n free of cancellation. ``finalize`` turns this into
    mean and centred scatter; it does not end accumulation.

    ``reservoir`` > 0 also keeps a uniform random sample of that many raw feature rows (Algorithm
    R, seeded by ``seed``; the sample depends only on the seed and the order of the rows) for KID,
    which needs raw features but only ~1,000 per subset.
    """

    def __init__(self, d: int, reservoir: int = 0, seed: int = 0, raw_limit: int | None = None):
        self.d = int(d)
        self.raw_limit = self.d if raw_limit is None else int(raw_limit)
        self.n = 0
        self._raw: list[np.ndarray] = []
        self._shift: np.ndarray | None = None
        self._s: np.ndarray | None = None
        self._S: np.ndarray | None = None
        self._res_size = int(reservoir)
        self._res: np.ndarray | None = None
        self._rng = np.random.default_rng(seed)

    def update(self, feats) -> None:
        """Add a batch of features [B, d] (numpy array or torch tensor)."""
        x = _as_float_array(feats)
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"expected features of shape [B, {self.d}], got {tuple(x.shape)}")
        check_finite(x, "extracted features")
        if len(x) == 0:
            return
        self._update_reservoir(x)
        if self._S is None and self.n + len(x) <= self.raw_limit:
            self._raw.append(x.copy())
        elif self._S is None:  # switch over: fold the raw rows kept so far and this batch together
            allx = np.concatenate(self._raw + [x]).astype(np.float64)
            self._raw = []
            self._shift = allx.mean(axis=0)
            y = allx - self._shift
            self._S = y.T @ y
            self._s = y.sum(axis=0)
        else:
            y = x.astype(np.float64) - self._shift
            self._S += y.T @ y
            self._s += y.sum(axis=0)
        self.n += len(x)

    def _update_reservoir(self, x: np.ndarray) -> None:
        k = self._res_size
        if k <= 0:
            return
        if self._res is None:
            self._res = np.empty((0, self.d), dtype=x.dtype)
        take = max(0, min(k - len(self._res), len(x)))
        if take:
            self._res = np.concatenate([self._res, x[:take]]).astype(np.result_type(self._res, x))
        rest = x[take:]
        if len(rest):
            # Row t (0-based global index) replaces a random slot with probability k / (t + 1).
            t = self.n + take + np.arange(len(rest))
            j = self._rng.integers(0, t + 1)
            for row, slot in zip(rest[j < k], j[j < k]):  # in order: later rows win, as in Algorithm R
                self._res[slot] = row

    def finalize(self) -> Stats:
        if self.n == 0:
            raise TinyGANError("no features were accumulated: the image source is empty")
        res = None if self._res is None else self._res.copy()
        if self._S is None:
            feats = np.concatenate(self._raw)
            return Stats(n=self.n, mean=feats.astype(np.float64).mean(axis=0), feats=feats, reservoir=res)
        delta = self._s / self.n
        m2 = self._S - np.outer(self._s, delta)
        m2 = 0.5 * (m2 + m2.T)
        return Stats(n=self.n, mean=self._shift + delta, m2=m2, reservoir=res)


def _as_float_array(feats) -> np.ndarray:
    if hasattr(feats, "detach"):  # torch tensor
        feats = feats.detach().cpu().numpy()
    x = np.asarray(feats)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)  # exact for float16 and ints < 2**53
    return x


# ----------------------------------------------------------------------------------------------
# Fast exact Fréchet distance


def _sum_sqrt(eigvals: np.ndarray) -> float:
    return float(np.sqrt(np.clip(eigvals, 0.0, None)).sum())


def _tr_sqrt_lowrank_lowrank(a1: np.ndarray, n1: int, a2: np.ndarray, n2: int) -> float:
    sv = np.linalg.svd(a1 @ a2.T, compute_uv=False)
    return float(sv.sum()) / math.sqrt((n1 - 1) * (n2 - 1))


def _tr_sqrt_lowrank_full(a1: np.ndarray, n1: int, sigma2: np.ndarray) -> float:
    k = (a1 @ sigma2) @ a1.T
    k = 0.5 * (k + k.T)
    return _sum_sqrt(scipy.linalg.eigh(k, eigvals_only=True, driver="evd")) / math.sqrt(n1 - 1)


def _tr_sqrt_full_full(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    try:  # sigma1 = L L^T; sigma1 sigma2 is similar to L^T sigma2 L
        b = np.linalg.cholesky(sigma1)
    except np.linalg.LinAlgError:  # singular sigma1: sigma1 = (V sqrt W)(V sqrt W)^T
        w, v = scipy.linalg.eigh(sigma1, driver="evd")
        b = v * np.sqrt(np.clip(w, 0.0, None))
    k = b.T @ sigma2 @ b
    k = 0.5 * (k + k.T)
    return _sum_sqrt(scipy.linalg.eigh(k, eigvals_only=True, driver="evd"))


def trace_sqrt_product(a: Stats, b: Stats) -> float:
    """tr sqrt(Sigma_a Sigma_b), choosing the cheapest exact path for the two representations."""
    a._check_n()
    b._check_n()
    if a.low_rank and b.low_rank:
        return _tr_sqrt_lowrank_lowrank(a.centered(), a.n, b.centered(), b.n)
    if a.low_rank:
        return _tr_sqrt_lowrank_full(a.centered(), a.n, b.cov())
    if b.low_rank:
        return _tr_sqrt_lowrank_full(b.centered(), b.n, a.cov())
    return _tr_sqrt_full_full(a.cov(), b.cov())


def frechet_distance(a: Stats, b: Stats) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets (FID on Inception stats)."""
    if a.d != b.d:
        raise TinyGANError(f"feature dimensions differ ({a.d} vs {b.d}): both stats must come from "
                           "the same extractor")
    a.check_finite("FID statistics (first set)")
    b.check_finite("FID statistics (second set)")
    diff = a.mean - b.mean
    return float(diff @ diff + a.trace_cov() + b.trace_cov() - 2.0 * trace_sqrt_product(a, b))


# ----------------------------------------------------------------------------------------------
# Per-class statistics


class ClassStats:
    """Per-class ``Stats`` (class index -> Stats) plus optional ``overall`` stats of all classes.

    Saved as a directory: ``class_XXXX.npz`` per class, ``overall.npz``, and ``index.json`` (written
    last, so a directory with an index is complete). ``load`` is lazy: a class's file is read when
    that class is asked for, so intra-FID over 398 classes never holds them all in memory.
    """

    def __init__(self, per_class: Mapping[int, Stats] | None = None, overall: Stats | None = None):
        self._mem: dict[int, Stats] = {int(c): s for c, s in (per_class or {}).items()}
        self._dir: Path | None = None
        self._files: dict[int, str] = {}
        self._overall = overall
        self._overall_file: str | None = None

    @property
    def classes(self) -> list[int]:
        return sorted(set(self._mem) | set(self._files))

    def __len__(self) -> int:
        return len(self.classes)

    def __contains__(self, cls) -> bool:
        return int(cls) in self._mem or int(cls) in self._files

    def __getitem__(self, cls) -> Stats:
        cls = int(cls)
        if cls in self._mem:
            return self._mem[cls]
        if cls in self._files:
            return Stats.load(self._dir / self._files[cls])
        raise KeyError(cls)

    def __setitem__(self, cls, stats: Stats) -> None:
        self._mem[int(cls)] = stats

    def items(self) -> Iterator[tuple[int, Stats]]:
        for c in self.classes:
            yield c, self[c]

    @property
    def overall(self) -> Stats | None:
        if self._overall is None and self._overall_file is not None:
            return Stats.load(self._dir / self._overall_file)
        return self._overall

    @overall.setter
    def overall(self, stats: Stats | None) -> None:
        self._overall, self._overall_file = stats, None

    def save(self, directory: str | os.PathLike) -> None:
        writer = ClassStatsWriter(directory)
        for c, s in self.items():
            writer.add(c, s)
        writer.close(self.overall)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ClassStats":
        directory = Path(directory)
        index_path = directory / "index.json"
        if not index_path.is_file():
            raise TinyGANError(f"per-class statistics not found: {index_path} is missing; "
                               "run the stage that computes them")
        try:
            index = json.loads(index_path.read_text())
            files = {int(c): v["file"] for c, v in index["classes"].items()}
        except (ValueError, KeyError, TypeError) as e:
            raise TinyGANError(f"corrupt per-class statistics index {index_path} ({e}); delete the "
                               "directory and recompute") from None
        out = cls()
        out._dir, out._files = directory, files
        out._overall_file = index["overall"]["file"] if index.get("overall") else None
        return out


class ClassStatsWriter:
    """Writes a ``ClassStats`` directory one class at a time, so a caller can drop each class's statistics
    once added: ``add`` saves ``class_XXXX.npz``; ``close`` saves ``overall.npz``, deletes stale ``.npz``
    files and writes ``index.json`` last (it is removed on open: a directory with an index is complete)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "index.json").unlink(missing_ok=True)
        self.index = {"format": STATS_FORMAT, "classes": {}, "overall": None}

    def add(self, cls: int, stats: Stats) -> None:
        name = f"class_{int(cls):04d}.npz"
        stats.save(self.directory / name)
        self.index["classes"][str(int(cls))] = {"file": name, "n": stats.n, "d": stats.d}

    def close(self, overall: Stats | None = None) -> None:
        if overall is not None:
            overall.save(self.directory / "overall.npz")
            self.index["overall"] = {"file": "overall.npz", "n": overall.n, "d": overall.d}
        keep = {v["file"] for v in self.index["classes"].values()} | {"overall.npz"}
        for stale in self.directory.glob("*.npz"):
            if stale.name not in keep:
                stale.unlink()
        write_json(self.directory / "index.json", self.index)
