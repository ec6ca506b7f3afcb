"""Paired two-level bootstrap: test items and training seeds, shared by every method.

A method's test score varies with the test images (a different sample of the same scenes would
give another AP) and with the training seed (initial weights and data order). Each bootstrap
replicate redraws both, with replacement, and scores every method on the same draw, so a
difference between two methods is paired by image and by seed. Pure numpy; the per-replicate
scores come from :func:`luminet_det.study.coco_matches.ap_of_weighted_images` (detection) or
from per-item correctness (classification).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "BootstrapDraws",
    "PairedDifference",
    "draw_resamples",
    "seed_mean_replicates",
    "paired_difference",
    "accuracy_replicates",
]


@dataclass(frozen=True)
class BootstrapDraws:
    """The random part of a bootstrap, fixed once and used for every method.

    Attributes:
        item_counts: (B, N) multiplicity of each test item in each replicate (multinomial).
        seed_index: (B, S) indices of the seeds drawn in each replicate.
    """

    item_counts: np.ndarray
    seed_index: np.ndarray


def draw_resamples(num_items: int, num_seeds: int, replicates: int, seed: int) -> BootstrapDraws:
    """Draw ``replicates`` resamples of ``num_items`` test items and ``num_seeds`` seeds.

    Raises:
        ValueError: on a non-positive size.
    """
    if min(num_items, num_seeds, replicates) < 1:
        raise ValueError(
            f"need num_items, num_seeds, replicates >= 1; got {num_items}, {num_seeds}, "
            f"{replicates}"
        )
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(num_items, np.full(num_items, 1.0 / num_items), size=replicates)
    seeds = rng.integers(0, num_seeds, size=(replicates, num_seeds))
    return BootstrapDraws(counts, seeds)


def accuracy_replicates(correct: np.ndarray, item_counts: np.ndarray) -> np.ndarray:
    """Accuracy (percent) of one model on each item resample.

    Args:
        correct: (N,) bool, whether each test item is classified correctly.
        item_counts: (B, N) multiplicities.

    Returns:
        (B,) accuracies.
    """
    c = np.asarray(correct, dtype=np.float64)
    return 100.0 * (item_counts @ c) / item_counts.sum(axis=1)


def seed_mean_replicates(per_seed: np.ndarray, seed_index: np.ndarray) -> np.ndarray:
    """A method's score in each replicate: the mean over the replicate's drawn seeds.

    Args:
        per_seed: (S, B) score of the model of seed s on item resample b.
        seed_index: (B, S) drawn seeds.

    Returns:
        (B,) scores.
    """
    per_seed = np.asarray(per_seed, dtype=np.float64)
    if per_seed.shape[1] != seed_index.shape[0]:
        raise ValueError(f"{per_seed.shape[1]} item resamples but {seed_index.shape[0]} seed draws")
    return np.take_along_axis(per_seed.T, seed_index, axis=1).mean(axis=1)


@dataclass(frozen=True)
class PairedDifference:
    """``a - b`` on the test split with its bootstrap interval.

    Attributes:
        a, b: method names.
        estimate: mean over seeds of a's score minus mean over seeds of b's score (full test).
        low, high: percentile interval of the bootstrap replicates.
        level: its coverage.
        seed_wins: seeds (same initial weights and data order) where a scored above b.
        num_seeds: seeds compared.
    """

    a: str
    b: str
    estimate: float
    low: float
    high: float
    level: float
    seed_wins: int
    num_seeds: int

    @property
    def resolved(self) -> bool:
        """Whether the interval excludes 0 (the sign of the difference is resolved)."""
        return self.low > 0 or self.high < 0


def paired_difference(
    a: str,
    b: str,
    full_a: np.ndarray,
    full_b: np.ndarray,
    rep_a: np.ndarray,
    rep_b: np.ndarray,
    draws: BootstrapDraws,
    level: float,
) -> PairedDifference:
    """The paired difference ``a - b`` and its percentile bootstrap interval.

    Args:
        a, b: method names.
        full_a, full_b: (S,) scores on the full test split, seed by seed (same seed order).
        rep_a, rep_b: (S, B) scores on each item resample, seed by seed.
        draws: the shared draws (their ``seed_index`` picks the seeds of each replicate).
        level: coverage, e.g. 0.95.
    """
    full_a, full_b = np.asarray(full_a, np.float64), np.asarray(full_b, np.float64)
    if full_a.shape != full_b.shape:
        raise ValueError(f"{a} has {full_a.shape} seed scores but {b} has {full_b.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1); got {level}")
    diff = seed_mean_replicates(rep_a, draws.seed_index) - seed_mean_replicates(
        rep_b, draws.seed_index
    )
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(diff, [tail, 100.0 - tail])
    return PairedDifference(
        a=a,
        b=b,
        estimate=float(full_a.mean() - full_b.mean()),
        low=float(low),
        high=float(high),
        level=level,
        seed_wins=int(np.sum(full_a > full_b)),
        num_seeds=len(full_a),
    )
