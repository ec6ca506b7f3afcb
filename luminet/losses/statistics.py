"""Over which rows LumiNet takes its per-class statistics: the loss's own choice (``stats``).

* ``"batch"``: every row the loss is given (all sampled ROIs of one process, the authors'
  per-GPU behaviour): :class:`~luminet.losses.LumiNetLoss`;
* ``"image"``: each group of rows (each image's ROIs) separately; the loss is the row-weighted
  mean of the per-group losses: :class:`PerGroupLoss` around ``LumiNetLoss``;
* ``"global"``: the rows of all processes, with the exact gradient:
  :class:`~luminet.losses.global_statistics.GlobalLumiNetLoss`.

:func:`build_luminet_loss` is the factory registered as ``"luminet"``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

from .global_statistics import GlobalLumiNetLoss
from .perception import LumiNetLoss

logger = logging.getLogger(__name__)

__all__ = ["LUMINET_STATS", "PerGroupLoss", "build_luminet_loss"]

#: Values of LumiNet's ``stats`` argument (config: ``MODEL.DISTILL.LUMINET.STATS``).
LUMINET_STATS = ("batch", "image", "global")


class PerGroupLoss(nn.Module):
    """``loss`` applied to each group of rows separately; the row-weighted mean of the values.

    With per-batch statistics inside ``loss`` (LumiNet), this takes the statistics per group
    (per image, when the groups are the images' ROIs). Groups without rows are skipped.

    Args:
        loss: a distillation loss called as ``loss(logits_student, logits_teacher, target)``.
    """

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(
        self,
        logits_student: torch.Tensor,
        logits_teacher: torch.Tensor,
        target: torch.Tensor | None = None,
        *,
        group_sizes: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Args:
            logits_student, logits_teacher: (N, C) logits, the rows of the groups in order.
            target: (N,) classes, or None.
            group_sizes: rows per group, summing to N.

        Raises:
            ValueError: when ``group_sizes`` is missing or does not sum to N.
        """
        n = logits_student.shape[0]
        if group_sizes is None or sum(int(s) for s in group_sizes) != n:
            raise ValueError(
                f"PerGroupLoss needs group_sizes summing to the {n} rows; got {group_sizes}"
            )
        sizes = [int(s) for s in group_sizes]
        if n == 0:
            return logits_student.float().sum() * 0.0
        total = logits_student.new_zeros((), dtype=torch.float32)
        targets = target.split(sizes) if target is not None else [None] * len(sizes)
        for s, t, y in zip(logits_student.split(sizes), logits_teacher.split(sizes), targets):
            if len(s):
                total = total + self.loss(s, t, y) * len(s)
        return total / n

    def extra_repr(self) -> str:
        return "statistics per group (image)"


def build_luminet_loss(
    temperature: float = 1.0,
    alpha: float = 1.0,
    eps: float = 1e-5,
    check_finite: bool = True,
    stats: str = "batch",
) -> nn.Module:
    """The LumiNet loss with its per-class statistics over ``stats`` (see the module docstring).

    Args:
        temperature, alpha, eps, check_finite: as for :func:`~luminet.losses.luminet_loss`.
        stats: "batch", "image" or "global".

    Returns:
        ``LumiNetLoss``, ``PerGroupLoss(LumiNetLoss)`` or ``GlobalLumiNetLoss``.

    Raises:
        ValueError: for an unknown ``stats`` or a bad hyperparameter.
    """
    kind = str(stats).lower()
    if kind not in LUMINET_STATS:
        raise ValueError(f"stats must be one of {LUMINET_STATS}; got {stats!r}")
    if kind == "global":
        return GlobalLumiNetLoss(temperature, alpha, eps, check_finite)
    loss = LumiNetLoss(temperature, alpha, eps, check_finite)
    return PerGroupLoss(loss) if kind == "image" else loss
