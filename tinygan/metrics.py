"""GAN metrics on extracted features: Inception Score, intra-FID, KID (StyleGAN2-ADA definitions).

FID itself is ``tinygan.frechet.frechet_distance`` on two feature sets' statistics."""
from __future__ import annotations

from typing import Mapping

import numpy as np
from tqdm import tqdm

from tinygan.errors import TinyGANError
from tinygan.frechet import Stats, frechet_distance


def inception_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """IS = exp(E_x KL(p(y|x) || p(y))), per split, as StyleGAN2-ADA: returns (mean, std) over splits.

    ``probs`` [N, K] are class probabilities (rows sum to 1). Split i is rows
    [i*N//splits, (i+1)*N//splits). Terms with p = 0 count as 0 (0 log 0 = 0), which is the limit
    StyleGAN2-ADA's formula takes whenever its softmax does not underflow.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) < splits or splits < 1:
        raise TinyGANError(f"inception score needs probs [N, K] with N >= splits={splits}, got {p.shape}")
    n = len(p)
    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        marginal = part.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0)
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def kid(feats_real: np.ndarray, feats_gen: np.ndarray, num_subsets: int = 100,
        max_subset_size: int = 1000, seed: int = 0) -> float:
    """Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel (x.y/d + 1)^3.

    As StyleGAN2-ADA: m = min(n_real, n_gen, max_subset_size); each of ``num_subsets`` rounds draws m
    generated and m real rows without replacement (generated first, from
    ``np.random.default_rng(seed)``) and averages. Computed in float64. Feed it raw features or a
    ``Stats.reservoir`` (a uniform sample; KID only ever looks at ``max_subset_size`` rows at once).
    """
    x_all = np.asarray(feats_gen, dtype=np.float64)
    y_all = np.asarray(feats_real, dtype=np.float64)
    if x_all.ndim != 2 or y_all.ndim != 2 or x_all.shape[1] != y_all.shape[1]:
        raise TinyGANError(f"KID needs two feature matrices with the same width, got {y_all.shape} "
                           f"and {x_all.shape}")
    d = x_all.shape[1]
    m = min(len(x_all), len(y_all), max_subset_size)
    if m < 2:
        raise TinyGANError(f"KID needs at least 2 samples per set, got {len(y_all)} real, {len(x_all)} generated")
    rng = np.random.default_rng(seed)
    t = 0.0
    for _ in range(num_subsets):
        x = x_all[rng.choice(len(x_all), m, replace=False)]
        y = y_all[rng.choice(len(y_all), m, replace=False)]
        a = (x @ x.T / d + 1) ** 3 + (y @ y.T / d + 1) ** 3
        b = (x @ y.T / d + 1) ** 3
        t += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return float(t / num_subsets / m)


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
