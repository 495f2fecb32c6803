"""vidgen.metrics.frechet and vidgen.metrics.stats_cache: statistics, the distance, and the on-disk cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from vidgen.metrics.frechet import FeatureAccumulator, FeatureStats, frechet_distance
from vidgen.metrics.stats_cache import StatsCache, canonical_json


def _features(seed: int, n: int = 200, dim: int = 16, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    return rng.normal(size=(n, dim)) @ mixing + shift


def _reference_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Independent reference: numpy's (unbiased) covariance and scipy's sqrtm, written out directly."""
    mu_x, mu_y = x.mean(axis=0), y.mean(axis=0)
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = np.real(scipy.linalg.sqrtm(cov_x.dot(cov_y)))
    return float(np.sum((mu_x - mu_y) ** 2) + np.trace(cov_x) + np.trace(cov_y) - 2 * np.trace(root))


def test_distance_matches_independent_scipy_reference() -> None:
    x, y = _features(0), _features(1, shift=0.3)
    ours = frechet_distance(
        FeatureStats.from_features(x, unbiased=True), FeatureStats.from_features(y, unbiased=True)
    )
    assert ours == pytest.approx(_reference_distance(x, y), rel=1e-9)
    assert ours > 0.5


def test_identical_sets_give_zero() -> None:
    x = _features(2)
    stats = FeatureStats.from_features(x)
    distance = frechet_distance(stats, stats)
    assert abs(distance) < 1e-6 * np.trace(stats.sigma)


def test_mean_shift_with_equal_covariances_is_squared_norm() -> None:
    x = _features(3)
    shift = np.linspace(-1.0, 2.0, x.shape[1])
    a, b = FeatureStats.from_features(x), FeatureStats.from_features(x + shift)
    np.testing.assert_allclose(a.sigma, b.sigma, rtol=1e-10, atol=1e-12)
    assert frechet_distance(a, b) == pytest.approx(float(shift @ shift), rel=1e-7)


def test_biased_and_unbiased_covariance_differ_by_n_over_n_minus_1() -> None:
    x = _features(4, n=50)
    biased, unbiased = FeatureStats.from_features(x), FeatureStats.from_features(x, unbiased=True)
    np.testing.assert_allclose(unbiased.sigma, biased.sigma * 50 / 49, rtol=1e-12)
    np.testing.assert_allclose(unbiased.sigma, np.cov(x, rowvar=False), rtol=1e-10)
    np.testing.assert_array_equal(biased.mu, unbiased.mu)
    assert biased.n == 50


def test_statistics_are_float64_even_from_float32_tensors() -> None:
    x = torch.from_numpy(_features(5)).float()
    stats = FeatureStats.from_features(x)
    assert stats.mu.dtype == np.float64 and stats.sigma.dtype == np.float64
    assert stats.mu.shape == (16,) and stats.sigma.shape == (16, 16)
    accumulator = FeatureAccumulator(16)
    accumulator.update(x)
    assert accumulator.sum.dtype == np.float64 and accumulator.stats().sigma.dtype == np.float64


@pytest.mark.parametrize("n", [0, 1])
def test_fewer_than_two_vectors_are_refused(n: int) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        FeatureStats.from_features(np.zeros((n, 4)))
    accumulator = FeatureAccumulator(4)
    if n:
        accumulator.update(np.zeros((n, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        accumulator.stats()


def test_accumulator_equals_statistics_of_the_concatenation() -> None:
    parts = [_features(6, n=7), _features(7, n=30, shift=5.0), _features(8, n=1)]
    accumulator = FeatureAccumulator(16)
    for part in parts:
        accumulator.update(part)
    whole = np.concatenate(parts)
    for unbiased in (False, True):
        expected, got = (
            FeatureStats.from_features(whole, unbiased=unbiased),
            accumulator.stats(unbiased=unbiased),
        )
        assert got.n == expected.n == 38
        np.testing.assert_allclose(got.mu, expected.mu, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got.sigma, expected.sigma, rtol=1e-9, atol=1e-10)


def test_accumulator_state_round_trip_and_checks() -> None:
    accumulator = FeatureAccumulator(16)
    accumulator.update(_features(9))
    restored = FeatureAccumulator.from_state(accumulator.state())
    assert restored.num == 200
    np.testing.assert_array_equal(restored.stats().sigma, accumulator.stats().sigma)
    with pytest.raises(ValueError, match="lacks"):
        FeatureAccumulator.from_state({"sum": np.zeros(3)})
    with pytest.raises(ValueError, match="inconsistent"):
        FeatureAccumulator.from_state({"num": np.int64(3), "sum": np.zeros(3), "sum_outer": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="16-d"):
        accumulator.update(np.zeros((2, 15)))


def test_dimension_mismatch_and_bad_features_are_refused() -> None:
    a, b = FeatureStats.from_features(_features(10, dim=4)), FeatureStats.from_features(_features(11, dim=5))
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(a, b)
    with pytest.raises(ValueError, match="2-D"):
        FeatureStats.from_features(np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        FeatureStats.from_features(np.full((3, 2), np.nan))


# ------------------------------------------------------------------------------------------ stats cache

DATASET = {
    "name": "ucf101",
    "root": "/data/ucf101",
    "split": "train",
    "frames": 16,
    "stride": 1,
    "resolution": 128,
    "num_clips": 2048,
}
METRIC = {
    "metric": "fvd",
    "num_real": 2048,
    "num_frames": 16,
    "detector": "torchscript",
    "weights": {"file": "i3d_torchscript.pt", "sha256": "ab" * 32},
}


def test_cache_round_trip_with_sidecar(tmp_path: Path) -> None:
    cache = StatsCache(tmp_path / "stats")
    path = cache.path_for(DATASET, METRIC)
    assert path.parent == tmp_path / "stats" and path.suffix == ".npz"
    assert path.name.startswith("ucf101-fvd-")
    assert cache.load(path) is None
    accumulator = FeatureAccumulator(8)
    accumulator.update(_features(12, dim=8))
    cache.save(path, accumulator.state())
    loaded = cache.load(path)
    assert loaded is not None and set(loaded) == {"num", "sum", "sum_outer"}
    restored = FeatureAccumulator.from_state(loaded)
    np.testing.assert_array_equal(restored.stats().sigma, accumulator.stats().sigma)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["dataset"] == DATASET and sidecar["metric"] == METRIC
    assert sidecar["arrays"]["sum_outer"] == {"shape": [8, 8], "dtype": "float64"}
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        [path.name, path.with_suffix(".json").name]
    )


def test_cache_paths_are_stable_and_key_sensitive(tmp_path: Path) -> None:
    cache = StatsCache(tmp_path)
    path = cache.path_for(DATASET, METRIC)
    assert StatsCache(tmp_path).path_for(dict(reversed(DATASET.items())), METRIC) == path  # order-free
    changed_metric = [
        {**METRIC, "num_frames": 10},
        {**METRIC, "detector": "pytorch"},
        {**METRIC, "weights": {"file": "i3d_torchscript.pt", "sha256": "cd" * 32}},
    ]
    changed_data = [{**DATASET, "stride": 2}, {**DATASET, "split": "test"}, {**DATASET, "num_clips": 1024}]
    paths = {cache.path_for(DATASET, m) for m in changed_metric} | {
        cache.path_for(d, METRIC) for d in changed_data
    }
    assert path not in paths and len(paths) == 6
    assert canonical_json({"b": (1, 2), "a": Path("/x")}) == '{"a":"/x","b":[1,2]}'
    with pytest.raises(TypeError, match="cannot hash"):
        cache.path_for({**DATASET, "bad": object()}, METRIC)


def test_cache_ignores_a_corrupt_entry(tmp_path: Path) -> None:
    cache = StatsCache(tmp_path)
    path = cache.path_for(DATASET, METRIC)
    path.write_bytes(b"not a zip")
    with pytest.warns(UserWarning, match="unreadable"):
        assert cache.load(path) is None
