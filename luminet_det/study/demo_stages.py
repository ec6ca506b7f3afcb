"""The detection demo's stages that the study reuses, imported in this one place.

Data, backbone pretraining, teacher, seeded student initialisation, the training loop and the
COCO evaluation are those of the demo (``luminet_det.demo.stages``), so the study's students are
trained exactly like the demo's.
"""

from __future__ import annotations

from pathlib import Path

from luminet_det.demo.stages import (
    STUDENT_BACKBONE,
    STUDENT_CONFIG,
    STUDENT_NAME,
    TEACHER_BACKBONE,
    TEACHER_CONFIG,
    TEACHER_NAME,
    Clock,
    evaluate,
    get_teacher,
    load_cfg,
    pretrained_backbone,
    student_init,
    train,
)

__all__ = [
    "REPO",
    "Clock",
    "TEACHER_CONFIG",
    "STUDENT_CONFIG",
    "TEACHER_BACKBONE",
    "STUDENT_BACKBONE",
    "TEACHER_NAME",
    "STUDENT_NAME",
    "evaluate",
    "get_teacher",
    "load_cfg",
    "pretrained_backbone",
    "student_init",
    "train",
]

REPO = Path(__file__).resolve().parents[2]
