"""The reference design of public Detectron2 KD code, for comparison only.

Public KD code for Detectron2 (e.g. mdistiller's ``RCNNKD``) gets the student's distillation
logits by running its box head a second time on the sampled proposals. :class:`ReferenceDistillRCNN`
reproduces that by overriding one method of :class:`~luminet_det.DistillRCNN`; everything else,
the loss included, is the same, so the two differ by that second pass only. It is not
registered as a meta-architecture: the benchmark builds it directly.
"""

from __future__ import annotations

import torch
from detectron2.structures import ImageList, Instances

from ..distill_rcnn import DistillRCNN

__all__ = ["ReferenceDistillRCNN"]


class ReferenceDistillRCNN(DistillRCNN):
    """DistillRCNN whose student logits come from a second box-head pass."""

    def roi_heads_and_logits(
        self,
        images: ImageList,
        features: dict[str, torch.Tensor],
        proposals: list[Instances],
        gt_instances: list[Instances] | None,
    ) -> tuple[list[Instances], dict[str, torch.Tensor], torch.Tensor]:
        sampled, detector_losses = self.roi_heads(images, features, proposals, gt_instances)
        logits = self.student_roi_logits(features, [p.proposal_boxes for p in sampled])
        return sampled, detector_losses, logits
