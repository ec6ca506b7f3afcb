"""Markdown tables and figures of the study (docs/study.md), from plain result dicts."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np

from .bootstrap import PairedDifference

logger = logging.getLogger(__name__)

__all__ = [
    "mean_std",
    "format_interval",
    "tuning_table",
    "final_table",
    "differences_table",
    "per_seed_table",
    "reading",
    "plot_differences",
    "plot_scores",
]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for one value)."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def format_interval(low: float, high: float, digits: int = 2) -> str:
    """``[low, high]`` with signed numbers."""
    return f"[{low:+.{digits}f}, {high:+.{digits}f}]"


def tuning_table(rows: Sequence[Mapping], seeds: Sequence[int], metric: str) -> str:
    """One line per setting: the val score of each tuning seed, their mean, and the choice.

    Args:
        rows: ``{"method", "setting", "scores": [per seed], "chosen": bool}`` in protocol order.
        seeds: the tuning seeds (column order of ``scores``).
        metric: the metric's name (column titles).
    """
    head = " | ".join(f"val {metric} seed {s}" for s in seeds)
    lines = [
        f"| method | setting | {head} | mean | chosen |",
        "|---|---|" + "---:|" * len(seeds) + "---:|---|",
    ]
    for r in rows:
        cells = " | ".join(f"{x:.2f}" for x in r["scores"])
        mark = "**chosen**" if r["chosen"] else ""
        lines.append(
            f"| {r['method']} | {r['setting']} | {cells} | {np.mean(r['scores']):.2f} | {mark} |"
        )
    return "\n".join(lines)


def final_table(
    rows: Sequence[Mapping], metrics: Sequence[str], teacher: Mapping | None, ci_metric: str
) -> str:
    """Test scores: mean ± sample std over the final seeds, and the bootstrap interval of the
    mean of the first metric.

    Args:
        rows: ``{"method", "setting", "values": {metric: [per seed]}, "ci": (low, high)}``.
        metrics: metric names, in column order.
        teacher: ``{"name", metric: value, ...}`` or None.
        ci_metric: the metric whose interval is shown.
    """
    lines = [
        "| model | chosen setting | "
        + " | ".join(metrics)
        + f" | 95% CI of the mean {ci_metric} |",
        "|---|---|" + "---:|" * len(metrics) + "---:|",
    ]
    if teacher is not None:
        cells = " | ".join(f"{teacher[m]:.2f}" for m in metrics)
        lines.append(f"| teacher {teacher['name']} | - | {cells} | |")
    for r in rows:
        cells = " | ".join("{:.2f} ± {:.2f}".format(*mean_std(r["values"][m])) for m in metrics)
        lo, hi = r["ci"]
        lines.append(f"| {r['method']} | {r['setting']} | {cells} | [{lo:.2f}, {hi:.2f}] |")
    return "\n".join(lines)


def differences_table(diffs: Mapping[str, Sequence[PairedDifference]]) -> str:
    """Paired differences per metric: estimate, interval, seeds won.

    Args:
        diffs: ``{metric: [PairedDifference per comparison]}``, same comparisons per metric.
    """
    metrics = list(diffs)
    first = diffs[metrics[0]]
    level = int(round(100 * first[0].level))
    lines = [
        "| difference | "
        + " | ".join(f"{m}: estimate [{level}% CI]" for m in metrics)
        + f" | seeds won ({metrics[0]}) | {metrics[0]} CI excludes 0 |",
        "|---|" + "---:|" * len(metrics) + "---:|---|",
    ]
    for i, d in enumerate(first):
        cells = " | ".join(
            f"{diffs[m][i].estimate:+.2f} {format_interval(diffs[m][i].low, diffs[m][i].high)}"
            for m in metrics
        )
        lines.append(
            f"| {d.a} - {d.b} | {cells} | {d.seed_wins}/{d.num_seeds} | "
            f"{'yes' if d.resolved else 'no'} |"
        )
    return "\n".join(lines)


def per_seed_table(values: Mapping[str, Sequence[float]], seeds: Sequence[int], metric: str) -> str:
    """Test score of every method per final seed (same seed = same initial weights and data
    order)."""
    lines = [
        f"| seed | {' | '.join(values)} |",
        "|---:|" + "---:|" * len(values),
    ]
    for i, s in enumerate(seeds):
        lines.append(f"| {s} | " + " | ".join(f"{v[i]:.2f}" for v in values.values()) + " |")
    return f"{metric} on test, per seed:\n\n" + "\n".join(lines)


def reading(diffs: Sequence[PairedDifference], metric: str, unit: str) -> str:
    """One line per comparison, stating what its interval resolves (rule-based)."""
    out = []
    for d in diffs:
        ci = format_interval(d.low, d.high)
        if d.resolved:
            word = "higher" if d.estimate > 0 else "lower"
            out.append(
                f"- {d.a} vs {d.b}: {d.a} is {word} ({d.estimate:+.2f} {unit} {metric}, "
                f"{int(round(100 * d.level))}% CI {ci}, {d.seed_wins}/{d.num_seeds} seeds)."
            )
        else:
            out.append(
                f"- {d.a} vs {d.b}: not resolved ({d.estimate:+.2f} {unit} {metric}, "
                f"{int(round(100 * d.level))}% CI {ci} contains 0; {d.a} ahead in "
                f"{d.seed_wins}/{d.num_seeds} seeds)."
            )
    return "\n".join(out)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_differences(
    panels: Sequence[tuple[str, str, Sequence[PairedDifference]]], path: str | os.PathLike
) -> None:
    """Forest plot: each paired difference with its interval, one panel per task.

    Args:
        panels: ``(title, x-axis label, differences)`` per panel.
        path: output PNG.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 3.9), squeeze=False)
    for ax, (title, xlabel, diffs) in zip(axes[0], panels):
        y = np.arange(len(diffs))[::-1]
        lo = np.array([d.low for d in diffs])
        hi = np.array([d.high for d in diffs])
        for yi, d in zip(y, diffs):
            color = "tab:blue" if d.resolved else "tab:gray"
            ax.errorbar(
                d.estimate, yi, xerr=[[d.estimate - d.low], [d.high - d.estimate]], fmt="o",
                color=color, capsize=4, lw=2,
            )  # fmt: skip
            ax.annotate(
                f"{d.estimate:+.2f} [{d.low:+.2f}, {d.high:+.2f}]", (d.estimate, yi),
                xytext=(0, 7), textcoords="offset points", ha="center", fontsize=8,
            )  # fmt: skip
        ax.axvline(0.0, color="black", lw=1, ls="--")
        ax.set_yticks(y, [f"{d.a} - {d.b}" for d in diffs])
        ax.set_ylim(-0.6, len(diffs) - 0.2)  # room for the value labels above the top row
        ax.set_xlabel(xlabel)
        span = max(abs(lo.min()), abs(hi.max()), 0.1)
        ax.set_xlim(-1.15 * span, 1.15 * span)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    level = int(round(100 * panels[0][2][0].level))
    fig.suptitle(
        f"Paired test differences, mean over seeds with {level}% bootstrap CI "
        "(blue: CI excludes 0)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    logger.info("Wrote %s", path)


def plot_scores(
    panels: Sequence[tuple[str, str, Mapping[str, Sequence[float]], Mapping, float | None]],
    path: str | os.PathLike,
) -> None:
    """Per-seed test scores (dots) and the mean with its bootstrap interval, per method.

    Args:
        panels: ``(title, y-axis label, {method: per-seed values}, {method: (low, high)},
            teacher value or None)`` per task.
        path: output PNG.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.0), squeeze=False)
    colors = plt.get_cmap("tab10").colors
    for ax, (title, ylabel, values, cis, teacher) in zip(axes[0], panels):
        for i, (method, vals) in enumerate(values.items()):
            vals = np.asarray(vals)
            jitter = np.linspace(-0.12, 0.12, len(vals))
            ax.scatter(i + jitter, vals, s=18, color=colors[i % 10], alpha=0.6, zorder=2)
            mean = vals.mean()
            lo, hi = cis[method]
            ax.errorbar(
                i + 0.3, mean, yerr=[[mean - lo], [hi - mean]], fmt="D", color=colors[i % 10],
                capsize=4, lw=2, zorder=3,
            )  # fmt: skip
        if teacher is not None:
            ax.axhline(teacher, color="black", ls="--", lw=1.2)
            ax.annotate(
                f"teacher {teacher:.2f}", (-0.4, teacher), xytext=(0, 3),
                textcoords="offset points", fontsize=8, va="bottom",
            )  # fmt: skip
        ax.set_xticks(range(len(values)), list(values))
        ax.set_xlim(-0.5, len(values) - 0.3)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        "Test scores per seed (dots); mean and its 95% bootstrap CI (diamond, bar)", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    logger.info("Wrote %s", path)
