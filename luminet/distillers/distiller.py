"""Student + frozen teacher(s) + a distillation loss from the shared registry."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from .teacher import TeacherEnsemble

__all__ = ["Distiller", "warmup_factor"]

logger = logging.getLogger(__name__)


def warmup_factor(epoch: int, warmup: float) -> float:
    """``min(epoch / warmup, 1)`` for 1-based ``epoch`` (as the official code); 1 if warmup <= 0."""
    if warmup <= 0:
        return 1.0
    return min(float(epoch) / float(warmup), 1.0)


class Distiller(nn.Module):
    """``loss = ce_weight * CE + warmup(epoch) * distill_weight * distill(student, teacher)``.

    Args:
        student: the network being trained.
        teacher: frozen teacher(s), or None for plain training (then ``distill_loss`` must be None).
        distill_loss: a module from :func:`luminet.losses.build_distill_loss`, called as
            ``loss(logits_student, logits_teacher, target)``; None for plain training.
        ce_weight: weight of the cross-entropy term.
        distill_weight: constant weight of the distillation term (KD's KD_WEIGHT; 1 otherwise).
        warmup: epochs over which the distillation weight ramps up linearly (0 = none).
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: TeacherEnsemble | None = None,
        distill_loss: nn.Module | None = None,
        ce_weight: float = 1.0,
        distill_weight: float = 1.0,
        warmup: float = 0.0,
    ):
        super().__init__()
        if (teacher is None) != (distill_loss is None):
            raise ValueError(
                "a distillation loss needs a teacher and a teacher needs a distillation loss; got "
                f"teacher={'set' if teacher is not None else None}, distill_loss={distill_loss!r}"
            )
        self.student = student
        self.teacher = teacher
        self.distill_loss = distill_loss
        self.ce_weight = float(ce_weight)
        self.distill_weight = float(distill_weight)
        self.warmup = float(warmup)
        # What runs the student in training: the student itself or its DDP wrapper. Kept out of
        # the module tree so that state_dict() has the plain student's keys.
        self.__dict__["_student_runner"] = student

    def set_student_runner(self, runner: nn.Module) -> None:
        """Run the student through ``runner`` (e.g. ``DistributedDataParallel(student)``)."""
        self.__dict__["_student_runner"] = runner

    def forward(
        self, images: torch.Tensor, target: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One training forward pass.

        Args:
            images: input batch.
            target: (N,) class indices.
            epoch: 1-based epoch, for the warm-up.

        Returns:
            The student logits and the weighted loss terms ``{"loss_ce", "loss_distill"}``
            (``loss_distill`` only with a teacher); the total is their sum.
        """
        logits = self.__dict__["_student_runner"](images)
        losses = {"loss_ce": self.ce_weight * F.cross_entropy(logits.float(), target)}
        if self.teacher is not None:
            with torch.no_grad():
                logits_teacher = self.teacher(images)
            factor = warmup_factor(epoch, self.warmup) * self.distill_weight
            losses["loss_distill"] = factor * self.distill_loss(logits, logits_teacher, target)
        return logits, losses

    def extra_repr(self) -> str:
        return (
            f"ce_weight={self.ce_weight}, distill_weight={self.distill_weight}, "
            f"warmup={self.warmup}"
        )
