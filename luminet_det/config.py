"""Config keys of detection distillation (``MODEL.DISTILL.*``), the rule from them to the loss,
and teacher-config resolution."""

from __future__ import annotations

import logging
import os

from detectron2.config import CfgNode as CN
from torch import nn

from luminet.losses import (
    DISTILL_LOSS_REGISTRY,
    NO_DISTILLATION,
    SharedKey,
    build_distill_loss_from_config,
    distill_loss_config,
    get_distill_loss,
)

from .dataset_check import add_data_check_config

logger = logging.getLogger(__name__)

__all__ = [
    "add_distill_config",
    "add_distill_loss_sections",
    "build_distill_loss_from_cfg",
    "resolve_teacher_config_path",
    "ZOO_PREFIX",
    "DEFAULT_TEMPERATURE",
]

#: Prefix that names a config shipped inside detectron2's model zoo,
#: e.g. ``zoo://COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml``.
ZOO_PREFIX = "zoo://"

#: Default of ``MODEL.DISTILL.TEMPERATURE``.
DEFAULT_TEMPERATURE = 1.0


def add_distill_config(cfg: CN) -> CN:
    """Add every config key of this project to ``cfg`` (in place; calling it twice is harmless).

    Adds ``MODEL.DISTILL.*`` (with a section ``MODEL.DISTILL.<NAME>`` per registered loss, see
    :func:`add_distill_loss_sections`) and, when the MobileNetV2 backbone is available,
    ``MODEL.MOBILENETV2.*``.

    Args:
        cfg: a detectron2 config, e.g. from ``detectron2.config.get_cfg()``.

    Returns:
        The same ``cfg``.
    """
    if "DISTILL" not in cfg.MODEL:
        _C = cfg
        _C.MODEL.DISTILL = CN()
        # Teacher's own detectron2 config: a path (relative paths are resolved against the
        # config file that names them, then the working directory), or "zoo://<path>" for a
        # config of detectron2's model zoo. The teacher keeps its own pixel mean/std, input
        # format, backbone and heads; it sees the student's (resized) images.
        _C.MODEL.DISTILL.TEACHER_CONFIG = ""
        # Teacher checkpoint: a path or any URL detectron2's checkpointer reads
        # (e.g. detectron2://...). Loaded when the model is built; it must fit the teacher
        # config exactly (see luminet_det/teacher_weights.py for what is tolerated).
        _C.MODEL.DISTILL.TEACHER_WEIGHTS = ""
        # Registered distillation loss: "luminet", "kd", "dkd", any name registered with
        # luminet.losses.register_distill_loss, or "none" (student alone: no teacher is built).
        # The loss's keyword arguments come from its section MODEL.DISTILL.<NAME> (keys in
        # upper case) plus the shared TEMPERATURE.
        _C.MODEL.DISTILL.LOSS = "luminet"
        # Weight of the distillation term in the total loss.
        _C.MODEL.DISTILL.LOSS_WEIGHT = 1.0
        # Softmax temperature, passed to every loss that takes a "temperature" (luminet, kd,
        # dkd); an error for a loss that does not, unless left at the default.
        _C.MODEL.DISTILL.TEMPERATURE = DEFAULT_TEMPERATURE
        # Linear ramp of the distillation term over the first iterations:
        # weight * min(iter / WARMUP_ITERS, 1). 0 disables the ramp.
        _C.MODEL.DISTILL.WARMUP_ITERS = 0
        # Autocast of the teacher's forward: "" (whatever the caller runs under, e.g. the AMP
        # trainer's autocast), "fp32" (autocast off), "bf16" or "fp16".
        _C.MODEL.DISTILL.TEACHER_AUTOCAST = ""
        # Cascade students: one weight >= 0 per box stage (MODEL.ROI_BOX_CASCADE_HEAD.IOUS);
        # the distillation term is the weighted mean of the per-stage losses (weights are
        # normalised to sum 1; 0 skips a stage). Empty: all stages, equal weights.
        _C.MODEL.DISTILL.CASCADE_STAGE_WEIGHTS = []
        # Which stage of a Cascade teacher scores the ROIs of every student stage. -1: stage k
        # for student stage k (the teacher needs as many stages as the student); a teacher
        # with a single box head (Faster/Mask R-CNN) always uses it, and needs -1.
        _C.MODEL.DISTILL.CASCADE_TEACHER_STAGE = -1
        _C.MODEL.DISTILL.LUMINET = CN()
        # Variance stabiliser of LumiNet's per-class standardisation.
        _C.MODEL.DISTILL.LUMINET.EPS = 1e-5
        # Over which ROIs the per-class statistics are taken: "batch" (all sampled ROIs of the
        # process, the default, like the authors' per-GPU code), "image" (each image's sampled
        # ROIs separately; the loss is the ROI-weighted mean of the per-image losses) or
        # "global" (the sampled ROIs of all processes, with the exact gradient: one
        # all-reduce forward and one backward per step).
        _C.MODEL.DISTILL.LUMINET.STATS = "batch"
        # KD takes the shared TEMPERATURE only.
        _C.MODEL.DISTILL.KD = CN()
        _C.MODEL.DISTILL.DKD = CN()
        # DKD weights of the target-class (ALPHA) and non-target-class (BETA) terms.
        _C.MODEL.DISTILL.DKD.ALPHA = 1.0
        _C.MODEL.DISTILL.DKD.BETA = 0.25
    add_distill_loss_sections(cfg)

    add_data_check_config(cfg)  # DATALOADER.CHECK.*
    from . import backbones

    add_backbone_config = getattr(backbones, "add_mobilenetv2_config", None)
    if add_backbone_config is not None and "MOBILENETV2" not in cfg.MODEL:
        add_backbone_config(cfg)
    return cfg


def add_distill_loss_sections(cfg: CN) -> CN:
    """Add ``MODEL.DISTILL.<NAME>`` for every registered loss that has no section yet.

    The section holds the keys declared at registration
    (``register_distill_loss(name, factory, config={"GAMMA": 2.0})``), possibly none. Call
    :func:`add_distill_config` (which calls this) again after registering a loss if ``cfg``
    was made before.

    Raises:
        ValueError: when a loss's name collides with a ``MODEL.DISTILL`` key that is not a section.
    """
    d = cfg.MODEL.DISTILL
    for name in DISTILL_LOSS_REGISTRY.names():
        section = name.upper()
        if section not in d:
            d[section] = CN(distill_loss_config(name))
        elif not isinstance(d[section], CN):
            raise ValueError(
                f"distillation loss {name!r} would get section MODEL.DISTILL.{section}, which is "
                "already a key; register the loss under another name"
            )
    return cfg


def build_distill_loss_from_cfg(cfg: CN) -> nn.Module | None:
    """The distillation loss ``cfg.MODEL.DISTILL`` describes (None for "none").

    The one rule (see :mod:`luminet.losses.config`): loss ``name`` takes the keys of
    ``MODEL.DISTILL.<NAME>``, lower-cased, as keyword arguments, plus ``MODEL.DISTILL.TEMPERATURE``
    if it takes a ``temperature``; errors name the config key.

    Raises:
        KeyError: unknown ``MODEL.DISTILL.LOSS``.
        ValueError: bad loss arguments (naming their config keys), or a loss with trainable
            parameters.
    """
    d = cfg.MODEL.DISTILL
    name = str(d.LOSS).lower()
    if name == NO_DISTILLATION:
        return None
    try:
        get_distill_loss(name)
    except KeyError as e:
        raise KeyError(f"MODEL.DISTILL.LOSS: {e.args[0]}") from e
    section = name.upper()
    loss = build_distill_loss_from_config(
        name,
        d.get(section),
        f"MODEL.DISTILL.{section}",
        shared=[
            SharedKey(
                "temperature", "MODEL.DISTILL.TEMPERATURE", d.TEMPERATURE, DEFAULT_TEMPERATURE
            )
        ],
    )
    if not callable(loss):
        raise ValueError(f"distillation loss {d.LOSS!r} built a non-callable {loss!r}")
    if isinstance(loss, nn.Module) and any(p.requires_grad for p in loss.parameters()):
        raise ValueError(
            f"distillation loss {d.LOSS!r} has trainable parameters; DistillRCNN keeps the loss "
            "outside the student (checkpoints hold the student only), so they would never be "
            "saved. Put them in the student model instead."
        )
    return loss


def resolve_teacher_config_path(path: str, config_file: str | None = None) -> str:
    """Turn ``MODEL.DISTILL.TEACHER_CONFIG`` into a readable file path.

    Args:
        path: ``zoo://<model-zoo config>``, an absolute path, or a relative path.
        config_file: the config file that named ``path``; relative paths are tried against its
            directory first, then against the working directory.

    Returns:
        An existing file path.

    Raises:
        ValueError: when ``path`` is empty or names no existing file.
    """
    if not path:
        raise ValueError(
            "MODEL.DISTILL.TEACHER_CONFIG is empty: distillation needs the teacher's detectron2 "
            f"config (a path, or {ZOO_PREFIX}COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml); "
            'set MODEL.DISTILL.LOSS "none" to train the student alone'
        )
    if path.startswith(ZOO_PREFIX):
        from detectron2 import model_zoo

        rel = path[len(ZOO_PREFIX) :]
        try:
            resolved = model_zoo.get_config_file(rel)
        except RuntimeError as e:
            raise ValueError(
                f"MODEL.DISTILL.TEACHER_CONFIG {path!r}: {rel!r} is not a config of detectron2's "
                "model zoo"
            ) from e
        return resolved
    candidates = []
    if os.path.isabs(path):
        candidates.append(path)
    else:
        if config_file:
            candidates.append(os.path.join(os.path.dirname(os.path.abspath(config_file)), path))
        candidates.append(os.path.abspath(path))
    for c in candidates:
        if os.path.isfile(c):
            return c
    raise ValueError(
        f"MODEL.DISTILL.TEACHER_CONFIG {path!r} is not a file (looked at: {', '.join(candidates)})"
    )
