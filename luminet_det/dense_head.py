"""The dense-head family's distillation samples: per-level class logits and per-anchor rows.

A dense detector (detectron2's ``DenseDetector``: ``RetinaNet``, ``FCOS``) scores every anchor (or
point) of every FPN level. Its head returns, per level, class logits of shape (N, A*K, H, W); the
detector's own loss transposes each level to (N, H*W*A, K) and concatenates the levels, so the
anchors of one image are ordered level by level, then row by row, column by column and anchor by
anchor. :func:`dense_logit_rows` produces exactly that order for both teacher and student.
"""

from __future__ import annotations

import logging

import torch
from detectron2.modeling.meta_arch.dense_detector import DenseDetector, permute_to_N_HWA_K
from detectron2.modeling.meta_arch.retinanet import RetinaNetHead

logger = logging.getLogger(__name__)

__all__ = ["check_dense_model", "dense_class_logits", "dense_logit_rows"]


def check_dense_model(model: torch.nn.Module, role: str) -> None:
    """Check that ``model`` is a detectron2 dense detector (``RetinaNet``, ``FCOS``, ...).

    Args:
        model: the detector.
        role: "teacher" or "student", for the message.

    Raises:
        ValueError: naming ``role`` and the model's type.
    """
    if not isinstance(model, DenseDetector):
        raise ValueError(
            f"the {role} must be a detectron2 dense detector (RetinaNet or FCOS, subclasses of "
            f"DenseDetector); got {type(model).__name__}"
        )


def dense_class_logits(
    model: DenseDetector, features: dict[str, torch.Tensor]
) -> list[torch.Tensor]:
    """Per-level class logits (N, A*K, H, W) of ``model``'s head on backbone ``features``.

    For a ``RetinaNetHead`` (and its subclass ``FCOSHead``) only the classification branch runs
    (``cls_score(cls_subnet(x))``, exactly what the head's forward computes for its first
    output); any other head runs whole and its first output is taken.

    Args:
        model: a dense detector.
        features: its backbone's output (a dict by feature name).

    Returns:
        One tensor per level of ``model.head_in_features``, in that order.
    """
    x = [features[f] for f in model.head_in_features]
    head = model.head
    if isinstance(head, RetinaNetHead):
        return [head.cls_score(head.cls_subnet(level)) for level in x]
    return list(head(x)[0])


def dense_logit_rows(level_logits: list[torch.Tensor], num_classes: int) -> torch.Tensor:
    """Per-level class logits (N, A*K, H, W) as rows (N*R, K) in the detector's anchor order.

    Args:
        level_logits: one tensor per FPN level.
        num_classes: K.

    Returns:
        Rows of image 0 (all levels), then image 1, ..., the order of ``torch.stack`` of the
        detector's per-image labels flattened.
    """
    per_image = torch.cat([permute_to_N_HWA_K(x, num_classes) for x in level_logits], dim=1)
    return per_image.reshape(-1, num_classes)
