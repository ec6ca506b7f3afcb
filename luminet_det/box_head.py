"""The ROI-head family's distillation samples: class logits of a box head on given boxes."""

from __future__ import annotations

import logging

import torch
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.roi_heads import StandardROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.structures import Boxes
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["check_box_head_model", "box_class_logits"]


def check_box_head_model(model: nn.Module, role: str) -> None:
    """Check that ``model`` is a GeneralizedRCNN with a single standard box head.

    Args:
        model: the detector.
        role: "teacher" or "student", for the message.

    Raises:
        ValueError: naming ``role`` and what is wrong.
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


def box_class_logits(
    roi_heads: StandardROIHeads, features: dict[str, torch.Tensor], boxes: list[Boxes]
) -> torch.Tensor:
    """Class logits (R, K+1) of ``roi_heads``' box head for ``boxes`` (one ``Boxes`` per image).

    The ROI pooler, box head and box predictor run on ``features`` exactly as in the heads' own
    forward; no sampling, no box regression output.
    """
    x = roi_heads.box_pooler([features[f] for f in roi_heads.box_in_features], boxes)
    return roi_heads.box_predictor(roi_heads.box_head(x))[0]
