"""Anchor/point layout of a dense detector, and the check that a teacher's matches a student's.

Dense distillation compares the teacher's and the student's class logits anchor by anchor, by
position in the flattened (levels, rows, columns, anchors) order. That is only meaningful if both
detectors put the same anchor at the same position: the same detector family, FPN levels, strides,
anchors per location (sizes x aspect ratios) and anchor offset, the same classes, and the same
padding of the input (so every level has the same height and width). :func:`check_same_dense_layout`
checks all of these before the first step and names the config keys of what differs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from detectron2.modeling.meta_arch.dense_detector import DenseDetector
from detectron2.modeling.meta_arch.fcos import FCOS
from detectron2.modeling.meta_arch.retinanet import RetinaNet

from .dense_head import check_dense_model

logger = logging.getLogger(__name__)

__all__ = ["DenseLayout", "dense_layout", "check_same_dense_layout", "dense_family"]

# Where each field is set, per family: yacs keys for RetinaNet, LazyConfig fields for FCOS
# (detectron2 has no yacs keys for FCOS).
_KEYS = {
    "RetinaNet": {
        "num_classes": "MODEL.RETINANET.NUM_CLASSES",
        "in_features": "MODEL.RETINANET.IN_FEATURES",
        "strides": "the backbone (MODEL.BACKBONE.NAME, MODEL.FPN.IN_FEATURES, "
        "MODEL.RESNETS.OUT_FEATURES)",
        "anchors_per_location": "MODEL.ANCHOR_GENERATOR.SIZES x "
        "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS",
        "cell_anchors": "MODEL.ANCHOR_GENERATOR.SIZES, MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS",
        "offset": "MODEL.ANCHOR_GENERATOR.OFFSET",
        "padding": "the backbone's size_divisibility / padding_constraints",
    },
    "FCOS": {
        "num_classes": "model.num_classes",
        "in_features": "model.head_in_features",
        "strides": "model.backbone",
        "anchors_per_location": "one point per location (FCOS)",
        "cell_anchors": "the level strides (FCOS points are boxes of the stride's size)",
        "offset": "0.5 (FCOS)",
        "padding": "the backbone's size_divisibility / padding_constraints",
    },
}

_NAMES = {
    "num_classes": "number of classes",
    "in_features": "FPN levels",
    "strides": "strides of the FPN levels",
    "anchors_per_location": "anchors per location (sizes x aspect ratios)",
    "cell_anchors": "anchor shapes (sizes and aspect ratios) per level",
    "offset": "anchor offset",
    "padding": "input padding",
}


def dense_family(model: DenseDetector) -> str:
    """``"FCOS"``, ``"RetinaNet"``, or the type's name for another dense detector."""
    if isinstance(model, FCOS):
        return "FCOS"
    if isinstance(model, RetinaNet):
        return "RetinaNet"
    return type(model).__name__


@dataclass(frozen=True)
class DenseLayout:
    """Everything that decides which anchor sits at which position of a dense head's output."""

    family: str
    num_classes: int
    in_features: tuple[str, ...]
    strides: tuple[int, ...]
    anchors_per_location: tuple[int, ...]
    cell_anchors: tuple[tuple[tuple[float, ...], ...], ...]
    offset: float
    padding: tuple

    def differences(self, other: DenseLayout) -> list[str]:
        """Names of the fields (after ``family``) that differ, in check order."""
        return [f for f in _NAMES if getattr(self, f) != getattr(other, f)]


def dense_layout(model: DenseDetector) -> DenseLayout:
    """The :class:`DenseLayout` of a built dense detector.

    Raises:
        ValueError: if ``model`` is not a dense detector.
    """
    check_dense_model(model, "model")
    shapes = model.backbone.output_shape()
    gen = model.anchor_generator
    constraints = getattr(model.backbone, "padding_constraints", None) or {}
    return DenseLayout(
        family=dense_family(model),
        num_classes=int(model.num_classes),
        in_features=tuple(model.head_in_features),
        strides=tuple(int(shapes[f].stride) for f in model.head_in_features),
        anchors_per_location=tuple(int(n) for n in gen.num_cell_anchors),
        cell_anchors=tuple(tuple(map(tuple, a.tolist())) for a in gen.cell_anchors),
        offset=float(gen.offset),
        padding=(int(model.backbone.size_divisibility), tuple(sorted(constraints.items()))),
    )


def check_same_dense_layout(student: DenseDetector, teacher: DenseDetector) -> None:
    """Raise unless ``teacher`` scores the same anchors, in the same order, as ``student``.

    Checks, in order: the family (RetinaNet or FCOS), the number of classes, the FPN levels,
    their strides, the anchors per location, their sizes and aspect ratios, the anchor offset and
    the input padding.

    Raises:
        ValueError: naming the first field that differs, both values and its config key(s).
    """
    check_dense_model(student, "student")
    check_dense_model(teacher, "teacher")
    s, t = dense_layout(student), dense_layout(teacher)
    if s.family != t.family:
        raise ValueError(
            f"teacher and student must be the same dense detector family; the teacher is a "
            f"{t.family} (META_ARCHITECTURE of MODEL.DISTILL.TEACHER_CONFIG), the student a "
            f"{s.family}"
        )
    diff = s.differences(t)
    if diff:
        field = diff[0]
        keys = _KEYS.get(s.family, {}).get(field, field)
        raise ValueError(
            f"teacher and student must have the same anchor layout; their {_NAMES[field]} "
            f"differ: teacher {getattr(t, field)}, student {getattr(s, field)} (set by {keys}; "
            f"the teacher's in MODEL.DISTILL.TEACHER_CONFIG)"
            + (f"; also different: {', '.join(_NAMES[f] for f in diff[1:])}" if diff[1:] else "")
        )
