"""Distillation losses: LumiNet (perception), KD and DKD, their sigmoid forms for dense detection
heads, plus a registry by name."""

from ._validation import check_logit_pair, check_positive
from .dense_anchors import (
    DENSE_ANCHOR_CHOICES,
    DENSE_NORMALIZER_CHOICES,
    check_dense_options,
    check_dense_target,
    dense_anchor_weights,
    dense_normalizer,
)
from .dkd import DKDLoss, dkd_loss
from .kd import KDLoss, kd_loss
from .kd_sigmoid import KDSigmoidLoss, binary_kl_with_logits, kd_sigmoid_loss, weighted_binary_kl
from .luminet_sigmoid import LumiNetSigmoidLoss, luminet_sigmoid_loss, weighted_class_moments
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
    "kd_sigmoid_loss",
    "KDSigmoidLoss",
    "luminet_sigmoid_loss",
    "LumiNetSigmoidLoss",
    "binary_kl_with_logits",
    "weighted_binary_kl",
    "weighted_class_moments",
    "DENSE_ANCHOR_CHOICES",
    "DENSE_NORMALIZER_CHOICES",
    "check_dense_options",
    "check_dense_target",
    "dense_anchor_weights",
    "dense_normalizer",
    "NO_DISTILLATION",
    "register_distill_loss",
    "get_distill_loss",
    "build_distill_loss",
    "available_distill_losses",
    "check_logit_pair",
    "check_positive",
]
