"""LumiNet's perception: logits standardised per class over the batch, and the loss on top.

Paper: Hossain et al., "LumiNet: The Bright Side of Perceptual Knowledge Distillation",
https://arxiv.org/abs/2310.03669
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._validation import check_logit_pair, check_positive

__all__ = ["perception", "perception_kl", "luminet_loss", "LumiNetLoss"]


def perception(
    logits: torch.Tensor,
    eps: float = 1e-5,
    mean: torch.Tensor | None = None,
    var: torch.Tensor | None = None,
) -> torch.Tensor:
    """Standardise each class column of ``logits`` over the batch (dim 0).

    ``h[i, j] = (z[i, j] - mean_j) / sqrt(var_j + eps)`` with the biased variance (divide by N).

    A column that is constant over the batch (which includes every column when N = 1) has zero
    variance and maps to zeros: it carries no information relative to the other samples.

    Scale-safe: a column whose magnitude could overflow the variance in the computation dtype
    (float32 for float32/float16/bfloat16 input: from about ``3e17`` for 1024 rows) is
    standardised in float64 after an exact power-of-two rescaling, so logits of any finite
    magnitude give the mathematically right result (never a silent zero). Other columns take
    the plain path, bit for bit as before. No device synchronisation either way.

    Args:
        logits: (N, C) logits; rows are samples (or ROIs), columns are classes.
        eps: added to the variance before the square root.
        mean, var: optional (1, C) per-class statistics to use instead of this batch's, e.g.
            statistics gathered over several processes; give both or neither.

    Returns:
        A tensor of the same shape (dtype: the promotion of ``logits`` and the statistics).
    """
    if logits.dim() != 2:
        raise ValueError(f"perception expects 2-D logits (N, C); got shape {tuple(logits.shape)}")
    if (mean is None) != (var is None):
        raise ValueError("perception takes both mean and var, or neither")
    if mean is None:
        return _scale_safe_standardise(logits, eps)
    if mean.shape != (1, logits.shape[1]) or var.shape != (1, logits.shape[1]):
        raise ValueError(
            f"mean and var must have shape (1, {logits.shape[1]}) for logits of shape "
            f"{tuple(logits.shape)}; got {tuple(mean.shape)} and {tuple(var.shape)}"
        )
    return (logits - mean) * torch.rsqrt(var + eps)


def _standardise(x: torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=0, keepdim=True)
    var = x.var(dim=0, unbiased=False, keepdim=True)
    return (x - mean) * torch.rsqrt(var + eps)


def _scale_safe_standardise(logits: torch.Tensor, eps: float) -> torch.Tensor:
    """:func:`perception` with batch statistics, without overflow at any finite magnitude."""
    n = logits.shape[0]
    if n == 0:
        return _standardise(logits, eps)
    accumulate = torch.float64 if logits.dtype == torch.float64 else torch.float32
    # |z - mean| <= 2 max|z|, so N * (2 max|z|)^2 below the dtype's maximum cannot overflow.
    limit = 0.5 * math.sqrt(torch.finfo(accumulate).max / n)
    amax = logits.detach().abs().amax(dim=0, keepdim=True)
    plain = amax <= limit  # (1, C); False for huge (or non-finite) columns
    # Ordinary columns: the plain computation on unchanged values (bit-identical results).
    h_plain = _standardise(torch.where(plain, logits, 0), eps)
    # Huge columns: exact power-of-two rescaling to |y| < 2, then float64 with eps / scale^2.
    scale = torch.where(plain, 1.0, torch.exp2(torch.floor(torch.log2(amax.double()))))
    y = torch.where(plain, 0, logits).double() / scale
    h_huge = _standardise(y, eps / scale / scale)
    return torch.where(plain, h_plain, h_huge.to(h_plain.dtype))


def perception_kl(
    h_student: torch.Tensor, h_teacher: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """``KL(softmax(h_teacher / T) || softmax(h_student / T))`` averaged over rows, no ``T**2``.

    The divergence LumiNet applies to perception outputs (see :func:`perception`).
    """
    log_p_student = F.log_softmax(h_student / temperature, dim=1)
    log_p_teacher = F.log_softmax(h_teacher / temperature, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)


def luminet_loss(
    logits_student: torch.Tensor,
    logits_teacher: torch.Tensor,
    temperature: float = 1.0,
    alpha: float = 1.0,
    eps: float = 1e-5,
    check_finite: bool = True,
) -> torch.Tensor:
    """LumiNet distillation loss.

    ``alpha**2 * KL(softmax(perception(t) / T) || softmax(perception(s) / T))`` averaged over the
    rows (``batchmean``). As in the authors' code there is no extra ``T**2`` factor.

    Computed in float32 whatever the input dtype; the teacher is detached. With N = 1, or when
    teacher and student are equal up to a per-class affine map with positive scale, the loss is 0.

    Args:
        logits_student: (N, C) student logits.
        logits_teacher: (N, C) teacher logits for the same rows.
        temperature: softmax temperature T (> 0).
        alpha: weight; the loss is multiplied by ``alpha ** 2``.
        eps: variance stabiliser of :func:`perception`.
        check_finite: raise ``ValueError`` on NaN/inf inputs (costs one device sync).

    Returns:
        A float32 scalar.
    """
    check_positive("temperature", temperature)
    student, teacher = check_logit_pair(logits_student, logits_teacher, check_finite=check_finite)
    kl = perception_kl(perception(student, eps), perception(teacher, eps), temperature)
    return kl * (alpha**2)


class LumiNetLoss(nn.Module):
    """Module form of :func:`luminet_loss`; ``target`` is accepted and ignored."""

    def __init__(
        self, temperature: float = 1.0, alpha: float = 1.0, eps: float = 1e-5, check_finite=True
    ):
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        self.alpha = float(alpha)
        self.eps = check_positive("eps", eps)
        self.check_finite = bool(check_finite)

    def forward(self, logits_student, logits_teacher, target=None) -> torch.Tensor:
        return luminet_loss(
            logits_student,
            logits_teacher,
            temperature=self.temperature,
            alpha=self.alpha,
            eps=self.eps,
            check_finite=self.check_finite,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, alpha={self.alpha}, eps={self.eps}"
