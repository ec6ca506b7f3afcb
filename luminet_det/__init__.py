"""LumiNet knowledge distillation for Detectron2.

Importing this package registers its detectron2 components: the ``DistillRCNN``
meta-architecture and the backbones of :mod:`luminet_det.backbones` (no dataset: the demo's
digit scenes live in :mod:`luminet_det.demo` and are registered on use).
``add_distill_config(cfg)`` adds every config key of the project.
"""

from . import backbones as _backbones  # noqa: F401  (registration)
from .config import add_distill_config, resolve_teacher_config_path
from .distill_rcnn import DistillRCNN, build_distill_loss_from_cfg
from .distributed_perception import GatheredLumiNetLoss, gathered_luminet_loss
from .teacher import build_teacher, load_teacher_config, load_teacher_weights

__all__ = [
    "add_distill_config",
    "resolve_teacher_config_path",
    "DistillRCNN",
    "build_distill_loss_from_cfg",
    "GatheredLumiNetLoss",
    "gathered_luminet_loss",
    "build_teacher",
    "load_teacher_config",
    "load_teacher_weights",
]

__version__ = "0.1.0"
