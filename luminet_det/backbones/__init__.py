"""Backbones for students that detectron2 lacks (registered in BACKBONE_REGISTRY at import)."""

from .config import add_mobilenetv2_config
from .mobilenetv2 import (
    MobileNetV2,
    build_mobilenetv2_backbone,
    build_mobilenetv2_fpn_backbone,
)
from .torchvision_conversion import (
    SUPPORTED_MODELS,
    convert_mobilenet_v2,
    convert_resnet,
    convert_torchvision_state_dict,
)

__all__ = [
    "SUPPORTED_MODELS",
    "MobileNetV2",
    "add_mobilenetv2_config",
    "build_mobilenetv2_backbone",
    "build_mobilenetv2_fpn_backbone",
    "convert_mobilenet_v2",
    "convert_resnet",
    "convert_torchvision_state_dict",
]
