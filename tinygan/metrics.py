"""GAN metrics on extracted features, one small function each, as StyleGAN2-ADA's ``metrics/``:
Inception Score, KID (mean and std over subsets), intra-FID, improved precision and recall
(Kynkäänniemi et al. 2019) and density and coverage (Naeem et al. 2020).

FID itself is ``tinygan.frechet.frechet_distance`` on two feature sets' statistics. Every entry point
refuses NaN/inf input with one ``TinyGANError`` line naming the input (never a silent NaN).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from tqdm import tqdm

from tinygan.errors import TinyGANError
from tinygan.frechet import Stats, check_finite, frechet_distance

PR_K = 3          # improved precision/recall: k-th nearest neighbour radius (Kynkäänniemi et al.; StyleGAN2-ADA)
DC_K = 5          # density/coverage: k (Naeem et al.'s recommended value)
ALL_ROWS_FACTOR = 2  # KID may form the kernel of all rows once when both sets hold <= this x max_subset_size rows
BLOCK_ELEMENTS = 1 << 22  # pairwise distances are formed in row blocks of at most this many entries (32 MiB float64)


# ----------------------------------------------------------------------------------------------
# Inception Score


def is_split_assignment(n: int, splits: int, seed: int | None) -> np.ndarray:
    """The IS split (0..splits-1) of each of ``n`` rows.

    Split sizes are those of contiguous blocks [i*n//splits, (i+1)*n//splits). ``seed`` None: row r is in
    the block holding r (TF-GAN's and StyleGAN2-ADA's order; class-sorted rows then give one class per split
    and IS collapses towards 1). Otherwise row r is in the block holding ``perm[r]`` for the seeded permutation
    ``np.random.default_rng(seed).permutation(n)``: the rows are shuffled before splitting, so the score does
    not depend on the order the images come in.
    """
    bounds = [i * n // splits for i in range(splits + 1)]
    blocks = np.repeat(np.arange(splits), np.diff(bounds))
    return blocks if seed is None else blocks[np.random.default_rng(seed).permutation(n)]


class InceptionScore:
    """Streaming Inception Score over ``splits`` splits of ``n_total`` rows (``is_split_assignment``).

    IS of a split = exp(mean_x KL(p(y|x) || p(y))) = exp(mean_x sum_y p log p - sum_y p(y) log p(y)), with
    p(y) the split's mean row: per split only the row count, the sum of the rows and the sum of p log p are
    kept (O(splits x K) memory, plus the n_total split indices). Terms with p = 0 count as 0 (0 log 0 = 0).
    """

    def __init__(self, n_total: int, splits: int = 10, seed: int | None = 0):
        if splits < 1 or n_total < splits:
            raise TinyGANError(f"inception score needs N >= splits >= 1, got N={n_total}, splits={splits}")
        self.assign = is_split_assignment(int(n_total), int(splits), seed)
        self.splits, self.n = int(splits), 0
        self._count = np.zeros(self.splits)
        self._psum: np.ndarray | None = None
        self._plogp = np.zeros(self.splits)

    def update(self, probs) -> None:
        p = np.asarray(probs, dtype=np.float64)
        if p.ndim != 2 or self.n + len(p) > len(self.assign):
            raise TinyGANError(f"inception score: expected probabilities [N, K] for {len(self.assign)} rows in all, "
                               f"got {p.shape} after {self.n}")
        check_finite(p, "Inception Score class probabilities")
        if self._psum is None:
            self._psum = np.zeros((self.splits, p.shape[1]))
        s = self.assign[self.n:self.n + len(p)]
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
        np.add.at(self._count, s, 1)
        np.add.at(self._psum, s, p)
        np.add.at(self._plogp, s, plogp)
        self.n += len(p)

    def result(self) -> tuple[float, float]:
        if self.n != len(self.assign):
            raise RuntimeError(f"inception score: got {self.n} rows, expected {len(self.assign)}")
        m = self._psum / self._count[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            mlogm = np.where(m > 0, m * np.log(m), 0.0).sum(axis=1)
        scores = np.exp(self._plogp / self._count - mlogm)
        return float(np.mean(scores)), float(np.std(scores))


def inception_score(probs: np.ndarray, splits: int = 10, seed: int | None = 0) -> tuple[float, float]:
    """IS = exp(E_x KL(p(y|x) || p(y))) per split; returns (mean, std) over splits, as StyleGAN2-ADA.

    ``probs`` [N, K] are class probabilities (rows sum to 1). The rows are shuffled into splits by a seeded
    permutation (``is_split_assignment``; ``seed=None`` keeps TF-GAN's contiguous splits).
    """
    p = np.asarray(probs)
    if p.ndim != 2:
        raise TinyGANError(f"inception score needs probs [N, K], got {p.shape}")
    acc = InceptionScore(len(p), splits, seed)
    acc.update(p)
    return acc.result()


# ----------------------------------------------------------------------------------------------
# KID


def kid_subsets(feats_real: np.ndarray, feats_gen: np.ndarray, num_subsets: int = 100,
                max_subset_size: int = 1000, seed: int = 0) -> np.ndarray:
    """The ``num_subsets`` KID estimates (one per subset) whose mean is KID; see ``kid``."""
    x_all, y_all = np.asarray(feats_gen), np.asarray(feats_real)  # float64 per subset (not a copy of all rows)
    if x_all.ndim != 2 or y_all.ndim != 2 or x_all.shape[1] != y_all.shape[1]:
        raise TinyGANError(f"KID needs two feature matrices with the same width, got {y_all.shape} "
                           f"and {x_all.shape}")
    check_finite(y_all, "KID real features")
    check_finite(x_all, "KID generated features")
    m = min(len(x_all), len(y_all), max_subset_size)
    if m < 2:
        raise TinyGANError(f"KID needs at least 2 samples per set, got {len(y_all)} real, {len(x_all)} generated")
    rng = np.random.default_rng(seed)
    picks = [(rng.choice(len(x_all), m, replace=False), rng.choice(len(y_all), m, replace=False))
             for _ in range(num_subsets)]
    nx, ny, d = len(x_all), len(y_all), x_all.shape[1]
    all_rows_cost = (nx * nx + ny * ny + nx * ny) * (d + num_subsets)  # multiply-adds: kernels, membership sums
    if max(nx, ny) <= ALL_ROWS_FACTOR * max_subset_size and all_rows_cost < 3 * num_subsets * m * m * d:
        return _kid_all_rows(x_all, y_all, picks, m)
    return _kid_per_subset(x_all, y_all, picks, m)


def _kid_per_subset(x_all: np.ndarray, y_all: np.ndarray, picks, m: int) -> np.ndarray:
    """KID of each subset (``picks``: the generated and real rows of each) from its three m x m kernel matrices."""
    d, out = x_all.shape[1], np.empty(len(picks))
    for i, (ix, iy) in enumerate(picks):
        x, y = x_all[ix].astype(np.float64), y_all[iy].astype(np.float64)
        a = _cubic_kernel(x, x, d) + _cubic_kernel(y, y, d)
        b = _cubic_kernel(x, y, d)
        out[i] = ((a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m) / m
    return out


def _kid_all_rows(x_all: np.ndarray, y_all: np.ndarray, picks, m: int) -> np.ndarray:
    """As ``_kid_per_subset`` (equal up to float64 rounding), for small pools (``kid_subsets`` chooses): the
    kernel of every pair of pool rows is formed once (in row blocks) and each subset's kernel sums are read from it
    through 0/1 subset-membership matrices, sum_{i in S, j in T} k_ij = (W_S^T K W_T)_ss, instead of forming
    3 m x m kernel matrices per subset (100 subsets: ~3 x 100 m^2 d multiply-adds, against <= 3 x 4 m^2 (d + 100))."""
    x, y = x_all.astype(np.float64), y_all.astype(np.float64)
    wx, wy = np.zeros((len(x), len(picks))), np.zeros((len(y), len(picks)))
    for s, (ix, iy) in enumerate(picks):
        wx[ix, s], wy[iy, s] = 1.0, 1.0
    d = x.shape[1]
    xx, yy = _cubic_kernel_sums(x, x, wx, wx, d), _cubic_kernel_sums(y, y, wy, wy, d)
    diag = wx.T @ ((np.einsum("ij,ij->i", x, x) / d + 1.0) ** 3) + wy.T @ ((np.einsum("ij,ij->i", y, y) / d + 1.0) ** 3)
    xy = _cubic_kernel_sums(x, y, wx, wy, d)
    return ((xx + yy - diag) / (m - 1) - xy * 2 / m) / m


def _cubic_kernel_sums(x: np.ndarray, y: np.ndarray, wx: np.ndarray, wy: np.ndarray, d: int) -> np.ndarray:
    """[S]: sum_ij wx[i, s] (x_i.y_j/d + 1)^3 wy[j, s] for each column s, the kernel formed in row blocks of at
    most ``BLOCK_ELEMENTS`` / 4 entries (two float64 buffers of 8 MiB)."""
    out = np.zeros(wx.shape[1])
    rows = max(1, BLOCK_ELEMENTS // 4 // max(1, len(y)))
    for a in range(0, len(x), rows):
        k = x[a:a + rows] @ y.T
        k /= d
        k += 1.0
        cube = k * k
        cube *= k  # the same values as _cubic_kernel's k * k * k, one buffer fewer
        out += np.einsum("is,is->s", wx[a:a + rows], cube @ wy)
    return out


def _cubic_kernel(x: np.ndarray, y: np.ndarray, d: int) -> np.ndarray:
    """(x.y/d + 1)^3 for every pair of rows; the cube as two multiplications (``** 3`` calls pow per entry,
    ~90x slower; the two agree to ~1e-16 relative)."""
    k = x @ y.T
    k /= d
    k += 1.0
    return k * k * k


def kid(feats_real: np.ndarray, feats_gen: np.ndarray, num_subsets: int = 100,
        max_subset_size: int = 1000, seed: int = 0) -> float:
    """Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel (x.y/d + 1)^3.

    As StyleGAN2-ADA: m = min(n_real, n_gen, max_subset_size); each of ``num_subsets`` rounds draws m
    generated and m real rows without replacement (generated first, from
    ``np.random.default_rng(seed)``) and averages. Computed in float64 (StyleGAN2-ADA's float32 features keep
    their dtype: each estimate is a difference of two sums of m^2 kernel values near 1, so float32 loses digits to
    cancellation). When both feature sets hold at most ``ALL_ROWS_FACTOR`` x ``max_subset_size`` rows
    (evaluations of up to a few thousand images) and that costs fewer multiply-adds, the kernel of all pairs of rows
    is formed once and every subset's sums read from it (``_kid_all_rows``: up to ~100x fewer multiply-adds, equal
    up to float64 rounding); otherwise three m x m kernel
    matrices per subset (``_kid_per_subset``). Either way memory is bounded by ``max_subset_size``, not by the sets'
    sizes. Feed it raw features or a ``Stats.reservoir`` (a uniform sample).
    The spread over the subsets (``kid_std``) is ``kid_subsets(...).std()``.
    """
    return float(kid_subsets(feats_real, feats_gen, num_subsets, max_subset_size, seed).mean())


def intra_fid(per_class_a: Mapping[int, Stats], per_class_b: Mapping[int, Stats], progress: bool = False,
              desc: str = "intra-FID") -> tuple[float, dict[int, float]]:
    """Per-class FID between matching classes; returns (mean over classes, {class: fid}).

    Every class of ``per_class_a`` (e.g. generated) must be in ``per_class_b`` (e.g. real); classes are
    taken in ``per_class_a``'s order and each class's statistics are asked for once, so lazy mappings
    (``ClassStats`` loaded from disk, or statistics measured on access) hold one class at a time.
    """
    classes = [int(c) for c in (per_class_a.classes if hasattr(per_class_a, "classes") else per_class_a)]
    if not classes:
        raise TinyGANError("intra-FID: no classes to compare")
    missing = [c for c in classes if c not in per_class_b]
    if missing:
        raise TinyGANError(f"intra-FID: classes {missing[:10]} have no reference statistics; "
                           "compute real per-class stats for every evaluated class")
    per = {}
    for c in tqdm(classes, desc=desc, unit="class", disable=not progress):
        per[c] = frechet_distance(per_class_a[c], per_class_b[c])
    return float(np.mean(list(per.values()))), per


# ----------------------------------------------------------------------------------------------
# k-nearest-neighbour manifolds: improved precision/recall, density/coverage


def _features(x, what: str, device) -> torch.Tensor:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise TinyGANError(f"{what}: expected a feature matrix [n, d], got shape {a.shape}")
    check_finite(a, what)
    return torch.from_numpy(a).to(device)


def _distance_blocks(x: torch.Tensor, y: torch.Tensor):
    """(start, Euclidean distances of rows x[start:start+b] to every row of y), in row blocks of at most
    ``BLOCK_ELEMENTS`` entries, so memory stays O(len(y)) whatever len(x) is. float64."""
    xx, yy = (x * x).sum(1), (y * y).sum(1)
    rows = max(1, BLOCK_ELEMENTS // max(1, len(y)))
    for a in range(0, len(x), rows):
        d = x[a:a + rows] @ y.T  # the block's one float64 buffer: every step below is in place
        d.mul_(-2.0).add_(xx[a:a + rows, None]).add_(yy[None, :])
        yield a, d.clamp_(min=0.0).sqrt_()


def knn_radii(x: torch.Tensor, ks: tuple[int, ...]) -> torch.Tensor:
    """[len(ks), n]: the distance of each row of ``x`` to its k-th nearest other row (itself excluded), for each
    k in ``ks``; exact (blocked brute force)."""
    kmax = max(ks)
    if len(x) < kmax + 1:
        raise TinyGANError(f"k-nearest-neighbour radii need more than k={kmax} samples, got {len(x)}")
    out = torch.empty((len(ks), len(x)), dtype=x.dtype, device=x.device)
    for a, d in _distance_blocks(x, x):
        idx = torch.arange(len(d), device=x.device)
        d[idx, a + idx] = float("inf")
        near = torch.topk(d, kmax, dim=1, largest=False).values  # sorted ascending
        for i, k in enumerate(ks):
            out[i, a:a + len(d)] = near[:, k - 1]
    return out


def _balls(real: torch.Tensor, gen: torch.Tensor, real_radii: torch.Tensor, gen_radii: torch.Tensor | None):
    """One blocked pass over generated-vs-real distances. Returns: per real-radii row, for each generated sample
    the number of real balls B(r, radius_r) holding it [len(real_radii), M]; for each real sample whether some
    generated ball B(g, radius_g) holds it [N] (None without ``gen_radii``); each real sample's distance to its
    nearest generated sample [N]. Balls are closed (distance <= radius)."""
    counts = torch.zeros((len(real_radii), len(gen)), dtype=torch.int64, device=real.device)
    covered = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    nearest = torch.full((len(real),), float("inf"), dtype=real.dtype, device=real.device)
    for a, d in _distance_blocks(gen, real):  # d [b, N]
        for i, radii in enumerate(real_radii):
            counts[i, a:a + len(d)] = (d <= radii[None, :]).sum(1)
        if gen_radii is not None:
            covered |= (d <= gen_radii[a:a + len(d), None]).any(0)
        nearest = torch.minimum(nearest, d.min(0).values)
    return counts, (covered if gen_radii is not None else None), nearest


def prdc(feats_real, feats_gen, pr_k: int = PR_K, dc_k: int = DC_K, device="cpu") -> dict[str, float]:
    """precision, recall, density, coverage of one pair of feature sets, sharing the distance computations.

    Real manifold: the union of the balls around each real sample with radius its k-th nearest real neighbour
    distance (itself excluded); generated manifold likewise. With N real, M generated samples:
      precision = share of generated samples inside the real manifold (k = ``pr_k``),
      recall    = share of real samples inside the generated manifold (k = ``pr_k``)   [Kynkäänniemi et al.];
      density   = (1 / (k M)) sum_j #{real balls holding generated j}                    (k = ``dc_k``),
      coverage  = share of real samples whose ball holds at least one generated sample (k = ``dc_k``)
                                                                                        [Naeem et al.].
    Balls are closed (<=), as StyleGAN2-ADA's precision/recall. Exact distances in float64 on ``device``,
    formed in row blocks (``BLOCK_ELEMENTS``): memory O(N + M), time O((N + M)^2 d).
    """
    real = _features(feats_real, "precision/recall real features", device)
    gen = _features(feats_gen, "precision/recall generated features", device)
    if real.shape[1] != gen.shape[1]:
        raise TinyGANError(f"precision/recall: feature widths differ ({real.shape[1]} vs {gen.shape[1]}): both "
                           "sets must come from the same extractor")
    real_radii = knn_radii(real, (pr_k, dc_k))
    gen_radii = knn_radii(gen, (pr_k,))[0]
    counts, covered, nearest = _balls(real, gen, real_radii, gen_radii)
    return {"precision": float((counts[0] > 0).double().mean()), "recall": float(covered.double().mean()),
            "density": float(counts[1].double().mean()) / dc_k,
            "coverage": float((nearest <= real_radii[1]).double().mean())}


def precision_recall(feats_real, feats_gen, k: int = PR_K, device="cpu") -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN radius ``k``; see ``prdc``."""
    m = prdc(feats_real, feats_gen, pr_k=k, dc_k=k, device=device)
    return m["precision"], m["recall"]


def density_coverage(feats_real, feats_gen, k: int = DC_K, device="cpu") -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020) with k-NN radius ``k``; see ``prdc``."""
    m = prdc(feats_real, feats_gen, pr_k=k, dc_k=k, device=device)
    return m["density"], m["coverage"]
