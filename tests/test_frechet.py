"""Fast exact Fréchet distance vs the scipy-sqrtm oracle; streaming stats; persistence."""
import numpy as np
import pytest

from tinygan.errors import TinyGANError
from tinygan.frechet import (ClassStats, ClassStatsWriter, Stats, StatsAccumulator, frechet_distance, frechet_scipy,
                             trace_sqrt_product)

D = 24


def _features(n, seed, shift=0.0, scale=1.0, d=D):
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) * 0.4
    return (rng.standard_normal((n, d)) @ mix * scale + shift + rng.random(d)).astype(np.float32)


def _oracle(x, y):
    x, y = x.astype(np.float64), y.astype(np.float64)
    return frechet_scipy(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))


@pytest.mark.parametrize("n1,n2", [(10, 15), (D, D), (60, 90), (10, 90), (90, 10), (D + 1, 12)])
def test_fast_matches_scipy(n1, n2):
    x, y = _features(n1, 1), _features(n2, 2, shift=0.3, scale=1.4)
    a, b = Stats.from_features(x), Stats.from_features(y)
    assert a.low_rank == (n1 <= D) and b.low_rank == (n2 <= D)
    ref = _oracle(x, y)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)
    assert frechet_distance(b, a) == pytest.approx(ref, rel=1e-6)


def test_all_paths_agree_on_the_same_data():
    """Low-rank and full representations of the same sets give the same distance."""
    x, y = _features(12, 3), _features(20, 4, shift=-0.5)
    lr_a, lr_b = Stats.from_features(x), Stats.from_features(y)
    full_a = Stats.from_moments(lr_a.mean, lr_a.cov(), lr_a.n)
    full_b = Stats.from_moments(lr_b.mean, lr_b.cov(), lr_b.n)
    ref = frechet_distance(lr_a, lr_b)
    for a, b in [(lr_a, full_b), (full_a, lr_b), (full_a, full_b)]:
        assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)


def test_singular_full_covariance_uses_eigh_fallback():
    """A full-form covariance of rank < d (Cholesky fails) still gives the exact answer."""
    x, y = _features(10, 5), _features(40, 6, shift=1.0)
    a = Stats.from_features(x)
    a_full = Stats.from_moments(a.mean, a.cov(), a.n)  # rank 9 < D
    b = Stats.from_features(y)
    assert frechet_distance(a_full, b) == pytest.approx(_oracle(x, y), rel=1e-6)


@pytest.mark.parametrize("n", [8, 80])
def test_fid_of_a_set_with_itself_is_zero(n):
    s = Stats.from_features(_features(n, 7))
    assert abs(frechet_distance(s, s)) < 1e-6
    assert trace_sqrt_product(s, s) == pytest.approx(s.trace_cov(), rel=1e-9)


@pytest.mark.parametrize("batch", [1, 7, D, 50])
def test_streaming_equals_batch_numpy_across_the_switch(batch):
    x = _features(3 * D + 5, 8) + 100.0  # a large offset would expose cancellation
    acc = StatsAccumulator(D)
    seen_low_rank = False
    for i in range(0, len(x), batch):
        acc.update(x[i:i + batch])
        seen_low_rank |= acc.finalize().low_rank
    s = acc.finalize()
    assert not s.low_rank and s.n == len(x) and s.m2 is not None and s.feats is None
    assert seen_low_rank == (batch <= D)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(s.mean, x64.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.cov(), np.cov(x64, rowvar=False), rtol=1e-9, atol=1e-9)


def test_low_rank_keeps_features_exactly():
    x = _features(D, 9)
    s = Stats.from_features(x)
    assert s.low_rank and s.feats.dtype == np.float32
    np.testing.assert_array_equal(s.feats, x)
    np.testing.assert_allclose(s.cov(), np.cov(x.astype(np.float64), rowvar=False), rtol=1e-10, atol=1e-12)


def test_torch_input_and_shape_checks():
    torch = pytest.importorskip("torch")
    acc = StatsAccumulator(D)
    acc.update(torch.from_numpy(_features(5, 10)))
    assert acc.n == 5
    with pytest.raises(ValueError):
        acc.update(np.zeros((3, D + 1), np.float32))
    with pytest.raises(TinyGANError):
        acc.update(np.full((2, D), np.nan, np.float32))


def test_errors_are_one_line_tinygan_errors():
    with pytest.raises(TinyGANError):
        StatsAccumulator(D).finalize()
    one = Stats.from_features(_features(1, 11))
    with pytest.raises(TinyGANError):
        frechet_distance(one, one)
    with pytest.raises(TinyGANError):
        frechet_distance(Stats.from_features(_features(5, 1)), Stats.from_features(_features(5, 1, d=D + 1)))


@pytest.mark.parametrize("n", [10, 60])
def test_save_load_roundtrip_is_exact_and_deterministic(tmp_path, n):
    acc = StatsAccumulator(D, reservoir=6, seed=3)
    acc.update(_features(n, 12))
    s = acc.finalize()
    s.save(tmp_path / "a.npz")
    s.save(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    t = Stats.load(tmp_path / "a.npz")
    assert t.n == s.n and t.low_rank == s.low_rank
    np.testing.assert_array_equal(t.mean, s.mean)
    np.testing.assert_array_equal(t.reservoir, s.reservoir)
    np.testing.assert_array_equal(t.cov(), s.cov())
    assert frechet_distance(t, s) == pytest.approx(0.0, abs=1e-6)


def test_load_missing_or_corrupt_file(tmp_path):
    with pytest.raises(TinyGANError, match="not found"):
        Stats.load(tmp_path / "nope.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(TinyGANError, match="recompute"):
        Stats.load(tmp_path / "bad.npz")


@pytest.mark.parametrize("field,n", [("mean", 10), ("feats", 10), ("m2", 60), ("reservoir", 60)])
def test_nan_in_loaded_statistics_is_a_one_line_error_naming_file_and_array(tmp_path, field, n):
    acc = StatsAccumulator(D, reservoir=5, seed=0)
    acc.update(_features(n, 1))
    s = acc.finalize()
    arrays = s.arrays()
    bad = np.array(arrays[field], dtype=arrays[field].dtype)
    bad.flat[3] = np.nan if field != "reservoir" else np.inf
    from tinygan.frechet import save_npz

    save_npz(tmp_path / "class_0001.npz", {**arrays, field: bad})
    with pytest.raises(TinyGANError, match=rf"feature statistics .*class_0001.npz: {field}: 1 NaN/inf") as e:
        Stats.load(tmp_path / "class_0001.npz")
    assert "\n" not in str(e.value)


def test_nan_reaching_frechet_distance_is_an_error_not_a_nan():
    good = Stats.from_features(_features(30, 1))
    bad = Stats.from_features(_features(30, 2))
    bad.mean = bad.mean.copy()
    bad.mean[0] = np.nan
    for a, b, which in ((good, bad, "second"), (bad, good, "first")):
        with pytest.raises(TinyGANError, match=f"FID statistics \\({which} set\\): mean: 1 NaN/inf"):
            frechet_distance(a, b)
    cov = np.eye(D)
    cov[2, 2] = np.inf
    with pytest.raises(TinyGANError, match="given mean/covariance: m2: 1 NaN/inf"):
        Stats.from_moments(np.zeros(D), cov, 10)


def test_reservoir_is_bounded_seeded_and_drawn_from_the_input():
    x = _features(200, 13)
    x[:, 0] = np.arange(200)  # row id in column 0

    def run(seed):
        acc = StatsAccumulator(D, reservoir=20, seed=seed)
        for i in range(0, 200, 9):
            acc.update(x[i:i + 9])
        return acc.finalize().reservoir

    r = run(0)
    assert r.shape == (20, D)
    ids = r[:, 0].astype(int)
    assert len(set(ids)) == 20
    np.testing.assert_array_equal(r, x[ids])
    assert ids.max() >= 100  # later rows get in, not just the first 20
    np.testing.assert_array_equal(run(0), r)
    assert not np.array_equal(run(1), r)


def test_class_stats_roundtrip_lazy(tmp_path):
    per = {c: Stats.from_features(_features(8 + 30 * c, c)) for c in range(3)}
    cs = ClassStats(per, overall=Stats.from_features(_features(100, 99)))
    (tmp_path / "cs").mkdir()
    (tmp_path / "cs" / "class_0042.npz").write_bytes(b"stale")
    cs.save(tmp_path / "cs")
    assert not (tmp_path / "cs" / "class_0042.npz").exists()
    loaded = ClassStats.load(tmp_path / "cs")
    assert loaded.classes == [0, 1, 2] and 1 in loaded and 5 not in loaded
    for c in range(3):
        np.testing.assert_array_equal(loaded[c].cov(), per[c].cov())
    assert loaded.overall.n == 100
    with pytest.raises(TinyGANError, match="index.json"):
        ClassStats.load(tmp_path / "missing")


def test_class_stats_writer_makes_the_directory_complete_only_at_close(tmp_path):
    # reference_stats writes one class at a time: until close, the directory has no index (ClassStats.load refuses)
    s = Stats.from_features(_features(10, 0))
    ClassStats({1: s, 2: s}, overall=s).save(tmp_path / "cs")  # an earlier, complete directory
    writer = ClassStatsWriter(tmp_path / "cs")
    writer.add(2, Stats.from_features(_features(12, 1)))
    with pytest.raises(TinyGANError, match="index.json"):
        ClassStats.load(tmp_path / "cs")
    writer.close(Stats.from_features(_features(30, 2)))
    loaded = ClassStats.load(tmp_path / "cs")
    assert loaded.classes == [2] and loaded[2].n == 12 and loaded.overall.n == 30
    assert not (tmp_path / "cs" / "class_0001.npz").exists()  # a class of the earlier run is not left behind
