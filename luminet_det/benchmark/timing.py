"""Interleaved step timing of several variants in one process.

Every round runs one step of each variant (the order rotates from round to round), so slow
drifts of the machine (other processes, clock changes) hit all variants alike. The garbage
collector runs between steps, outside the timed region; on CUDA the device is synchronised
before and after each timed step. A progress line per round (each variant's step time, elapsed
time, ETA) is logged at INFO (``tools/benchmark.py`` prints it on stderr).
"""

from __future__ import annotations

import gc
import logging
import statistics
import time
from collections.abc import Callable

import torch

logger = logging.getLogger(__name__)

__all__ = ["time_interleaved", "summarize"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    steps: dict[str, Callable[[], object]],
    n_steps: int,
    warmup: int,
    device: torch.device | str = "cpu",
) -> dict[str, list[float]]:
    """Seconds per step of every variant.

    Args:
        steps: variant name -> callable running one step.
        n_steps: measured rounds.
        warmup: unmeasured rounds first.
        device: where the steps run (CUDA is synchronised around each step).

    Returns:
        variant -> list of ``n_steps`` durations in seconds.
    """
    if not steps:
        raise ValueError("time_interleaved needs at least one variant")
    if n_steps < 1 or warmup < 0:
        raise ValueError(f"need n_steps >= 1 and warmup >= 0; got {n_steps}, {warmup}")
    device = torch.device(device)
    names = list(steps)
    times: dict[str, list[float]] = {n: [] for n in names}
    rounds = warmup + n_steps
    start = time.perf_counter()
    for rnd in range(rounds):
        k = rnd % len(names)
        this_round = {}
        for name in names[k:] + names[:k]:
            gc.collect()
            _sync(device)
            t0 = time.perf_counter()
            steps[name]()
            _sync(device)
            dt = time.perf_counter() - t0
            this_round[name] = dt
            if rnd >= warmup:
                times[name].append(dt)
        elapsed = time.perf_counter() - start
        eta = elapsed / (rnd + 1) * (rounds - rnd - 1)
        kind = "warm-up" if rnd < warmup else f"step {rnd - warmup + 1}/{n_steps}"
        logger.info(
            "[%s] round %d/%d (%s): %s | elapsed %ds, ETA %ds",
            _clock(elapsed),
            rnd + 1,
            rounds,
            kind,
            " ".join(f"{n} {this_round[n]:.2f}s" for n in names),
            int(elapsed),
            int(eta),
        )
    return times


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60):02d}:{int(seconds % 60):02d}"


def summarize(durations: list[float]) -> dict[str, float]:
    """``{"median_ms", "min_ms", "max_ms", "n"}`` of durations in seconds."""
    if not durations:
        raise ValueError("no durations to summarise")
    return {
        "median_ms": 1e3 * statistics.median(durations),
        "min_ms": 1e3 * min(durations),
        "max_ms": 1e3 * max(durations),
        "n": len(durations),
    }
