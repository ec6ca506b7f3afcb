"""Distillation losses: LumiNet (perception), KD and DKD, their sigmoid forms for dense detection
heads, plus a registry by name.

* the losses: :func:`luminet_loss` / :class:`LumiNetLoss`, :func:`kd_loss` / :class:`KDLoss`,
  :func:`dkd_loss` / :class:`DKDLoss`; for dense (sigmoid) heads :func:`kd_sigmoid_loss` /
  :class:`KDSigmoidLoss` and :func:`luminet_sigmoid_loss` / :class:`LumiNetSigmoidLoss`;
* LumiNet's statistics scope: :func:`build_luminet_loss` (``stats`` "batch", "image",
  "global"), :class:`PerGroupLoss`, :class:`GlobalLumiNetLoss`;
* by name: :func:`register_distill_loss`, :func:`build_distill_loss`, and the one rule from a
  config section to a loss, :func:`build_distill_loss_from_config`;
* how a loss is called on empty or grouped batches: :func:`apply_distill_loss`.
"""

from ._validation import check_logit_pair, check_positive
from .config import (
    LossArgument,
    SharedKey,
    build_distill_loss_from_config,
    distill_loss_arguments,
)
from .contract import apply_distill_loss, takes_group_sizes
from .dense_anchors import (
    DENSE_ANCHOR_CHOICES,
    DENSE_NORMALIZER_CHOICES,
    check_dense_options,
    check_dense_target,
    dense_anchor_weights,
    dense_normalizer,
)
from .dkd import DKDLoss, dkd_loss
from .global_statistics import GlobalLumiNetLoss, global_class_moments, global_luminet_loss
from .kd import KDLoss, kd_loss
from .kd_sigmoid import KDSigmoidLoss, binary_kl_with_logits, kd_sigmoid_loss, weighted_binary_kl
from .luminet_sigmoid import LumiNetSigmoidLoss, luminet_sigmoid_loss, weighted_class_moments
from .perception import LumiNetLoss, luminet_loss, perception, perception_kl
from .registry import (
    DISTILL_LOSS_REGISTRY,
    NO_DISTILLATION,
    available_distill_losses,
    build_distill_loss,
    distill_loss_config,
    get_distill_loss,
    register_distill_loss,
    unregister_distill_loss,
)
from .statistics import LUMINET_STATS, PerGroupLoss, build_luminet_loss

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
    "LUMINET_STATS",
    "PerGroupLoss",
    "build_luminet_loss",
    "global_class_moments",
    "global_luminet_loss",
    "GlobalLumiNetLoss",
    "takes_group_sizes",
    "apply_distill_loss",
    "NO_DISTILLATION",
    "DISTILL_LOSS_REGISTRY",
    "register_distill_loss",
    "unregister_distill_loss",
    "get_distill_loss",
    "build_distill_loss",
    "available_distill_losses",
    "distill_loss_config",
    "LossArgument",
    "SharedKey",
    "distill_loss_arguments",
    "build_distill_loss_from_config",
    "check_logit_pair",
    "check_positive",
]
