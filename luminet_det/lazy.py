"""DistillRCNN from LazyConfig (Python) configs, in detectron2's ``LazyCall`` style.

A LazyConfig leaf distils a model-zoo student from a teacher given as its own LazyConfig file
and checkpoint::

    from detectron2.config import LazyCall as L
    from luminet_det.lazy import distill_rcnn_from_student, lazy_teacher

    model = L(distill_rcnn_from_student)(
        student=<the student's model node, e.g. model_zoo.get_config(...).model>,
        teacher=L(lazy_teacher)(config_file="teacher.py", weights="teacher.pth"),
        loss="luminet",
        loss_args={"temperature": 4.0},
    )

``instantiate`` builds the student node first (a stock ``GeneralizedRCNN``), then
:func:`distill_rcnn_from_student` moves its backbone, proposal generator and ROI heads into a
:class:`~luminet_det.distill_rcnn.DistillRCNN` (no copy, no new parameter), so the student's
``state_dict`` keys are those of the stock model and checkpoints load into it strictly.

The teacher is loaded by :func:`lazy_teacher` with the same key-by-key weight checks as the
yacs path (:func:`~luminet_det.teacher_weights.load_teacher_weights`). Every argument is
checked before the first step, and errors name the LazyConfig key (``model.teacher.weights``,
``model.loss_args``, ...).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from detectron2.modeling import GeneralizedRCNN
from torch import nn

from luminet.losses import NO_DISTILLATION, build_distill_loss, get_distill_loss

from .distill_rcnn import DistillRCNN
from .teacher import Teacher

logger = logging.getLogger(__name__)

__all__ = [
    "LAZY_ZOO_PREFIX",
    "resolve_lazy_config_path",
    "lazy_teacher",
    "build_lazy_loss",
    "distill_rcnn_from_student",
]

#: Prefix of a teacher config taken from detectron2's model zoo (``zoo://common/...py``).
LAZY_ZOO_PREFIX = "zoo://"


def resolve_lazy_config_path(path: str, key: str = "model.teacher.config_file") -> str:
    """An existing LazyConfig file for ``path`` (``zoo://<model-zoo config>`` or a file path).

    Raises:
        ValueError: an empty path, or one that names no file; the message names ``key``.
    """
    if not path:
        raise ValueError(f"{key} is empty: give the teacher's LazyConfig .py file")
    if path.startswith(LAZY_ZOO_PREFIX):
        from detectron2 import model_zoo

        rel = path[len(LAZY_ZOO_PREFIX) :]
        try:
            return model_zoo.get_config_file(rel)
        except RuntimeError as e:
            raise ValueError(f"{key} {path!r}: not a config of detectron2's model zoo") from e
    if not os.path.isfile(path):
        raise ValueError(f"{key} {path!r} is not a file (looked at {os.path.abspath(path)})")
    return path


def lazy_teacher(
    config_file: str,
    weights: str,
    *,
    overrides: Sequence[str] = (),
    image_format: str | None = None,
    autocast: str = "",
) -> Teacher:
    """The frozen teacher described by a LazyConfig file's ``model`` node, with ``weights``.

    Args:
        config_file: the teacher's LazyConfig ``.py`` (or ``.yaml`` dumped by
            ``LazyConfig.save``), or ``zoo://<path>`` into detectron2's model zoo.
        weights: its checkpoint (path or ``detectron2://`` URL), checked key by key.
        overrides: ``key=value`` overrides of the teacher's config (``LazyConfig.apply_overrides``).
        image_format: the channel order of the student's images (the student's
            ``input_format``); None: the teacher's own.
        autocast: one of :data:`luminet_det.teacher.TEACHER_AUTOCAST_CHOICES`.

    Returns:
        The teacher, on the CPU (DistillRCNN moves it with the student).

    Raises:
        ValueError: a missing or unreadable config, a distilling teacher, bad settings, or
            weights that are missing, unreadable or do not fit.
    """
    from detectron2.config import LazyConfig, instantiate

    path = resolve_lazy_config_path(config_file)
    try:
        cfg = LazyConfig.load(path)
        cfg = LazyConfig.apply_overrides(cfg, list(overrides))
    except Exception as e:  # syntax errors, missing imports, bad overrides
        raise ValueError(
            f"model.teacher.config_file {config_file!r} could not be read as a LazyConfig: "
            f"{type(e).__name__}: {e}"
        ) from e
    if "model" not in cfg:
        raise ValueError(f"model.teacher.config_file {config_file!r} has no 'model' node")
    model = instantiate(cfg.model)
    if isinstance(model, DistillRCNN):
        raise ValueError(
            f"model.teacher.config_file {config_file!r} describes a DistillRCNN; the teacher "
            "must be a plain detector (e.g. GeneralizedRCNN), not a distilling one"
        )
    return Teacher.from_model(
        model,
        weights,
        image_format=image_format,
        autocast=autocast,
        weights_key="model.teacher.weights",
        config_name=config_file,
    )


def build_lazy_loss(loss: str | nn.Module | None, loss_args: Mapping[str, Any]) -> nn.Module | None:
    """The distillation loss of a LazyConfig: a registered name and its keyword arguments, or a
    built loss module (then ``loss_args`` must be empty).

    Returns:
        The loss, or None for ``"none"``.

    Raises:
        ValueError: an unknown name, arguments the loss does not take or rejects, or a loss
            with trainable parameters; messages name ``model.loss`` / ``model.loss_args``.
    """
    if loss is None or isinstance(loss, str):
        name = NO_DISTILLATION if loss is None else loss.lower()
        if name == NO_DISTILLATION:
            if loss_args:
                raise ValueError(f"model.loss_args {dict(loss_args)} given with model.loss none")
            return None
        try:
            get_distill_loss(name)
        except KeyError as e:
            raise ValueError(f"model.loss: {e.args[0]}") from None
        try:
            built = build_distill_loss(name, **dict(loss_args))
        except (TypeError, ValueError) as e:
            raise ValueError(f"model.loss_args of loss {name!r}: {e}") from e
    elif callable(loss):
        if loss_args:
            raise ValueError("model.loss_args must be empty when model.loss is a built loss")
        built = loss
    else:
        raise ValueError(f"model.loss must be a loss name or a loss module; got {loss!r}")
    if isinstance(built, nn.Module) and any(p.requires_grad for p in built.parameters()):
        raise ValueError(
            "model.loss has trainable parameters; DistillRCNN keeps the loss outside the "
            "student (checkpoints hold the student only), so they would never be saved"
        )
    return built


def distill_rcnn_from_student(
    student: GeneralizedRCNN,
    teacher: Teacher | None,
    *,
    loss: str | nn.Module | None = "luminet",
    loss_args: Mapping[str, Any] | None = None,
    loss_weight: float = 1.0,
    warmup_iters: int = 0,
    cascade_stage_weights: Sequence[float] = (),
    cascade_teacher_stage: int = -1,
) -> DistillRCNN:
    """A :class:`DistillRCNN` whose student is the built ``student``'s own modules.

    Args:
        student: a built stock ``GeneralizedRCNN`` (``instantiate`` builds its LazyConfig node);
            its backbone, proposal generator and ROI heads are reused, not copied.
        teacher: the frozen teacher (e.g. from :func:`lazy_teacher`); None with ``loss="none"``.
        loss: a registered loss name (``"luminet"``, ``"kd"``, ``"dkd"``, ``"none"``, ...) or a
            built loss.
        loss_args: keyword arguments of the named loss (e.g. ``{"temperature": 4.0}``).
        loss_weight, warmup_iters, cascade_stage_weights, cascade_teacher_stage: as for
            :class:`DistillRCNN` (``MODEL.DISTILL.LOSS_WEIGHT`` etc. of the yacs path).

    Returns:
        The distilling model; its ``state_dict`` has the stock student's keys.

    Raises:
        ValueError: a student that is not a ``GeneralizedRCNN``, a teacher that is not a
            :class:`Teacher`, a teacher without a loss or the reverse, bad loss arguments, or
            anything :class:`DistillRCNN` refuses.
    """
    if not isinstance(student, GeneralizedRCNN) or isinstance(student, DistillRCNN):
        raise ValueError(
            "model.student must be a stock GeneralizedRCNN (or its LazyConfig node); got "
            f"{type(student).__name__}"
        )
    if teacher is not None and not isinstance(teacher, Teacher):
        raise ValueError(
            "model.teacher must be a luminet_det.Teacher (e.g. L(lazy_teacher)(config_file=..., "
            f"weights=...)); got {type(teacher).__name__}"
        )
    built_loss = build_lazy_loss(loss, loss_args or {})
    if (teacher is None) != (built_loss is None):
        raise ValueError(
            "model.teacher and model.loss go together: give both, or teacher=None with "
            f"loss='none'; got teacher={type(teacher).__name__}, loss={loss!r}"
        )
    if isinstance(loss, str):
        loss_name = loss.lower()
    elif built_loss is None:
        loss_name = NO_DISTILLATION
    else:
        loss_name = "distill"
    try:
        model = DistillRCNN(
            backbone=student.backbone,
            proposal_generator=student.proposal_generator,
            roi_heads=student.roi_heads,
            pixel_mean=student.pixel_mean.flatten().tolist(),
            pixel_std=student.pixel_std.flatten().tolist(),
            input_format=student.input_format,
            vis_period=student.vis_period,
            teacher=teacher,
            distill_loss=built_loss,
            loss_name=loss_name,
            loss_weight=loss_weight,
            warmup_iters=warmup_iters,
            cascade_stage_weights=tuple(cascade_stage_weights),
            cascade_teacher_stage=cascade_teacher_stage,
        )
    except ValueError as e:  # the yacs messages name MODEL.DISTILL.* keys; say which node
        raise ValueError(f"model (distill_rcnn_from_student): {e}") from e
    return model.to(student.device)
