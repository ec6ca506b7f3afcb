"""Decoupled knowledge distillation (DKD): target-class and non-target-class terms.

Paper: Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022, https://arxiv.org/abs/2203.08679
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._validation import check_logit_pair, check_positive

__all__ = ["dkd_loss", "DKDLoss"]


def _binary_log_probs(scaled: torch.Tensor, gt_mask: torch.Tensor) -> torch.Tensor:
    """log [p_target, p_non_target] per row, from log-sum-exps (no log of a small sum)."""
    lse_all = torch.logsumexp(scaled, dim=1, keepdim=True)
    lse_target = (scaled * gt_mask).sum(dim=1, keepdim=True)
    lse_other = torch.logsumexp(
        scaled.masked_fill(gt_mask.bool(), float("-inf")), dim=1, keepdim=True
    )
    return torch.cat([lse_target, lse_other], dim=1) - lse_all


def dkd_loss(
    logits_student: torch.Tensor,
    logits_teacher: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
    check_finite: bool = True,
) -> torch.Tensor:
    """``alpha * TCKD + beta * NCKD``, each a batch-mean KL times ``T**2``, in float32.

    TCKD compares the binary (target vs. all other classes) distributions; NCKD compares the
    distributions over the non-target classes only. Needs at least two classes.

    Args:
        logits_student: (N, C) student logits.
        logits_teacher: (N, C) teacher logits (detached inside).
        target: (N,) integer class index per row, in [0, C).
        alpha: weight of TCKD.
        beta: weight of NCKD.
        temperature: softmax temperature T (> 0).
        check_finite: raise ``ValueError`` on NaN/inf inputs.
    """
    check_positive("temperature", temperature)
    student, teacher = check_logit_pair(logits_student, logits_teacher, check_finite=check_finite)
    n, c = student.shape
    if target is None:
        raise ValueError("dkd_loss needs the target class of every row; got target=None")
    if target.shape != (n,) or target.dtype.is_floating_point:
        raise ValueError(
            f"target must be an integer tensor of shape ({n},); got {target.dtype} of shape "
            f"{tuple(target.shape)} for logits of shape {(n, c)}"
        )
    if c < 2:
        raise ValueError(f"dkd_loss needs at least 2 classes; got logits of shape {(n, c)}")
    if check_finite and n and bool((target < 0).any() | (target >= c).any()):
        raise ValueError(f"target values must lie in [0, {c}); got min {int(target.min())}, "
                         f"max {int(target.max())}")  # fmt: skip

    gt_mask = F.one_hot(target.long(), c).to(student.dtype)
    s, t = student / temperature, teacher / temperature

    log_b_student = _binary_log_probs(s, gt_mask)
    log_b_teacher = _binary_log_probs(t, gt_mask)
    tckd = F.kl_div(log_b_student, log_b_teacher, reduction="batchmean", log_target=True)

    # Non-target distribution: the target column is removed by a large negative logit
    # (finite, so the removed column contributes exp(-1e9) * finite = 0 rather than NaN).
    # The official code subtracts 1000 (in logit / T units) instead, which leaves the target
    # column in place when it leads the others by more than 1000 T; this masking stays exact.
    masked = gt_mask.bool()
    log_nt_student = F.log_softmax(s.masked_fill(masked, -1e9), dim=1)
    log_nt_teacher = F.log_softmax(t.masked_fill(masked, -1e9), dim=1)
    nckd = F.kl_div(log_nt_student, log_nt_teacher, reduction="batchmean", log_target=True)

    return (alpha * tckd + beta * nckd) * temperature**2


class DKDLoss(nn.Module):
    """Module form of :func:`dkd_loss`; ``target`` is required."""

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 8.0,
        temperature: float = 4.0,
        check_finite: bool = True,
    ):
        super().__init__()
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.temperature = check_positive("temperature", temperature)
        self.check_finite = bool(check_finite)

    def forward(self, logits_student, logits_teacher, target=None) -> torch.Tensor:
        return dkd_loss(
            logits_student,
            logits_teacher,
            target,
            alpha=self.alpha,
            beta=self.beta,
            temperature=self.temperature,
            check_finite=self.check_finite,
        )

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, temperature={self.temperature}"
