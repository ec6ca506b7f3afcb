"""Build the student, the teacher(s) and the distiller from a config."""

from __future__ import annotations

import logging
from typing import Any

from fvcore.common.config import CfgNode
from torch import nn

from luminet.config.config import teacher_names
from luminet.losses import build_distill_loss
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


def distill_loss_settings(cfg: CfgNode) -> tuple[str, dict[str, Any], float, float, float]:
    """``(name, loss_kwargs, ce_weight, distill_weight, warmup)`` for ``DISTILLER.TYPE``."""
    kind = str(cfg.DISTILLER.TYPE).lower()
    if kind == "none":
        return kind, {}, float(cfg.NONE.CE_WEIGHT), 0.0, 0.0
    if kind == "kd":
        s = cfg.KD
        return kind, {"temperature": s.TEMPERATURE}, s.CE_WEIGHT, s.KD_WEIGHT, s.WARMUP
    if kind == "dkd":
        s = cfg.DKD
        kwargs = {"alpha": s.ALPHA, "beta": s.BETA, "temperature": s.T}
        return kind, kwargs, s.CE_WEIGHT, 1.0, s.WARMUP
    if kind == "luminet":
        s = cfg.LUMINET
        kwargs = {"temperature": s.T, "alpha": s.ALPHA, "eps": s.EPS}
        return kind, kwargs, s.CE_WEIGHT, 1.0, s.WARMUP
    # A loss registered by a third party: its section holds CE_WEIGHT, WARMUP and (lower-cased)
    # keyword arguments of the loss factory.
    s = cfg[kind.upper()]
    kwargs = {k.lower(): v for k, v in s.items() if k not in ("CE_WEIGHT", "WARMUP")}
    return kind, kwargs, float(s.CE_WEIGHT), 1.0, float(s.get("WARMUP", 0))


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
    teacher = build_teacher(cfg, num_classes, in_channels, load_weights=load_teacher_weights)
    loss = build_distill_loss(kind, **kwargs)
    return Distiller(student, teacher, loss, ce_weight, distill_weight, warmup)
