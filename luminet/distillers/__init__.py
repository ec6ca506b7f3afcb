"""Distillers: a student trained against frozen teacher(s) with a registered loss."""

from .build import (
    build_distiller,
    build_student,
    build_teacher,
    distill_loss_settings,
    model_kwargs,
)
from .distiller import Distiller, warmup_factor
from .teacher import TeacherEnsemble

__all__ = [
    "Distiller",
    "TeacherEnsemble",
    "warmup_factor",
    "build_distiller",
    "build_student",
    "build_teacher",
    "distill_loss_settings",
    "model_kwargs",
]
