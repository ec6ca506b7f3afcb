"""LumiNet for sigmoid classifiers (dense detection heads): perception per class over the anchors.

LumiNet standardises each class's logit over the samples of the batch, so that the student learns
the teacher's relative judgement per class rather than its raw scale. For a dense head the samples
are the anchors (or points) of every level and image, and the classes are K independent sigmoids:
both logit matrices are perceived per class over the chosen anchors, then compared with the binary
KL of :func:`~luminet.losses.kd_sigmoid.binary_kl_with_logits`.

Paper: Hossain et al., "LumiNet: The Bright Side of Perceptual Knowledge Distillation",
https://arxiv.org/abs/2310.03669 (softmax classifiers; the sigmoid form is this project's).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._validation import check_logit_pair, check_positive
from .dense_anchors import (
    check_dense_options,
    check_dense_target,
    dense_anchor_weights,
    dense_normalizer,
)
from .kd_sigmoid import weighted_binary_kl
from .perception import perception
from .registry import register_distill_loss

__all__ = ["weighted_class_moments", "luminet_sigmoid_loss", "LumiNetSigmoidLoss"]


def weighted_class_moments(
    logits: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class weighted mean and biased variance over the rows.

    ``mean_j = sum_i a_i z_ij / sum_i a_i`` and ``var_j = sum_i a_i (z_ij - mean_j)**2 /
    sum_i a_i``; with 0/1 weights these are the plain mean and biased variance of the selected
    rows. The sums are taken relative to the row of largest weight, so a column that is constant
    over the weighted rows gets exactly its value as mean and exactly 0 as variance. If every
    weight is 0 the mean is that row's value and the variance 0 (finite; the losses then weight
    every anchor by 0). Differentiable with respect to ``logits``; computed in its dtype.

    Args:
        logits: (N, K) logits.
        weights: (N,) non-negative row weights (no gradient is taken through them).

    Returns:
        ``(mean, var)``, each of shape (1, K), as :func:`~luminet.losses.perception.perception`
        takes them.
    """
    if logits.dim() != 2 or weights.shape != (logits.shape[0],):
        raise ValueError(
            f"expected (N, K) logits and (N,) weights; got {tuple(logits.shape)} and "
            f"{tuple(weights.shape)}"
        )
    w = weights.detach().to(logits.dtype).unsqueeze(1)
    total = w.sum().clamp_min(torch.finfo(logits.dtype).tiny)
    pivot = logits.detach()[weights.argmax()].unsqueeze(0)
    mean = pivot + (w * (logits - pivot)).sum(dim=0, keepdim=True) / total
    var = (w * (logits - mean).square()).sum(dim=0, keepdim=True) / total
    return mean, var


def luminet_sigmoid_loss(
    logits_student: torch.Tensor,
    logits_teacher: torch.Tensor,
    target: torch.Tensor | None = None,
    temperature: float = 1.0,
    alpha: float = 1.0,
    eps: float = 1e-5,
    anchors: str = "all",
    normalizer: str = "num_anchors",
    check_finite: bool = True,
) -> torch.Tensor:
    """Sigmoid LumiNet for dense heads, in float32 whatever the input dtype.

    With the anchor weights ``a_i`` of ``anchors`` (formulas in
    :mod:`luminet.losses.dense_anchors`), each class column of both logit matrices is perceived
    with the weighted statistics of :func:`weighted_class_moments`::

        h_ij = (z_ij - mean_j) / sqrt(var_j + eps)

    and the loss is ``alpha**2 * sum_i a_i * sum_j KL(Bernoulli(sigmoid(h^t_ij / T)) ||
    Bernoulli(sigmoid(h^s_ij / T))) / normalizer``. As in LumiNet (softmax form) there is no
    ``T**2`` factor. The same weights enter the statistics and the loss, so anchors that do not
    count in the loss do not shape the statistics either. The teacher is detached; the student's
    statistics stay differentiable. The loss is 0 when student and teacher are equal (or equal up
    to a per-class affine map with positive scale), and with a single weighted anchor (every
    column is then constant and perceived as 0).

    Args:
        logits_student: (N, K) student logits of N anchors (all levels and images concatenated),
            K sigmoid classes (no background column).
        logits_teacher: (N, K) teacher logits of the same anchors, in the same order.
        target: (N,) integer labels per anchor (``0..K-1`` foreground, ``K`` background, ``-1``
            ignored), or None: then no anchor is ignored, and ``anchors="foreground"`` and
            ``normalizer="num_foreground"`` are unavailable.
        temperature: T (> 0) dividing both perceived logits before the sigmoid.
        alpha: weight; the loss is multiplied by ``alpha ** 2``.
        eps: variance stabiliser of the perception (> 0).
        anchors: ``"all"``, ``"foreground"`` or ``"teacher_weighted"``: the weights ``a_i``.
        normalizer: ``"num_anchors"`` (``sum_i a_i``) or ``"num_foreground"``
            (``max(num_fg, 1)``).
        check_finite: raise on NaN/inf logits and on labels outside ``[-1, K]`` (device syncs).

    Returns:
        A float32 scalar.

    Raises:
        ValueError: bad shapes, dtypes, non-finite logits, bad labels, a needed target missing,
            a non-positive temperature or eps, a non-finite alpha, or an unknown option value.
    """
    check_positive("temperature", temperature)
    check_positive("eps", eps)
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number, got {alpha!r}")
    check_dense_options(anchors, normalizer)
    student, teacher = check_logit_pair(logits_student, logits_teacher, check_finite=check_finite)
    check_dense_target(target, student, anchors, normalizer, check_values=check_finite)
    weights = dense_anchor_weights(teacher, target, anchors)
    divisor = dense_normalizer(weights, target, student.shape[1], normalizer)
    h_student = perception(student, eps, *weighted_class_moments(student, weights))
    h_teacher = perception(teacher, eps, *weighted_class_moments(teacher, weights))
    return weighted_binary_kl(h_student, h_teacher, weights, divisor, temperature) * alpha**2


@register_distill_loss(
    "luminet_sigmoid",
    config={"ALPHA": 1.0, "EPS": 1e-5, "ANCHORS": "all", "NORMALIZER": "num_anchors"},
)
class LumiNetSigmoidLoss(nn.Module):
    """Module form of :func:`luminet_sigmoid_loss`, registered as ``"luminet_sigmoid"``."""

    def __init__(
        self,
        temperature: float = 1.0,
        alpha: float = 1.0,
        eps: float = 1e-5,
        anchors: str = "all",
        normalizer: str = "num_anchors",
        check_finite: bool = True,
    ):
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        if not math.isfinite(alpha):
            raise ValueError(f"alpha must be a finite number, got {alpha!r}")
        self.alpha = float(alpha)
        self.eps = check_positive("eps", eps)
        self.anchors, self.normalizer = check_dense_options(anchors, normalizer)
        self.check_finite = bool(check_finite)

    def forward(
        self,
        logits_student: torch.Tensor,
        logits_teacher: torch.Tensor,
        target: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return luminet_sigmoid_loss(
            logits_student,
            logits_teacher,
            target,
            temperature=self.temperature,
            alpha=self.alpha,
            eps=self.eps,
            anchors=self.anchors,
            normalizer=self.normalizer,
            check_finite=self.check_finite,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, alpha={self.alpha}, eps={self.eps}, "
            f"anchors={self.anchors!r}, normalizer={self.normalizer!r}"
        )
