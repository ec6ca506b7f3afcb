"""Knowledge distillation for sigmoid classifiers (dense detection heads): per-class binary KL.

A dense head (RetinaNet, FCOS) gives each anchor K independent class probabilities
``sigmoid(z_ij)``, not a softmax. Hinton's KD carries over class by class: each anchor-class pair is
a Bernoulli variable, and the student matches the teacher's temperature-softened Bernoulli.

Papers: Hinton et al., "Distilling the Knowledge in a Neural Network",
https://arxiv.org/abs/1503.02531; Lin et al., "Focal Loss for Dense Object Detection" (the sigmoid
head and the foreground normaliser), https://arxiv.org/abs/1708.02002
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._validation import check_logit_pair, check_positive
from .dense_anchors import (
    check_dense_options,
    check_dense_target,
    dense_anchor_weights,
    dense_normalizer,
)
from .registry import register_distill_loss

__all__ = ["binary_kl_with_logits", "weighted_binary_kl", "kd_sigmoid_loss", "KDSigmoidLoss"]


def binary_kl_with_logits(
    logits_student: torch.Tensor, logits_teacher: torch.Tensor
) -> torch.Tensor:
    """Elementwise ``KL(Bernoulli(sigmoid(t)) || Bernoulli(sigmoid(s)))`` from logits.

    With ``p = sigmoid(t)``::

        KL = p * (log sigmoid(t) - log sigmoid(s)) + (1 - p) * (log sigmoid(-t) - log sigmoid(-s))

    Every log-probability comes from ``logsigmoid``, so the result stays accurate (and exactly 0
    where ``s == t``) for logits of any size, where ``log(sigmoid(x))`` would underflow. Its
    gradient with respect to ``s`` is ``sigmoid(s) - sigmoid(t)``. Computed in the input dtype;
    nothing is detached.

    Args:
        logits_student: student logits ``s``, any shape.
        logits_teacher: teacher logits ``t``, same shape.

    Returns:
        A tensor of that shape, >= 0 up to rounding.
    """
    p_teacher = torch.sigmoid(logits_teacher)
    q_teacher = torch.sigmoid(-logits_teacher)  # 1 - p without cancellation
    positive = F.logsigmoid(logits_teacher) - F.logsigmoid(logits_student)
    negative = F.logsigmoid(-logits_teacher) - F.logsigmoid(-logits_student)
    return p_teacher * positive + q_teacher * negative


def weighted_binary_kl(
    logits_student: torch.Tensor,
    logits_teacher: torch.Tensor,
    weights: torch.Tensor,
    normalizer: torch.Tensor | float,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``sum_i a_i * sum_j KL(sigmoid(t_ij / T) || sigmoid(s_ij / T)) / normalizer``.

    The reduction shared by :func:`kd_sigmoid_loss` and
    :func:`~luminet.losses.luminet_sigmoid.luminet_sigmoid_loss` (the binary KL of
    :func:`binary_kl_with_logits` summed over the K classes of each anchor, weighted over anchors).
    No checks, no dtype change, nothing detached, no ``T**2``.

    Args:
        logits_student: (N, K) student logits (or perceived logits).
        logits_teacher: (N, K) teacher logits (or perceived logits).
        weights: (N,) per-anchor weights ``a_i``.
        normalizer: positive divisor (see :func:`~luminet.losses.dense_anchors.dense_normalizer`).
        temperature: T.

    Returns:
        A 0-d tensor.
    """
    per_anchor = binary_kl_with_logits(
        logits_student / temperature, logits_teacher / temperature
    ).sum(dim=1)
    return (weights * per_anchor).sum() / normalizer


def kd_sigmoid_loss(
    logits_student: torch.Tensor,
    logits_teacher: torch.Tensor,
    target: torch.Tensor | None = None,
    temperature: float = 1.0,
    anchors: str = "all",
    normalizer: str = "num_anchors",
    check_finite: bool = True,
) -> torch.Tensor:
    """Sigmoid KD for dense heads, in float32 whatever the input dtype.

    ``T**2 * sum_i a_i * sum_j KL(Bernoulli(sigmoid(t_ij / T)) || Bernoulli(sigmoid(s_ij / T)))
    / normalizer``, where ``i`` runs over the anchors (or points), ``j`` over the K classes, the
    weights ``a_i`` follow ``anchors`` and the divisor follows ``normalizer`` (formulas in
    :mod:`luminet.losses.dense_anchors`). ``T**2`` keeps the gradient's size independent of T,
    as in Hinton's KD. The teacher is detached; the loss is 0 when student and teacher logits
    are equal.

    Args:
        logits_student: (N, K) student logits of N anchors (all levels and images concatenated),
            K sigmoid classes (no background column).
        logits_teacher: (N, K) teacher logits of the same anchors, in the same order.
        target: (N,) integer labels per anchor (``0..K-1`` foreground, ``K`` background, ``-1``
            ignored), or None: then no anchor is ignored, and ``anchors="foreground"`` and
            ``normalizer="num_foreground"`` are unavailable.
        temperature: T (> 0) dividing both logits before the sigmoid.
        anchors: ``"all"``, ``"foreground"`` or ``"teacher_weighted"``: the weights ``a_i``.
        normalizer: ``"num_anchors"`` (``sum_i a_i``) or ``"num_foreground"``
            (``max(num_fg, 1)``).
        check_finite: raise on NaN/inf logits and on labels outside ``[-1, K]`` (device syncs).

    Returns:
        A float32 scalar.

    Raises:
        ValueError: bad shapes, dtypes, non-finite logits, bad labels, a needed target missing,
            a non-positive temperature, or an unknown option value.
    """
    check_positive("temperature", temperature)
    check_dense_options(anchors, normalizer)
    student, teacher = check_logit_pair(logits_student, logits_teacher, check_finite=check_finite)
    check_dense_target(target, student, anchors, normalizer, check_values=check_finite)
    weights = dense_anchor_weights(teacher, target, anchors)
    divisor = dense_normalizer(weights, target, student.shape[1], normalizer)
    return weighted_binary_kl(student, teacher, weights, divisor, temperature) * temperature**2


@register_distill_loss("kd_sigmoid", config={"ANCHORS": "all", "NORMALIZER": "num_anchors"})
class KDSigmoidLoss(nn.Module):
    """Module form of :func:`kd_sigmoid_loss`, registered as ``"kd_sigmoid"``."""

    def __init__(
        self,
        temperature: float = 1.0,
        anchors: str = "all",
        normalizer: str = "num_anchors",
        check_finite: bool = True,
    ):
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        self.anchors, self.normalizer = check_dense_options(anchors, normalizer)
        self.check_finite = bool(check_finite)

    def forward(
        self,
        logits_student: torch.Tensor,
        logits_teacher: torch.Tensor,
        target: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return kd_sigmoid_loss(
            logits_student,
            logits_teacher,
            target,
            temperature=self.temperature,
            anchors=self.anchors,
            normalizer=self.normalizer,
            check_finite=self.check_finite,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, anchors={self.anchors!r}, "
            f"normalizer={self.normalizer!r}"
        )
