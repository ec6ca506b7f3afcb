"""Config keys of detection distillation (``MODEL.DISTILL.*``) and teacher-config resolution."""

from __future__ import annotations

import json
import logging
import os

from detectron2.config import CfgNode as CN

from .dataset_check import add_data_check_config

logger = logging.getLogger(__name__)

__all__ = ["add_distill_config", "resolve_teacher_config_path", "distill_loss_kwargs", "ZOO_PREFIX"]

#: Prefix that names a config shipped inside detectron2's model zoo,
#: e.g. ``zoo://COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml``.
ZOO_PREFIX = "zoo://"

TEACHER_AUTOCAST_CHOICES = ("", "fp32", "bf16", "fp16")


def add_distill_config(cfg: CN) -> CN:
    """Add every config key of this project to ``cfg`` (in place; calling it twice is harmless).

    Adds ``MODEL.DISTILL.*`` and, when the MobileNetV2 backbone is available,
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
        # (e.g. detectron2://...). Loaded when the model is built and checked against the config.
        _C.MODEL.DISTILL.TEACHER_WEIGHTS = ""
        # Registered distillation loss: "luminet", "kd", "dkd", any name registered with
        # luminet.losses.register_distill_loss, or "none" (student alone: no teacher is built).
        _C.MODEL.DISTILL.LOSS = "luminet"
        # Weight of the distillation term in the total loss.
        _C.MODEL.DISTILL.LOSS_WEIGHT = 1.0
        # Softmax temperature of the distillation loss (luminet, kd, dkd).
        _C.MODEL.DISTILL.TEMPERATURE = 1.0
        # Linear ramp of the distillation term over the first iterations:
        # weight * min(iter / WARMUP_ITERS, 1). 0 disables the ramp.
        _C.MODEL.DISTILL.WARMUP_ITERS = 0
        _C.MODEL.DISTILL.LUMINET = CN()
        # Variance stabiliser of LumiNet's per-class standardisation.
        _C.MODEL.DISTILL.LUMINET.EPS = 1e-5
        # Over which ROIs the per-class statistics are taken: "batch" (all sampled ROIs of the
        # process, the default) or "image" (each image's sampled ROIs separately; the loss is
        # then the ROI-weighted mean of the per-image losses).
        _C.MODEL.DISTILL.LUMINET.STATS = "batch"
        _C.MODEL.DISTILL.DKD = CN()
        # DKD weights of the target-class (ALPHA) and non-target-class (BETA) terms.
        _C.MODEL.DISTILL.DKD.ALPHA = 1.0
        _C.MODEL.DISTILL.DKD.BETA = 0.25
        # Extra keyword arguments of the loss factory, as a JSON object string, e.g.
        # '{"margin": 0.5}'. Needed for losses registered by name outside this project;
        # for luminet/kd/dkd its entries override the keys above.
        _C.MODEL.DISTILL.LOSS_KWARGS = ""
        # LumiNet only: compute the per-class mean/variance over the ROIs of ALL processes
        # (all-reduced sum, sum of squares and count; the local part stays differentiable).
        # Default False: statistics over the ROIs of each process, like the authors' code.
        _C.MODEL.DISTILL.GATHER_STATS = False
        # Autocast of the teacher's forward: "" (whatever the caller runs under, e.g. the AMP
        # trainer's autocast), "fp32" (autocast off), "bf16" or "fp16".
        _C.MODEL.DISTILL.TEACHER_AUTOCAST = ""
        # For benchmarking only: run the student's box head a second time on the sampled
        # proposals to get the distillation logits (the design of public Detectron2 KD code)
        # instead of reusing the logits of the student's own ROI-head pass.
        _C.MODEL.DISTILL.RECOMPUTE_STUDENT_LOGITS = False

    add_data_check_config(cfg)  # DATALOADER.CHECK.*
    from . import backbones

    add_backbone_config = getattr(backbones, "add_mobilenetv2_config", None)
    if add_backbone_config is not None and "MOBILENETV2" not in cfg.MODEL:
        add_backbone_config(cfg)
    return cfg


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


def distill_loss_kwargs(cfg: CN) -> dict:
    """Keyword arguments for ``build_distill_loss(cfg.MODEL.DISTILL.LOSS, **kwargs)``.

    Raises:
        ValueError: when ``MODEL.DISTILL.LOSS_KWARGS`` is not a JSON object.
    """
    d = cfg.MODEL.DISTILL
    name = str(d.LOSS).lower()
    if name == "luminet":
        kwargs = {"temperature": d.TEMPERATURE, "eps": d.LUMINET.EPS}
    elif name == "kd":
        kwargs = {"temperature": d.TEMPERATURE}
    elif name == "dkd":
        kwargs = {"temperature": d.TEMPERATURE, "alpha": d.DKD.ALPHA, "beta": d.DKD.BETA}
    else:
        kwargs = {}
    if d.LOSS_KWARGS:
        try:
            extra = json.loads(d.LOSS_KWARGS)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"MODEL.DISTILL.LOSS_KWARGS must be a JSON object string; got {d.LOSS_KWARGS!r} "
                f"({e})"
            ) from e
        if not isinstance(extra, dict):
            raise ValueError(
                f"MODEL.DISTILL.LOSS_KWARGS must be a JSON object; got {d.LOSS_KWARGS!r}"
            )
        kwargs.update(extra)
    return kwargs
