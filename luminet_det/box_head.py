"""The ROI-head family's distillation samples: class logits of a box head on given boxes.

A box head has one or more *stages*: ``StandardROIHeads`` (and subclasses such as Mask R-CNN's)
have one, ``CascadeROIHeads`` one per cascade stage (``box_head[k]``/``box_predictor[k]`` on a
shared ROI pooler).
"""

from __future__ import annotations

import logging

import torch
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.roi_heads import CascadeROIHeads, StandardROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.structures import Boxes
from torch import nn

logger = logging.getLogger(__name__)

__all__ = [
    "check_box_head_model",
    "box_class_logits",
    "box_stage_count",
    "box_stage_predictors",
]


def box_stage_count(roi_heads: StandardROIHeads) -> int:
    """Number of box stages: ``num_cascade_stages`` for Cascade ROI heads, else 1."""
    if isinstance(roi_heads, CascadeROIHeads):
        return int(roi_heads.num_cascade_stages)
    return 1


def box_stage_predictors(roi_heads: StandardROIHeads) -> list[nn.Module]:
    """The box predictor of each stage, in stage order (one for a single-stage head)."""
    if isinstance(roi_heads, CascadeROIHeads):
        return list(roi_heads.box_predictor)
    return [roi_heads.box_predictor]


def check_box_head_model(model: nn.Module, role: str) -> None:
    """Check that ``model`` is a GeneralizedRCNN with standard or Cascade box heads.

    Accepted: ``StandardROIHeads`` (or a subclass, e.g. with a mask head) with one
    ``FastRCNNOutputLayers`` box predictor, and ``CascadeROIHeads`` with one per stage.

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
    predictors = (
        box_stage_predictors(roi_heads)
        if isinstance(roi_heads, StandardROIHeads)
        else [getattr(roi_heads, "box_predictor", None)]
    )
    if not isinstance(roi_heads, StandardROIHeads) or not all(
        isinstance(p, FastRCNNOutputLayers) for p in predictors
    ):
        raise ValueError(
            f"the {role}'s ROI heads must be StandardROIHeads (or a subclass) with one "
            "FastRCNNOutputLayers box predictor, or CascadeROIHeads with one per stage; got "
            f"{type(roi_heads).__name__} with box predictors "
            f"{[type(p).__name__ for p in predictors]}"
        )


def box_class_logits(
    roi_heads: StandardROIHeads,
    features: dict[str, torch.Tensor],
    boxes: list[Boxes],
    stage: int = 0,
) -> torch.Tensor:
    """Class logits (R, K+1) of ``roi_heads``' box head for ``boxes`` (one ``Boxes`` per image).

    The ROI pooler, box head and box predictor of ``stage`` run on ``features`` exactly as in
    the heads' own forward; no sampling, no box regression output.

    Args:
        roi_heads: standard or Cascade ROI heads.
        features: the backbone's features by name.
        boxes: one ``Boxes`` per image.
        stage: the box stage (0 for a single-stage head).

    Raises:
        ValueError: for a stage the heads do not have.
    """
    n = box_stage_count(roi_heads)
    if not 0 <= stage < n:
        raise ValueError(f"box stage {stage} does not exist; {type(roi_heads).__name__} has {n}")
    x = roi_heads.box_pooler([features[f] for f in roi_heads.box_in_features], boxes)
    if isinstance(roi_heads, CascadeROIHeads):
        return roi_heads.box_predictor[stage](roi_heads.box_head[stage](x))[0]
    return roi_heads.box_predictor(roi_heads.box_head(x))[0]
