"""Tiny dense detectors (RetinaNet, FCOS) for tests and smoke runs (CPU, seconds).

The same R18-FPN scale as :mod:`luminet_det.testing` (64 FPN channels, one head conv), with the
RetinaNet backbone (P3-P7). Teachers are random-init models saved with detectron2's checkpointer;
nothing is downloaded.
"""

from __future__ import annotations

import logging
import os

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode
from detectron2.modeling import build_backbone, build_model
from detectron2.modeling.meta_arch.fcos import FCOSHead

from .testing import tiny_rcnn_cfg

logger = logging.getLogger(__name__)

__all__ = [
    "TINY_RETINANET_OPTS",
    "tiny_retinanet_cfg",
    "write_retinanet_teacher",
    "tiny_distill_retinanet_cfg",
    "tiny_fcos_arguments",
]

#: A small R18-FPN RetinaNet (P3-P7, 3 anchors per location, one head conv) for CPU tests.
TINY_RETINANET_OPTS = {
    "MODEL.META_ARCHITECTURE": "RetinaNet",
    "MODEL.BACKBONE.NAME": "build_retinanet_resnet_fpn_backbone",
    "MODEL.RESNETS.OUT_FEATURES": ["res3", "res4", "res5"],
    "MODEL.FPN.IN_FEATURES": ["res3", "res4", "res5"],
    "MODEL.RETINANET.IN_FEATURES": ["p3", "p4", "p5", "p6", "p7"],
    "MODEL.RETINANET.NUM_CLASSES": 3,
    "MODEL.RETINANET.NUM_CONVS": 1,
    "MODEL.ANCHOR_GENERATOR.SIZES": [[16], [32], [64], [128], [256]],
    "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": [[0.5, 1.0, 2.0]],
}


def tiny_retinanet_cfg(**overrides) -> CfgNode:
    """A config of the tiny RetinaNet; ``overrides`` as for
    :func:`~luminet_det.testing.tiny_rcnn_cfg` (dotted or ``MODEL__X`` names)."""
    return tiny_rcnn_cfg(**{**TINY_RETINANET_OPTS, **overrides})


def write_retinanet_teacher(
    directory: str, seed: int = 1, **overrides
) -> tuple[str, str, torch.nn.Module]:
    """Save a random-init tiny RetinaNet teacher's config (yaml) and weights (``.pth``).

    Returns:
        ``(config_path, weights_path, teacher_model)``.
    """
    os.makedirs(directory, exist_ok=True)
    cfg = tiny_retinanet_cfg(**overrides)
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    config_path = os.path.join(directory, "teacher.yaml")
    with open(config_path, "w") as f:
        f.write(cfg.dump())
    DetectionCheckpointer(model, save_dir=directory).save("teacher")
    return config_path, os.path.join(directory, "teacher.pth"), model


def tiny_distill_retinanet_cfg(
    teacher_config: str, teacher_weights: str, loss: str = "luminet_sigmoid", **overrides
) -> CfgNode:
    """The tiny RetinaNet as a ``DistillRetinaNet`` student of the given teacher."""
    cfg = tiny_retinanet_cfg(
        **{
            "MODEL.META_ARCHITECTURE": "DistillRetinaNet",
            "MODEL.DISTILL.TEACHER_CONFIG": teacher_config,
            "MODEL.DISTILL.TEACHER_WEIGHTS": teacher_weights,
            "MODEL.DISTILL.LOSS": loss,
            **overrides,
        }
    )
    return cfg


def tiny_fcos_arguments(num_classes: int = 3, **overrides) -> dict:
    """Keyword arguments of a tiny FCOS (``FCOS(**args)`` or ``DistillFCOS(**args, ...)``).

    The backbone is the tiny RetinaNet's (P3-P7); the head has one 64-channel conv.

    Args:
        num_classes: K.
        overrides: config overrides of the backbone, as for :func:`tiny_retinanet_cfg`.
    """
    cfg = tiny_retinanet_cfg(**overrides)
    backbone = build_backbone(cfg)
    shapes = backbone.output_shape()
    features = list(cfg.MODEL.RETINANET.IN_FEATURES)
    head = FCOSHead(
        input_shape=[shapes[f] for f in features],
        conv_dims=[cfg.MODEL.FPN.OUT_CHANNELS],
        num_classes=num_classes,
    )
    return {
        "backbone": backbone,
        "head": head,
        "head_in_features": features,
        "num_classes": num_classes,
        "pixel_mean": cfg.MODEL.PIXEL_MEAN,
        "pixel_std": cfg.MODEL.PIXEL_STD,
    }
