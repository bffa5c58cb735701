"""Inception Score, KID and intra-FID on constructed inputs (FID itself: test_frechet.py)."""
import numpy as np
import pytest
import torch

from tinygan.errors import TinyGANError
from tinygan.frechet import ClassStats, Stats, frechet_distance
from tinygan import metrics
from tinygan.metrics import (density_coverage, inception_score, intra_fid, is_split_assignment, kid, kid_subsets,
                             knn_radii, prdc, precision_recall)


def test_is_of_uniform_predictions_is_one():
    mean, std = inception_score(np.full((100, 7), 1 / 7), splits=10)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)


def test_is_of_balanced_one_hot_is_k():
    k = 5
    probs = np.tile(np.eye(k), (20, 1))  # every contiguous split of 10 rows holds each class twice
    mean, std = inception_score(probs, splits=10, seed=None)
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
    assert inception_score(p, splits=3, seed=None) == pytest.approx((np.mean(scores), np.std(scores)))
    # seeded: the same formula on the rows shuffled by the seeded permutation
    perm = np.random.default_rng(7).permutation(60)
    shuffled = np.empty_like(p)
    shuffled[perm] = p  # row r goes to position perm[r]; contiguous splits of that are is_split_assignment's
    assert inception_score(p, splits=3, seed=7) == pytest.approx(inception_score(shuffled, splits=3, seed=None))


def test_is_split_assignment_keeps_the_split_sizes_and_is_seeded():
    contiguous = is_split_assignment(103, 10, None)
    assert list(contiguous) == sorted(contiguous)  # blocks [i*103//10, (i+1)*103//10)
    assert np.bincount(contiguous).tolist() == [10, 10, 10, 11, 10, 10, 11, 10, 10, 11]
    a, b = is_split_assignment(103, 10, 3), is_split_assignment(103, 10, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, contiguous)
    assert not np.array_equal(a, is_split_assignment(103, 10, 4))
    assert np.array_equal(np.bincount(a), np.bincount(contiguous))


def test_is_of_class_sorted_input_does_not_collapse():
    # 10 classes, 1,000 one-hot rows each, sorted by class: contiguous splits see one class each (IS 1)
    k, per = 10, 1000
    probs = np.repeat(np.eye(k), per, axis=0)
    assert inception_score(probs, splits=10, seed=None)[0] == pytest.approx(1.0)
    sorted_is = inception_score(probs, splits=10, seed=0)[0]
    shuffled_is = inception_score(np.random.default_rng(1).permutation(probs), splits=10, seed=0)[0]
    assert sorted_is == pytest.approx(shuffled_is, rel=0.01)
    assert 9.5 < sorted_is <= 10.0


def test_is_rejects_too_few_samples():
    with pytest.raises(TinyGANError):
        inception_score(np.full((5, 3), 1 / 3), splits=10)


def _nan_at(x, i=0):
    x = np.array(x, dtype=np.float64)
    x.flat[i] = np.nan
    return x


def test_is_rejects_nan_and_inf():
    p = np.full((20, 4), 0.25)
    for bad in (_nan_at(p, 5), np.where(np.arange(80).reshape(20, 4) == 3, np.inf, p)):
        with pytest.raises(TinyGANError, match="Inception Score class probabilities: 1 NaN/inf") as e:
            inception_score(bad, splits=2)
        assert "\n" not in str(e.value)


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


def test_kid_std_is_the_spread_of_the_per_subset_estimates():
    real, gen = _feats(6, 4, d=2), _feats(5, 5, shift=0.3, d=2)
    rng, m, want = np.random.default_rng(1), 4, []
    kern = lambda a, b: (a @ b / 2 + 1) ** 3  # noqa: E731  (x.y/d + 1)^3, d = 2
    for _ in range(3):  # generated first, then real, as StyleGAN2-ADA draws them
        x, y = gen[rng.choice(5, m, replace=False)], real[rng.choice(6, m, replace=False)]
        xx = sum(kern(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        yy = sum(kern(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        xy = sum(kern(x[i], y[j]) for i in range(m) for j in range(m)) / m ** 2
        want.append(xx + yy - 2 * xy)  # unbiased MMD^2 of the subset
    got = kid_subsets(real, gen, num_subsets=3, max_subset_size=m, seed=1)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert kid(real, gen, num_subsets=3, max_subset_size=m, seed=1) == pytest.approx(np.mean(want), rel=1e-10)
    assert got.std() == pytest.approx(np.std(want), rel=1e-9) and got.std() > 0


@pytest.mark.parametrize("sizes", [(40, 50, 30, 30, True), (70, 90, 20, 20, False), (45, 20, 20, 60, True)])
def test_kid_all_rows_path_equals_per_subset_kernels(sizes, monkeypatch):
    """KID's kernel sums read from the kernel of all pool rows equal those of the three m x m kernel matrices per
    subset, to float64 rounding; kid_subsets forms all rows at once only for sets of at most ALL_ROWS_FACTOR x
    max_subset_size rows, when that is cheaper (here: sets close to m)."""
    n_real, n_gen, m, max_subset, all_rows = sizes
    taken, all_rows_kid = [], metrics._kid_all_rows
    monkeypatch.setattr(metrics, "_kid_all_rows", lambda *a: taken.append(1) or all_rows_kid(*a))
    real, gen = np.abs(_feats(n_real, 6, d=24)) * 0.3, np.abs(_feats(n_gen, 7, shift=0.1, d=24)) * 0.3
    rng = np.random.default_rng(2)
    picks = [(rng.choice(n_gen, m, replace=False), rng.choice(n_real, m, replace=False)) for _ in range(7)]
    per_subset = metrics._kid_per_subset(gen, real, picks, m)
    np.testing.assert_allclose(all_rows_kid(gen, real, picks, m), per_subset, rtol=1e-9, atol=1e-13)
    got = kid_subsets(real, gen, num_subsets=7, max_subset_size=max_subset, seed=2)
    np.testing.assert_allclose(got, per_subset, rtol=1e-9, atol=1e-13)
    assert bool(taken) == all_rows


@pytest.mark.parametrize("which", ["real", "generated"])
def test_kid_rejects_nan_features(which):
    real, gen = _feats(20, 0), _feats(20, 1)
    real, gen = (_nan_at(real, 7), gen) if which == "real" else (real, _nan_at(gen, 7))
    with pytest.raises(TinyGANError, match=f"KID {which} features: 1 NaN/inf"):
        kid(real, gen, num_subsets=2, max_subset_size=10)


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


# ---- k-NN manifolds: precision / recall, density / coverage -------------------------------------------------

REAL_1D = [[0.0], [1.0], [3.0], [7.0]]   # 1st-NN radii 1, 1, 2, 4: balls [-1,1] [0,2] [1,5] [3,11]
GEN_1D = [[0.5], [2.5], [12.0], [20.0]]  # 1st-NN radii 2, 2, 8, 8: balls [-1.5,2.5] [0.5,4.5] [4,20] [12,28]


def test_knn_radii_exclude_self_but_not_duplicates():
    x = torch.tensor([[0.0], [0.0], [5.0], [9.0]], dtype=torch.float64)
    r = knn_radii(x, (1, 2))
    assert r.tolist() == [[0.0, 0.0, 4.0, 4.0], [5.0, 5.0, 5.0, 9.0]]


def test_precision_recall_by_hand_1d():
    # precision: 0.5 and 2.5 lie in real balls, 12 and 20 beyond 11: 2/4; recall: 0, 1 in [-1.5,2.5], 3 in
    # [0.5,4.5], 7 in [4,20]: 4/4
    assert precision_recall(REAL_1D, GEN_1D, k=1) == (0.5, 1.0)
    assert precision_recall(GEN_1D, REAL_1D, k=1) == (1.0, 0.5)  # the roles swap


def test_density_coverage_by_hand_1d():
    # density: 0.5 lies in 2 real balls, 2.5 in 1, 12 and 20 in none: 3 / (k M) = 3/4; coverage: the nearest
    # generated sample of 0 (0.5), 1 (0.5), 3 (2.5) is inside their radius, 7's (2.5 or 12, distance 4.5, 5)
    # is not (radius 4): 3/4
    assert density_coverage(REAL_1D, GEN_1D, k=1) == (0.75, 0.75)


def test_balls_are_closed_2d():
    # unit square corners: 3rd-NN radius sqrt 2 each. (0.5, 0.5) is inside; (2, 2) is exactly sqrt 2 from (1, 1):
    # on the boundary, counted (closed balls, as StyleGAN2-ADA); (3, 3) and (5, 5) are outside
    real = [[0, 0], [1, 0], [0, 1], [1, 1]]
    gen = [[0.5, 0.5], [2, 2], [3, 3], [5, 5]]
    precision, recall = precision_recall(real, gen, k=3)
    assert precision == 0.5 and recall == 1.0  # (0.5, 0.5)'s 3rd-NN radius 4.5 sqrt 2 holds every corner
    density, coverage = density_coverage(real, gen, k=3)
    # (0.5, 0.5) lies in all 4 corner balls, (2, 2) in (1, 1)'s only: 5 / (3 * 4)
    assert density == pytest.approx(5 / 12) and coverage == 1.0


def _naive_prdc(real, gen, pr_k, dc_k):
    d_rr = np.linalg.norm(real[:, None] - real[None], axis=2)
    d_gg = np.linalg.norm(gen[:, None] - gen[None], axis=2)
    d_rg = np.linalg.norm(real[:, None] - gen[None], axis=2)  # [N, M]
    np.fill_diagonal(d_rr, np.inf)
    np.fill_diagonal(d_gg, np.inf)
    r_pr, r_dc = np.sort(d_rr, 1)[:, pr_k - 1], np.sort(d_rr, 1)[:, dc_k - 1]
    g_pr = np.sort(d_gg, 1)[:, pr_k - 1]
    return {"precision": (d_rg <= r_pr[:, None]).any(0).mean(), "recall": (d_rg <= g_pr[None]).any(1).mean(),
            "density": (d_rg <= r_dc[:, None]).sum(0).mean() / dc_k,
            "coverage": (d_rg.min(1) <= r_dc).mean()}


def test_prdc_matches_a_naive_implementation_in_small_blocks(monkeypatch):
    rng = np.random.default_rng(0)
    real, gen = rng.standard_normal((57, 5)), rng.standard_normal((43, 5)) * 1.3 + 0.4
    want = _naive_prdc(real, gen, 3, 5)
    assert prdc(real, gen) == pytest.approx(want, rel=1e-12)
    monkeypatch.setattr(metrics, "BLOCK_ELEMENTS", 100)  # blocks of 1-2 rows: the same numbers
    assert prdc(real, gen) == pytest.approx(want, rel=1e-12)
    assert 0 < want["precision"] < 1 and 0 < want["recall"] < 1 and 0 < want["coverage"] < 1


def test_prdc_of_identical_sets_is_perfect():
    x = np.random.default_rng(1).standard_normal((30, 4))
    m = prdc(x, x.copy())
    assert (m["precision"], m["recall"], m["coverage"]) == (1.0, 1.0, 1.0) and m["density"] >= 1.0


@pytest.mark.parametrize("which", ["real", "generated"])
def test_prdc_rejects_nan_and_too_few_samples(which):
    real, gen = _feats(10, 0), _feats(10, 1)
    real, gen = (_nan_at(real, 3), gen) if which == "real" else (real, _nan_at(gen, 3))
    with pytest.raises(TinyGANError, match=f"precision/recall {which} features: 1 NaN/inf"):
        prdc(real, gen)
    with pytest.raises(TinyGANError, match="more than k=5 samples, got 5"):
        prdc(_feats(5, 0), _feats(10, 1))
