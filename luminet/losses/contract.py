"""How a distillation loss is called, also on an empty or grouped batch.

Every distillation loss is called as ``loss(logits_student, logits_teacher, target)`` on (N, C)
logits with N >= 1. A loss whose ``forward`` also takes a keyword ``group_sizes`` is *batch
aware*: it is called at **every** step, also with N = 0, and is told the number of rows of each
group (in detection: each image's sampled ROIs). Per-image statistics
(:class:`~luminet.losses.PerGroupLoss`) need the groups; statistics over all processes
(:class:`~luminet.losses.GlobalLumiNetLoss`) need every process to take part in each step.
A plain loss is not called on an empty batch: its value is then a zero that keeps the student's
logits in the graph.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["takes_group_sizes", "apply_distill_loss"]


def takes_group_sizes(loss: Callable[..., Any]) -> bool:
    """Whether ``loss`` (a module or a function) takes the keyword ``group_sizes``."""
    fn = loss.forward if isinstance(loss, nn.Module) else loss
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "group_sizes" in params


def apply_distill_loss(
    loss: Callable[..., torch.Tensor],
    logits_student: torch.Tensor,
    logits_teacher: torch.Tensor,
    target: torch.Tensor | None = None,
    group_sizes: Sequence[int] | None = None,
) -> torch.Tensor:
    """Call ``loss`` by the contract of this module.

    Args:
        loss: a distillation loss.
        logits_student, logits_teacher: (N, C) logits; N may be 0.
        target: (N,) target classes, or None.
        group_sizes: rows per group (summing to N); defaults to one group.

    Returns:
        The scalar loss.
    """
    n = logits_student.shape[0]
    if takes_group_sizes(loss):
        sizes = [n] if group_sizes is None else list(group_sizes)
        return loss(logits_student, logits_teacher, target, group_sizes=sizes)
    if n == 0:
        return logits_student.float().sum() * 0.0
    return loss(logits_student, logits_teacher, target)
