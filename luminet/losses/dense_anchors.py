"""Which anchors of a dense head a sigmoid distillation loss uses, and how it is normalised.

A dense head (RetinaNet, FCOS) scores every anchor (or point) of every feature level with K
independent sigmoids. Its labels per anchor are ``0..K-1`` (foreground, the matched class), ``K``
(background) and ``-1`` (ignored, e.g. RetinaNet's IoU band between the two matcher thresholds).
Nearly all anchors are background, so the losses of :mod:`.kd_sigmoid` and
:mod:`.luminet_sigmoid` offer two orthogonal options:

``anchors`` -- the per-anchor weight ``a_i`` with which anchor ``i`` enters the statistics and the
loss (ignored anchors always have ``a_i = 0``):

* ``"all"``: ``a_i = 1`` for every anchor not ignored.
* ``"foreground"``: ``a_i = 1`` where ``0 <= y_i < K`` (the anchors the detector's own matcher
  assigns to an object), else 0.
* ``"teacher_weighted"``: ``a_i = max_j sigmoid(t_ij)`` for every anchor not ignored: the
  teacher's probability that the anchor holds its most likely class (raw teacher logits, no
  temperature), so that anchors where the teacher sees nothing count little.

``normalizer`` -- what the weighted sum ``S = sum_i a_i * l_i`` of per-anchor losses is divided by:

* ``"num_anchors"``: ``sum_i a_i`` (a weighted mean over anchors; the plain mean for ``"all"``).
* ``"num_foreground"``: ``max(num_fg, 1)`` with ``num_fg = #{i : 0 <= y_i < K}``, as detectron2's
  focal loss for RetinaNet and FCOS.
"""

from __future__ import annotations

import torch

__all__ = [
    "DENSE_ANCHOR_CHOICES",
    "DENSE_NORMALIZER_CHOICES",
    "check_dense_options",
    "check_dense_target",
    "dense_anchor_weights",
    "dense_normalizer",
]

#: Values of the ``anchors`` option of the sigmoid losses.
DENSE_ANCHOR_CHOICES = ("all", "foreground", "teacher_weighted")
#: Values of the ``normalizer`` option of the sigmoid losses.
DENSE_NORMALIZER_CHOICES = ("num_anchors", "num_foreground")


def check_dense_options(anchors: str, normalizer: str) -> tuple[str, str]:
    """Validate the ``anchors`` and ``normalizer`` options.

    Args:
        anchors: one of :data:`DENSE_ANCHOR_CHOICES`.
        normalizer: one of :data:`DENSE_NORMALIZER_CHOICES`.

    Returns:
        ``(anchors, normalizer)`` unchanged.

    Raises:
        ValueError: when either value is not one of its choices.
    """
    if anchors not in DENSE_ANCHOR_CHOICES:
        raise ValueError(f"anchors must be one of {DENSE_ANCHOR_CHOICES}; got {anchors!r}")
    if normalizer not in DENSE_NORMALIZER_CHOICES:
        raise ValueError(
            f"normalizer must be one of {DENSE_NORMALIZER_CHOICES}; got {normalizer!r}"
        )
    return anchors, normalizer


def check_dense_target(
    target: torch.Tensor | None,
    logits: torch.Tensor,
    anchors: str,
    normalizer: str,
    *,
    check_values: bool = True,
) -> None:
    """Check the per-anchor labels given to a sigmoid distillation loss.

    Args:
        target: (N,) integer labels: ``0..K-1`` foreground, ``K`` background, ``-1`` ignored; or
            None when neither option needs labels (then every anchor is used).
        logits: the (N, K) logits the labels belong to.
        anchors: the ``anchors`` option (``"foreground"`` needs a target).
        normalizer: the ``normalizer`` option (``"num_foreground"`` needs a target).
        check_values: also check that every label lies in ``[-1, K]`` (one device sync).

    Raises:
        ValueError: a needed target is None; the target is not an integer tensor of shape (N,)
            on the logits' device; or a label lies outside ``[-1, K]``.
    """
    n, k = logits.shape
    if target is None:
        for option, value, needs in (
            ("anchors", anchors, "foreground"),
            ("normalizer", normalizer, "num_foreground"),
        ):
            if value == needs:
                raise ValueError(
                    f"{option}={value!r} needs the per-anchor labels; got target=None (pass the "
                    f"(N,) labels: 0..K-1 foreground, K background, -1 ignored)"
                )
        return
    if not isinstance(target, torch.Tensor):
        raise ValueError(f"target must be a torch.Tensor or None; got {type(target).__name__}")
    if (
        target.shape != (n,)
        or target.dtype.is_floating_point
        or target.dtype.is_complex
        or target.dtype == torch.bool
    ):
        raise ValueError(
            f"target must be an integer tensor of shape ({n},) (one label per anchor); got "
            f"{target.dtype} of shape {tuple(target.shape)} for logits of shape {(n, k)}"
        )
    if target.device != logits.device:
        raise ValueError(f"target is on {target.device} but the logits are on {logits.device}")
    if check_values and bool(((target < -1) | (target > k)).any()):
        raise ValueError(
            f"target labels must lie in [-1, {k}] (-1 ignored, 0..{k - 1} foreground, {k} "
            f"background); got min {int(target.min())}, max {int(target.max())}"
        )


def dense_anchor_weights(
    logits_teacher: torch.Tensor, target: torch.Tensor | None, anchors: str = "all"
) -> torch.Tensor:
    """Per-anchor weights ``a_i`` of the ``anchors`` option (see the module docstring).

    Args:
        logits_teacher: (N, K) teacher logits (used by ``"teacher_weighted"``; detached here).
        target: (N,) labels (``-1`` ignored, ``K`` background) or None (no anchor ignored).
        anchors: one of :data:`DENSE_ANCHOR_CHOICES`.

    Returns:
        (N,) non-negative weights, without gradient, in the dtype of ``logits_teacher``.

    Raises:
        ValueError: unknown ``anchors``, or ``"foreground"`` without a target.
    """
    if anchors not in DENSE_ANCHOR_CHOICES:
        raise ValueError(f"anchors must be one of {DENSE_ANCHOR_CHOICES}; got {anchors!r}")
    teacher = logits_teacher.detach()
    n, k = teacher.shape
    if target is None:
        if anchors == "foreground":
            raise ValueError("anchors='foreground' needs the per-anchor labels; got target=None")
        selected = torch.ones(n, dtype=teacher.dtype, device=teacher.device)
    elif anchors == "foreground":
        selected = ((target >= 0) & (target < k)).to(teacher.dtype)
    else:
        selected = (target >= 0).to(teacher.dtype)
    if anchors == "teacher_weighted":
        return selected * torch.sigmoid(teacher).amax(dim=1)
    return selected


def dense_normalizer(
    weights: torch.Tensor,
    target: torch.Tensor | None,
    num_classes: int,
    normalizer: str = "num_anchors",
) -> torch.Tensor:
    """The divisor of the weighted sum of per-anchor losses (see the module docstring).

    Args:
        weights: (N,) per-anchor weights from :func:`dense_anchor_weights`.
        target: (N,) labels, or None (only with ``"num_anchors"``).
        num_classes: K, the number of sigmoid classes (label K is background).
        normalizer: one of :data:`DENSE_NORMALIZER_CHOICES`.

    Returns:
        A positive 0-d tensor in the dtype of ``weights`` (no device sync). With
        ``"num_anchors"`` and all weights zero it is the smallest positive normal number, so
        that the (zero) sum divided by it stays 0.

    Raises:
        ValueError: unknown ``normalizer``, or ``"num_foreground"`` without a target.
    """
    if normalizer not in DENSE_NORMALIZER_CHOICES:
        raise ValueError(
            f"normalizer must be one of {DENSE_NORMALIZER_CHOICES}; got {normalizer!r}"
        )
    if normalizer == "num_anchors":
        return weights.sum().clamp_min(torch.finfo(weights.dtype).tiny)
    if target is None:
        raise ValueError("normalizer='num_foreground' needs the per-anchor labels; got target=None")
    num_fg = ((target >= 0) & (target < num_classes)).sum()
    return num_fg.clamp_min(1).to(weights.dtype)
