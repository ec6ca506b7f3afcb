"""Build the student, the teacher(s) and the distiller from a config."""

from __future__ import annotations

import logging
from typing import Any

from fvcore.common.config import CfgNode
from torch import nn

from luminet.config.config import teacher_names
from luminet.config.defaults import LOSS_KEY_ALIASES, TRAINER_KEYS
from luminet.losses import build_distill_loss_from_config, distill_loss_arguments
from luminet.models import build_model, load_checkpoint

from .distiller import Distiller
from .teacher import TeacherEnsemble

__all__ = [
    "model_kwargs",
    "build_student",
    "build_teacher",
    "distill_loss_settings",
    "build_distiller",
]

logger = logging.getLogger(__name__)


def model_kwargs(in_channels: int) -> dict[str, Any]:
    """Extra model options for the input: ``in_channels`` only when not RGB."""
    return {} if int(in_channels) == 3 else {"in_channels": int(in_channels)}


def build_student(cfg: CfgNode, num_classes: int, in_channels: int = 3) -> nn.Module:
    """The student ``DISTILLER.STUDENT``, with ``DISTILLER.STUDENT_WEIGHTS`` if set."""
    student = build_model(cfg.DISTILLER.STUDENT, num_classes, **model_kwargs(in_channels))
    if cfg.DISTILLER.STUDENT_WEIGHTS:
        load_checkpoint(student, cfg.DISTILLER.STUDENT_WEIGHTS, strict=True)
        logger.info("student initialised from %s", cfg.DISTILLER.STUDENT_WEIGHTS)
    return student


def build_teacher(
    cfg: CfgNode, num_classes: int, in_channels: int = 3, load_weights: bool = True
) -> TeacherEnsemble | None:
    """The frozen teacher(s) of ``cfg``, or None when there is none.

    Args:
        cfg: the config.
        num_classes, in_channels: of the dataset.
        load_weights: load ``DISTILLER.TEACHER_WEIGHTS`` (required then); False builds the
            architectures only (config checks).

    Raises:
        ValueError: weights requested but not configured, or not fitting the architecture.
        KeyError: unknown teacher name.
    """
    names = teacher_names(cfg)
    if not names:
        return None
    paths = list(cfg.DISTILLER.TEACHER_WEIGHTS)
    if load_weights and len(paths) != len(names):
        raise ValueError(
            f"teacher(s) {names} need one checkpoint each in DISTILLER.TEACHER_WEIGHTS; got "
            f"{paths}. A randomly initialised teacher teaches nothing."
        )
    members = []
    for i, name in enumerate(names):
        model = build_model(name, num_classes, **model_kwargs(in_channels))
        if load_weights:
            load_checkpoint(model, paths[i], strict=True)
            logger.info("teacher %s loaded from %s", name, paths[i])
        members.append(model)
    return TeacherEnsemble(members)


def _section_rule() -> dict[str, Any]:
    """How a loss section maps to loss arguments: official aliases, trainer keys skipped."""
    return {"aliases": LOSS_KEY_ALIASES, "skip": TRAINER_KEYS}


def distill_loss_settings(cfg: CfgNode) -> tuple[str, dict[str, Any], float, float, float]:
    """``(name, loss_kwargs, ce_weight, distill_weight, warmup)`` for ``DISTILLER.TYPE``.

    The section ``<TYPE>`` holds the trainer's keys (``CE_WEIGHT``, ``WARMUP``, KD's
    ``KD_WEIGHT``; defaults 1, 0 and 1 when absent) and the loss's keyword arguments in upper
    case, with the official key ``T`` for ``temperature`` (see :mod:`luminet.losses.config`).

    Raises:
        ValueError: a section key that is not an argument of the loss (naming the key).
    """
    kind = str(cfg.DISTILLER.TYPE).lower()
    section = cfg[kind.upper()]
    ce_weight = float(section.get("CE_WEIGHT", 1.0))
    if kind == "none":
        return kind, {}, ce_weight, 0.0, 0.0
    args = distill_loss_arguments(kind, section, kind.upper(), **_section_rule())
    kwargs = {k: a.value for k, a in args.items()}
    return (
        kind,
        kwargs,
        ce_weight,
        float(section.get("KD_WEIGHT", 1.0)),
        float(section.get("WARMUP", 0)),
    )


def build_distiller(
    cfg: CfgNode, num_classes: int, in_channels: int = 3, load_teacher_weights: bool = True
) -> Distiller:
    """Student, teacher(s) and distillation loss of ``cfg`` in one :class:`Distiller`.

    For ``DISTILLER.TYPE none`` no teacher is built (it would not be used).
    """
    kind, kwargs, ce_weight, distill_weight, warmup = distill_loss_settings(cfg)
    student = build_student(cfg, num_classes, in_channels)
    if kind == "none":
        if teacher_names(cfg):
            logger.info("DISTILLER.TYPE none: the configured teacher is not used")
        return Distiller(student, None, None, ce_weight=ce_weight)
    loss = build_distill_loss_from_config(kind, cfg[kind.upper()], kind.upper(), **_section_rule())
    teacher = build_teacher(cfg, num_classes, in_channels, load_weights=load_teacher_weights)
    return Distiller(student, teacher, loss, ce_weight, distill_weight, warmup)
