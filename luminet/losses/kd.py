"""Hinton knowledge distillation: KL between temperature-softened outputs, times T^2.

Paper: Hinton et al., "Distilling the Knowledge in a Neural Network", https://arxiv.org/abs/1503.02531
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._validation import check_logit_pair, check_positive

__all__ = ["kd_loss", "KDLoss"]


def kd_loss(
    logits_student: torch.Tensor,
    logits_teacher: torch.Tensor,
    temperature: float = 4.0,
    check_finite: bool = True,
) -> torch.Tensor:
    """``T**2 * KL(softmax(t / T) || softmax(s / T))``, averaged over rows, in float32.

    Args:
        logits_student: (N, C) student logits.
        logits_teacher: (N, C) teacher logits (detached inside).
        temperature: softmax temperature T (> 0).
        check_finite: raise ``ValueError`` on NaN/inf inputs.
    """
    check_positive("temperature", temperature)
    student, teacher = check_logit_pair(logits_student, logits_teacher, check_finite=check_finite)
    log_p_student = F.log_softmax(student / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


class KDLoss(nn.Module):
    """Module form of :func:`kd_loss`; ``target`` is accepted and ignored."""

    def __init__(self, temperature: float = 4.0, check_finite: bool = True):
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        self.check_finite = bool(check_finite)

    def forward(self, logits_student, logits_teacher, target=None) -> torch.Tensor:
        return kd_loss(logits_student, logits_teacher, self.temperature, self.check_finite)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
