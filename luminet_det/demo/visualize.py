"""Demo figures: AP bar chart with the teacher line; LumiNet perception of one ROI."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from luminet.atomic_io import atomic_write
from luminet.losses import perception

logger = logging.getLogger(__name__)

__all__ = ["plot_ap_chart", "plot_perception", "sample_std"]

_METRICS = ("AP", "AP50", "AP75")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def sample_std(values: Sequence[float]) -> float:
    """Sample standard deviation (n - 1); 0 for a single value."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def plot_ap_chart(
    students: Mapping[str, Sequence[Mapping[str, float]]],
    teacher: Mapping[str, float],
    path: str | os.PathLike,
    title: str = "",
) -> None:
    """Bar chart of COCO AP/AP50/AP75 per student (mean, sample std over seeds as error bars).

    Args:
        students: ``{label: [metrics of one seed, ...]}``; metrics hold "AP", "AP50", "AP75" in
            percent.
        teacher: the teacher's metrics, drawn as a dashed line on each panel.
        path: output PNG.
        title: figure title.

    Raises:
        ValueError: if ``students`` is empty or a run lacks a metric.
    """
    if not students:
        raise ValueError("plot_ap_chart needs at least one student")
    for label, runs in students.items():
        if not runs:
            raise ValueError(f"student {label!r} has no runs")
        for run in runs:
            missing = [m for m in _METRICS if m not in run]
            if missing:
                raise ValueError(f"student {label!r}: a run lacks {missing}")
    plt = _pyplot()
    labels = list(students)
    colors = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(1, len(_METRICS), figsize=(4.2 * len(_METRICS), 4.0))
    for ax, metric in zip(axes, _METRICS):
        means = np.array([np.mean([r[metric] for r in students[k]]) for k in labels])
        stds = np.array([sample_std([r[metric] for r in students[k]]) for k in labels])
        n_seeds = [len(students[k]) for k in labels]
        x = np.arange(len(labels))
        bars = ax.bar(
            x,
            means,
            yerr=stds if max(n_seeds) > 1 else None,
            capsize=4,
            color=[colors[i % len(colors)] for i in range(len(labels))],
        )
        for b, m in zip(bars, means):
            ax.annotate(  # at the bar's foot, clear of error bars and the teacher line
                f"{m:.1f}",
                (b.get_x() + b.get_width() / 2, 0.0),
                ha="center",
                va="bottom",
                fontsize=9,
                color="white",
                fontweight="bold",
                xytext=(0, 4),
                textcoords="offset points",
            )
        if metric in teacher:
            ax.axhline(teacher[metric], color="black", ls="--", lw=1.5)
            ax.annotate(
                f"teacher {teacher[metric]:.1f}",
                (-0.5, teacher[metric]),  # left end: the baseline student is usually lowest
                ha="left",
                va="bottom",
                fontsize=9,
            )
        top = max([*(means + stds), teacher.get(metric, 0.0)])
        ax.set_ylim(0, max(1.0, top * 1.18))
        ax.set_xticks(x, labels)
        ax.set_ylabel(f"COCO {metric} (%)")
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
    seeds = sorted({len(v) for v in students.values()})
    note = f"students: mean over {seeds[0]} seed(s)" + (
        ", error bar = sample std" if seeds[-1] > 1 else ""
    )
    fig.suptitle(f"{title}\n{note}" if title else note)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, dpi=110, format="png")
    plt.close(fig)
    logger.info("Wrote %s", path)


def plot_perception(
    logits: torch.Tensor,
    index: int,
    class_names: Sequence[str],
    path: str | os.PathLike,
    temperature: float = 4.0,
    crop: np.ndarray | None = None,
    caption: str = "",
) -> dict[str, np.ndarray]:
    """The teacher's view of one ROI: raw logits, KD probabilities, LumiNet probabilities.

    Like Fig. 2 of the LumiNet paper: ``softmax(z / T)`` (KD) next to
    ``softmax(perception(z) / T)`` (LumiNet), where :func:`luminet.losses.perception`
    standardises each class over all the ROIs of ``logits`` (the batch).

    Args:
        logits: (N, C) teacher logits of a batch of ROIs (N >= 2).
        index: the row to show.
        class_names: C names.
        path: output PNG.
        temperature: T of both softened distributions.
        crop: optional HxWx3 uint8 RGB crop of the ROI, drawn in the first panel.
        caption: figure title.

    Returns:
        ``{"logits", "kd", "perception", "luminet"}``: the plotted rows as numpy arrays.

    Raises:
        ValueError: on bad shapes, index or names.
    """
    if logits.dim() != 2 or logits.shape[0] < 2:
        raise ValueError(f"need (N >= 2, C) logits; got shape {tuple(logits.shape)}")
    n, c = logits.shape
    if not 0 <= index < n:
        raise ValueError(f"index {index} out of range for {n} ROIs")
    if len(class_names) != c:
        raise ValueError(f"{len(class_names)} class names for {c} logit columns")
    z = logits.detach().float().cpu()
    rows = {
        "logits": z[index].numpy(),
        "kd": F.softmax(z / temperature, dim=1)[index].numpy(),
        "perception": perception(z)[index].numpy(),
        "luminet": F.softmax(perception(z) / temperature, dim=1)[index].numpy(),
    }
    plt = _pyplot()
    panels = 4 if crop is not None else 3
    fig, axes = plt.subplots(1, panels, figsize=(4.0 * panels, 3.8))
    axes = list(axes)
    if crop is not None:
        ax = axes.pop(0)
        ax.imshow(crop, interpolation="nearest")
        ax.set_title("validation ROI")
        ax.axis("off")
    x = np.arange(c)
    specs = [
        ("logits", "teacher logits z", "logit", "tab:gray"),
        ("kd", f"KD: softmax(z / {temperature:g})", "probability", "tab:blue"),
        ("luminet", f"LumiNet: softmax(perception(z) / {temperature:g})", "probability", "tab:red"),
    ]
    for ax, (key, title, unit, color) in zip(axes, specs):
        ax.bar(x, rows[key], color=color)
        ax.set_xticks(x, class_names, rotation=0 if c <= 12 else 90, fontsize=8)
        ax.set_xlabel("class")
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        if unit == "probability":
            ax.set_ylim(0, 1.0)
    fig.suptitle(
        (caption + "\n" if caption else "")
        + f"perception standardises each class over the {n} ROIs of the batch",
        fontsize=10,
    )
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, dpi=110, format="png")
    plt.close(fig)
    logger.info("Wrote %s", path)
    return rows
