"""Build the frozen teacher detector from its own config, load and verify its weights."""

from __future__ import annotations

import logging
import os

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, get_cfg
from detectron2.modeling import GeneralizedRCNN, build_model
from detectron2.modeling.roi_heads import StandardROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.utils.file_io import PathManager

from .config import add_distill_config, resolve_teacher_config_path

logger = logging.getLogger(__name__)

__all__ = [
    "load_teacher_config",
    "build_teacher",
    "load_teacher_weights",
    "check_box_head_model",
    "TEACHER_REQUIRED_PREFIXES",
]

#: Parameters the distillation uses; a checkpoint that lacks any of them is refused.
TEACHER_REQUIRED_PREFIXES = (
    "backbone.",
    "roi_heads.box_head.",
    "roi_heads.box_predictor.cls_score.",
)


def check_box_head_model(model: torch.nn.Module, role: str) -> None:
    """Check that ``model`` is a GeneralizedRCNN with a single standard box head.

    Raises:
        ValueError: naming ``role`` ("teacher"/"student") and what is wrong.
    """
    if not isinstance(model, GeneralizedRCNN):
        raise ValueError(
            f"the {role} must be a GeneralizedRCNN (META_ARCHITECTURE GeneralizedRCNN); "
            f"got {type(model).__name__}"
        )
    roi_heads = model.roi_heads
    if not isinstance(roi_heads, StandardROIHeads) or not isinstance(
        getattr(roi_heads, "box_predictor", None), FastRCNNOutputLayers
    ):
        raise ValueError(
            f"the {role}'s ROI heads must be StandardROIHeads (or a subclass) with one "
            f"FastRCNNOutputLayers box predictor; got {type(roi_heads).__name__} with box "
            f"predictor {type(getattr(roi_heads, 'box_predictor', None)).__name__} "
            "(cascade heads are not supported)"
        )


def load_teacher_config(student_cfg: CfgNode, config_file: str | None = None) -> CfgNode:
    """The teacher's own config, read from ``student_cfg.MODEL.DISTILL.TEACHER_CONFIG``.

    The teacher runs on the student's device; its ``MODEL.WEIGHTS`` is set to
    ``MODEL.DISTILL.TEACHER_WEIGHTS`` (for the record; :func:`load_teacher_weights` loads them).

    Raises:
        ValueError: when the config is missing, unreadable, or describes a distilling model.
    """
    path = resolve_teacher_config_path(student_cfg.MODEL.DISTILL.TEACHER_CONFIG, config_file)
    cfg = get_cfg()
    add_distill_config(cfg)
    try:
        cfg.merge_from_file(path)
    except Exception as e:  # yacs raises several types (KeyError, AssertionError, yaml errors)
        raise ValueError(
            f"MODEL.DISTILL.TEACHER_CONFIG {path!r} could not be read as a detectron2 config: "
            f"{type(e).__name__}: {e}"
        ) from e
    if cfg.MODEL.META_ARCHITECTURE != "GeneralizedRCNN":
        raise ValueError(
            f"the teacher config {path!r} has META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE!r}; "
            "the teacher must be a GeneralizedRCNN (Faster R-CNN)"
        )
    cfg.MODEL.DEVICE = student_cfg.MODEL.DEVICE
    cfg.MODEL.WEIGHTS = student_cfg.MODEL.DISTILL.TEACHER_WEIGHTS
    cfg.freeze()
    return cfg


class _NoModelStateDict(Exception):
    """The file was read, but it holds no ``{"model": state_dict}``."""


class _RecordingCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` whose public ``load`` also keeps what it found: the number of
    tensors in the file and the key comparison, which detectron2 only logs."""

    tensors_in_file: int = 0
    incompatible = None

    def _load_model(self, checkpoint):
        if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
            raise _NoModelStateDict(type(checkpoint).__name__)
        self.tensors_in_file = len(checkpoint["model"])
        self.incompatible = super()._load_model(checkpoint)
        return self.incompatible


def load_teacher_weights(teacher: GeneralizedRCNN, weights: str) -> None:
    """Load ``weights`` into ``teacher`` and verify that they fit.

    Missing or unexpected keys are counted and logged; a checkpoint that lacks (or has a wrong
    shape for) any parameter of the backbone, box head or box classifier is refused, because a
    partly random teacher silently ruins distillation.

    Raises:
        ValueError: when ``weights`` is empty, does not exist, cannot be read, or does not match.
    """
    if not weights:
        raise ValueError(
            "MODEL.DISTILL.TEACHER_WEIGHTS is empty: refusing to distill from a randomly "
            'initialised teacher (set MODEL.DISTILL.LOSS "none" to train the student alone)'
        )
    try:
        local = PathManager.get_local_path(weights)
    except Exception as e:  # download or handler errors
        raise ValueError(
            f"MODEL.DISTILL.TEACHER_WEIGHTS {weights!r} could not be fetched: "
            f"{type(e).__name__}: {e}"
        ) from e
    if not os.path.isfile(local):
        raise ValueError(f"MODEL.DISTILL.TEACHER_WEIGHTS {weights!r} is not a file")
    checkpointer = _RecordingCheckpointer(teacher)
    try:
        checkpointer.load(local)
    except _NoModelStateDict as e:
        raise ValueError(
            f"MODEL.DISTILL.TEACHER_WEIGHTS {weights!r} holds no model state dict (got {e})"
        ) from None
    except Exception as e:
        raise ValueError(
            f"MODEL.DISTILL.TEACHER_WEIGHTS {weights!r} could not be read as a checkpoint: "
            f"{type(e).__name__}: {e}"
        ) from e
    n_in_file = checkpointer.tensors_in_file
    incompatible = checkpointer.incompatible
    wrong_shape = [k for k, _, _ in incompatible.incorrect_shapes]
    # fvcore drops mis-shaped tensors before loading, so they also come back as missing
    missing = [k for k in incompatible.missing_keys if k not in set(wrong_shape)]
    unexpected = list(incompatible.unexpected_keys)
    needed = set(teacher.state_dict())
    bad = sorted(
        k
        for k in set(missing) | set(wrong_shape)
        if k in needed and k.startswith(TEACHER_REQUIRED_PREFIXES)
    )
    summary = (
        f"teacher checkpoint {weights!r} ({n_in_file} tensors) vs the teacher config: "
        f"{len(missing)} missing key(s), {len(unexpected)} unexpected key(s), "
        f"{len(wrong_shape)} key(s) with a wrong shape"
    )
    if bad:
        predictor = [k for k in bad if k.startswith("roi_heads.box_predictor.")]
        what = (
            "the box predictor (" + ", ".join(predictor) + ") is missing or has a wrong shape"
            if predictor
            else f"{len(bad)} parameter(s) the distillation uses are missing or mis-shaped"
        )
        raise ValueError(
            f"{summary}; {what} (e.g. {bad[:5]}); does the checkpoint belong to the teacher "
            "config (same backbone and number of classes)?"
        )
    if missing or unexpected or wrong_shape:
        logger.warning(
            "%s; none of them is used by the distillation. Missing: %s; unexpected: %s; "
            "wrong shape: %s",
            summary,
            missing[:10],
            unexpected[:10],
            wrong_shape[:10],
        )
    else:
        logger.info("Loaded teacher weights %s: all %d keys match.", weights, len(needed))


def build_teacher(teacher_cfg: CfgNode) -> GeneralizedRCNN:
    """Build the teacher from its own config (see :func:`load_teacher_config`), load its
    ``MODEL.WEIGHTS`` with :func:`load_teacher_weights` and freeze it.

    Returns:
        The teacher, with ``requires_grad=False`` everywhere, in eval mode.

    Raises:
        ValueError: on any problem with the teacher model or weights.
    """
    teacher = build_model(teacher_cfg)
    check_box_head_model(teacher, "teacher")
    load_teacher_weights(teacher, teacher_cfg.MODEL.WEIGHTS)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()
