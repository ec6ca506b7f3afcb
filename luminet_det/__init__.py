"""LumiNet knowledge distillation for Detectron2.

Importing this package registers its detectron2 components: the ``DistillRCNN`` and
``DistillRetinaNet`` meta-architectures (``DistillFCOS`` is built from keyword arguments) and
the backbones of :mod:`luminet_det.backbones` (no dataset: the demo's digit scenes live in
:mod:`luminet_det.demo` and are registered on use).
``add_distill_config(cfg)`` adds every config key of the project.
"""

from . import backbones as _backbones  # noqa: F401  (registration)
from .box_head import box_class_logits, box_stage_count, check_box_head_model
from .cascade import normalized_stage_weights, record_box_stages, teacher_stage_map
from .config import (
    add_distill_config,
    add_distill_loss_sections,
    build_distill_loss_from_cfg,
    resolve_teacher_config_path,
)
from .dense_distill import DenseDistillation, check_dense_loss, check_dense_teacher
from .dense_layout import DenseLayout, check_same_dense_layout, dense_layout
from .dense_meta_arch import DistillFCOS, DistillRetinaNet
from .distill_rcnn import DistillRCNN, check_roi_teacher
from .teacher import Teacher, build_teacher, load_teacher_config
from .teacher_weights import load_teacher_weights

__all__ = [
    "add_distill_config",
    "add_distill_loss_sections",
    "build_distill_loss_from_cfg",
    "resolve_teacher_config_path",
    "DistillRCNN",
    "check_roi_teacher",
    "DenseDistillation",
    "DistillRetinaNet",
    "DistillFCOS",
    "check_dense_loss",
    "check_dense_teacher",
    "DenseLayout",
    "dense_layout",
    "check_same_dense_layout",
    "Teacher",
    "build_teacher",
    "load_teacher_config",
    "load_teacher_weights",
    "box_class_logits",
    "check_box_head_model",
    "box_stage_count",
    "normalized_stage_weights",
    "record_box_stages",
    "teacher_stage_map",
]

__version__ = "0.1.0"
