"""Inception Score, KID and intra-FID on constructed inputs (FID itself: test_frechet.py)."""
import numpy as np
import pytest

from tinygan.errors import TinyGANError
from tinygan.frechet import ClassStats, Stats, frechet_distance
from tinygan.metrics import inception_score, intra_fid, kid


def test_is_of_uniform_predictions_is_one():
    mean, std = inception_score(np.full((100, 7), 1 / 7), splits=10)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)


def test_is_of_balanced_one_hot_is_k():
    k = 5
    probs = np.tile(np.eye(k), (20, 1))  # every split of 10 rows holds each class twice
    mean, std = inception_score(probs, splits=10)
    assert mean == pytest.approx(k) and std == pytest.approx(0.0, abs=1e-9)


def test_is_matches_the_stylegan2_formula_on_soft_probs():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((60, 9)) * 2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scores = []
    for i in range(3):
        part = p[i * 20:(i + 1) * 20]
        kl = part * (np.log(part) - np.log(part.mean(0, keepdims=True)))
        scores.append(np.exp(kl.sum(1).mean()))
    assert inception_score(p, splits=3) == pytest.approx((np.mean(scores), np.std(scores)))


def test_is_rejects_too_few_samples():
    with pytest.raises(TinyGANError):
        inception_score(np.full((5, 3), 1 / 3), splits=10)


def _feats(n, seed, shift=0.0, d=16):
    return np.random.default_rng(seed).standard_normal((n, d)) + shift


def test_kid_near_zero_for_same_distribution_and_positive_for_shifted():
    same = kid(_feats(300, 0), _feats(300, 1), num_subsets=20, max_subset_size=100, seed=0)
    shifted = kid(_feats(300, 0), _feats(300, 1, shift=0.5), num_subsets=20, max_subset_size=100, seed=0)
    assert abs(same) < 0.02
    assert shifted > 0.1 and shifted > 10 * abs(same)


def test_kid_is_seeded():
    a, b = _feats(80, 2), _feats(90, 3, shift=0.2)
    assert kid(a, b, num_subsets=5, max_subset_size=50, seed=4) == kid(a, b, num_subsets=5, max_subset_size=50, seed=4)
    assert kid(a, b, num_subsets=5, max_subset_size=50, seed=4) != kid(a, b, num_subsets=5, max_subset_size=50, seed=5)


def test_intra_fid_is_the_mean_of_per_class_fids(tmp_path):
    gen = {c: Stats.from_features(_feats(12 + c, 10 + c, shift=0.1 * c)) for c in (3, 7, 9)}
    real = {c: Stats.from_features(_feats(20, 20 + c)) for c in (3, 7, 9, 11)}
    mean, per = intra_fid(gen, real)
    assert sorted(per) == [3, 7, 9]
    for c in per:
        assert per[c] == pytest.approx(frechet_distance(gen[c], real[c]))
    assert mean == pytest.approx(np.mean(list(per.values())))
    ClassStats(real).save(tmp_path / "real")
    mean2, _ = intra_fid(ClassStats(gen), ClassStats.load(tmp_path / "real"))
    assert mean2 == pytest.approx(mean)


def test_intra_fid_takes_classes_in_order_and_asks_for_each_once():
    # the evaluate stage passes statistics measured on access, one class at a time, in the `classes` order
    asked = []

    class Measured(dict):
        def __getitem__(self, c):
            asked.append(c)
            return super().__getitem__(c)

    gen = Measured({c: Stats.from_features(_feats(12, c, shift=0.2)) for c in (9, 3, 7)})
    real = {c: Stats.from_features(_feats(20, 20 + c)) for c in (3, 7, 9)}
    mean, per = intra_fid(gen, real)
    assert asked == [9, 3, 7] and list(per) == [9, 3, 7]
    assert mean == np.mean([frechet_distance(gen[c], real[c]) for c in (9, 3, 7)])


def test_intra_fid_missing_class_is_a_user_error():
    s = Stats.from_features(_feats(10, 0))
    with pytest.raises(TinyGANError, match=r"\[2\]"):
        intra_fid({1: s, 2: s}, {1: s})
