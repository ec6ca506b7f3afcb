"""Distillation losses: LumiNet (perception), KD and DKD, plus a registry by name."""

from ._validation import check_logit_pair, check_positive
from .dkd import DKDLoss, dkd_loss
from .kd import KDLoss, kd_loss
from .perception import LumiNetLoss, luminet_loss, perception, perception_kl
from .registry import (
    NO_DISTILLATION,
    available_distill_losses,
    build_distill_loss,
    get_distill_loss,
    register_distill_loss,
)

__all__ = [
    "perception",
    "perception_kl",
    "luminet_loss",
    "LumiNetLoss",
    "kd_loss",
    "KDLoss",
    "dkd_loss",
    "DKDLoss",
    "NO_DISTILLATION",
    "register_distill_loss",
    "get_distill_loss",
    "build_distill_loss",
    "available_distill_losses",
    "check_logit_pair",
    "check_positive",
]
