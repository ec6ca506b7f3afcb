"""Paired two-level bootstrap and the run cache."""

import json

import numpy as np
import pytest

from luminet_det.study.bootstrap import (
    accuracy_replicates,
    draw_resamples,
    paired_difference,
    seed_mean_replicates,
)
from luminet_det.study.run_cache import RunCache, config_hash


def test_draws_are_seeded_and_shaped():
    a = draw_resamples(7, 5, 100, seed=0)
    b = draw_resamples(7, 5, 100, seed=0)
    assert a.item_counts.shape == (100, 7) and a.seed_index.shape == (100, 5)
    assert (a.item_counts.sum(axis=1) == 7).all()
    assert a.seed_index.min() >= 0 and a.seed_index.max() < 5
    np.testing.assert_array_equal(a.item_counts, b.item_counts)
    assert not np.array_equal(a.item_counts, draw_resamples(7, 5, 100, seed=1).item_counts)
    with pytest.raises(ValueError, match="num_items"):
        draw_resamples(0, 5, 10, seed=0)


def test_identical_methods_differ_by_exactly_zero():
    draws = draw_resamples(50, 5, 300, seed=0)
    rng = np.random.default_rng(0)
    correct = rng.random((5, 50)) < 0.7
    reps = np.stack([accuracy_replicates(c, draws.item_counts) for c in correct])
    full = 100.0 * correct.mean(axis=1)
    d = paired_difference("a", "b", full, full, reps, reps, draws, 0.95)
    assert (d.estimate, d.low, d.high, d.seed_wins) == (0.0, 0.0, 0.0, 0)
    assert not d.resolved


def test_a_constant_shift_is_recovered_and_resolved():
    draws = draw_resamples(40, 5, 300, seed=1)
    rng = np.random.default_rng(1)
    base = rng.normal(50.0, 2.0, size=(5, 300))
    d = paired_difference("a", "b", base[:, 0] + 1.5, base[:, 0], base + 1.5, base, draws, 0.95)
    assert d.estimate == pytest.approx(1.5)
    assert d.low == pytest.approx(1.5) and d.high == pytest.approx(1.5)
    assert d.resolved and d.seed_wins == 5


def test_noisy_difference_interval_covers_the_truth_and_pairs_the_seeds():
    # Seed effects shared by both methods cancel in the paired difference.
    draws = draw_resamples(200, 5, 1000, seed=2)
    rng = np.random.default_rng(2)
    items = rng.random((5, 200))
    seed_effect = np.array([0.0, 0.1, -0.1, 0.05, -0.05])[:, None]
    a_correct = items < 0.8 + seed_effect
    b_correct = items < 0.75 + seed_effect
    rep = {k: np.stack([accuracy_replicates(c, draws.item_counts) for c in v])
           for k, v in (("a", a_correct), ("b", b_correct))}  # fmt: skip
    full = {"a": 100 * a_correct.mean(1), "b": 100 * b_correct.mean(1)}
    d = paired_difference("a", "b", full["a"], full["b"], rep["a"], rep["b"], draws, 0.95)
    assert d.low < 5.0 < d.high
    assert d.low > 0 and d.seed_wins == 5


def test_seed_means_and_accuracy():
    per_seed = np.array([[1.0, 2.0], [3.0, 4.0]])  # (S=2, B=2)
    idx = np.array([[0, 0], [1, 0]])
    np.testing.assert_allclose(seed_mean_replicates(per_seed, idx), [1.0, 3.0])
    with pytest.raises(ValueError, match="seed draws"):
        seed_mean_replicates(per_seed, idx[:1])
    acc = accuracy_replicates(
        np.array([True, False, True, True]), np.array([[1, 1, 1, 1], [0, 2, 0, 2]])
    )
    np.testing.assert_allclose(acc, [75.0, 50.0])


def test_run_cache_round_trip_is_atomic(tmp_path):
    cache = RunCache(tmp_path / "cache")
    key = config_hash({"b": 1, "a": [1, 2]})
    assert key == config_hash({"a": [1, 2], "b": 1}) and len(key) == 16
    assert cache.load("runs", key) is None
    record = cache.store("runs", key, {"metrics": {"AP": 1.5}}, {"x": np.arange(3)})
    assert record["key"] == key
    assert cache.load("runs", key) == {"key": key, "metrics": {"AP": 1.5}}
    np.testing.assert_array_equal(cache.load_arrays("runs", key)["x"], np.arange(3))
    files = sorted(p.name for p in (tmp_path / "cache" / "runs").iterdir())
    assert files == [f"{key}.json", f"{key}.npz"]
    json.loads((tmp_path / "cache" / "runs" / f"{key}.json").read_text())
