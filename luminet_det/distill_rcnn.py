"""DistillRCNN: a Faster R-CNN student distilled from a frozen teacher on ROI logits.

The student *is* a stock :class:`~detectron2.modeling.GeneralizedRCNN` (this class subclasses it
and adds no parameters), so ``state_dict()`` holds the student only, with GeneralizedRCNN keys:
checkpoints written during training load strictly into a stock GeneralizedRCNN. The teacher (a
:class:`~luminet_det.teacher.Teacher`) is kept outside the module tree (not in ``state_dict``,
``parameters`` or DDP's view), follows the student across devices/dtypes, and is frozen and
always in eval mode.

One training step:

1. The student runs as usual (RPN, ROI sampling, box head, its own losses). A forward hook on
   its box predictor keeps the class logits of the sampled ROIs: the box head runs once
   (:meth:`DistillRCNN.roi_heads_and_logits`).
2. The teacher prepares the raw images as its own ``preprocess_image`` does, runs its backbone
   and box head on the student's sampled proposals (no teacher RPN), under ``no_grad``
   (:meth:`Teacher.roi_logits <luminet_det.teacher.Teacher.roi_logits>`).
3. The distillation loss of the two (R, K+1) logit matrices, which owns its statistics (per
   batch, per image or over all processes), is added as ``loss_<name>``, times ``LOSS_WEIGHT``
   and the warm-up ramp.

Inference is the student's inference.
"""

from __future__ import annotations

import logging

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import cat
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.meta_arch.build import META_ARCH_REGISTRY
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import get_event_storage
from torch import nn

from luminet.losses import NO_DISTILLATION, apply_distill_loss

from .box_head import box_class_logits, check_box_head_model
from .config import build_distill_loss_from_cfg
from .teacher import Teacher, build_teacher

logger = logging.getLogger(__name__)

__all__ = ["DistillRCNN", "check_roi_teacher"]


def check_roi_teacher(student: GeneralizedRCNN, teacher: Teacher) -> None:
    """Check that ``teacher`` can score ``student``'s ROIs: a standard box head, the same
    classes and the student's image format.

    Raises:
        ValueError: naming what does not fit.
    """
    check_box_head_model(teacher.model, "teacher")
    k_s = student.roi_heads.box_predictor.num_classes
    k_t = teacher.model.roi_heads.box_predictor.num_classes
    if k_s != k_t:
        raise ValueError(
            f"teacher and student must have the same classes; the teacher has {k_t} "
            f"(MODEL.ROI_HEADS.NUM_CLASSES of TEACHER_CONFIG), the student {k_s} "
            "(MODEL.ROI_HEADS.NUM_CLASSES)"
        )
    if teacher.image_format != student.input_format:
        raise ValueError(
            f"the teacher is fed images in {teacher.image_format!r}, but the student's "
            f"INPUT.FORMAT is {student.input_format!r}"
        )


@META_ARCH_REGISTRY.register()
class DistillRCNN(GeneralizedRCNN):
    """GeneralizedRCNN student plus a frozen teacher and a distillation loss on ROI logits."""

    @configurable
    def __init__(
        self,
        *,
        teacher: Teacher | None = None,
        distill_loss: nn.Module | None = None,
        loss_name: str = "luminet",
        loss_weight: float = 1.0,
        warmup_iters: int = 0,
        **kwargs,
    ):
        """
        Args:
            teacher: the frozen teacher (see :func:`luminet_det.teacher.build_teacher`); None
                when ``distill_loss`` is None.
            distill_loss: called by :func:`luminet.losses.apply_distill_loss` on the (R, K+1)
                class logits of the sampled ROIs (target: their gt classes, background = K;
                group sizes: ROIs per image); None trains the student alone.
            loss_name: the loss-dict key is ``"loss_" + loss_name``.
            loss_weight: multiplies the distillation loss.
            warmup_iters: linear ramp ``min(iter / warmup_iters, 1)``; 0 for none.
            kwargs: the arguments of :class:`GeneralizedRCNN` (the student).
        """
        super().__init__(**kwargs)
        check_box_head_model(self, "student")
        if self.roi_heads.train_on_pred_boxes:
            raise ValueError(
                "MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES is not supported by DistillRCNN (the ROI "
                "heads overwrite the sampled proposals that the teacher needs)"
            )
        if (teacher is None) != (distill_loss is None):
            raise ValueError(
                "DistillRCNN needs both a teacher and a distillation loss, or neither; got "
                f"teacher={type(teacher).__name__}, distill_loss={type(distill_loss).__name__}"
            )
        if warmup_iters < 0:
            raise ValueError(f"MODEL.DISTILL.WARMUP_ITERS must be >= 0; got {warmup_iters}")
        if not loss_weight >= 0:
            raise ValueError(f"MODEL.DISTILL.LOSS_WEIGHT must be >= 0; got {loss_weight}")
        if teacher is not None:
            check_roi_teacher(self, teacher)
        # Outside the module tree: not in state_dict/parameters/DDP (see the module docstring).
        object.__setattr__(self, "_teacher", teacher)
        object.__setattr__(self, "_distill_loss", distill_loss)
        self.loss_name = str(loss_name).lower()
        self.loss_weight = float(loss_weight)
        self.warmup_iters = int(warmup_iters)
        if teacher is not None:
            teacher.to(self.device)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        d = cfg.MODEL.DISTILL
        loss = build_distill_loss_from_cfg(cfg)
        ret = super().from_config(cfg)
        ret.update(
            teacher=build_teacher(cfg) if loss is not None else None,
            distill_loss=loss,
            loss_name=str(d.LOSS).lower() if loss is not None else NO_DISTILLATION,
            loss_weight=d.LOSS_WEIGHT,
            warmup_iters=d.WARMUP_ITERS,
        )
        return ret

    # ----------------------------------------------------------------- module plumbing
    @property
    def teacher(self) -> Teacher | None:
        """The frozen teacher (not a submodule: never saved, never trained)."""
        return self._teacher

    @property
    def distill_loss(self) -> nn.Module | None:
        return self._distill_loss

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        for m in (self._teacher, self._distill_loss):
            if isinstance(m, nn.Module):
                m._apply(fn, *args, **kwargs)
        return self

    def extra_repr(self) -> str:
        if self._teacher is None:
            return "distillation: none (student alone)"
        return (
            f"distillation: loss_{self.loss_name}={self._distill_loss!r} x {self.loss_weight} "
            f"(warm-up {self.warmup_iters} iters), teacher: {type(self._teacher.model).__name__} "
            f"with {type(self._teacher.model.backbone).__name__} backbone (frozen, not saved)"
        )

    # ----------------------------------------------------------------- training
    def forward(self, batched_inputs: list[dict]):
        """Training: the student's losses plus ``loss_<name>``; inference: the student's.

        Args:
            batched_inputs: as for :meth:`GeneralizedRCNN.forward` (DatasetMapper outputs).

        Returns:
            In training a dict of losses; otherwise a list of dicts with "instances".
        """
        if not self.training:
            return self.inference(batched_inputs)
        if self._teacher is None:
            return super().forward(batched_inputs)

        images = self.preprocess_image(batched_inputs)
        if "instances" in batched_inputs[0]:
            gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        else:
            gt_instances = None
        features = self.backbone(images.tensor)

        if self.proposal_generator is not None:
            proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
        else:
            if "proposals" not in batched_inputs[0]:
                raise ValueError("no proposal generator and no 'proposals' in the inputs")
            proposals = [x["proposals"].to(self.device) for x in batched_inputs]
            proposal_losses = {}

        sampled, detector_losses, student_logits = self.roi_heads_and_logits(
            images, features, proposals, gt_instances
        )

        if self.vis_period > 0:
            storage = get_event_storage()
            if storage.iter % self.vis_period == 0:
                self.visualize_training(batched_inputs, proposals)

        losses = {}
        losses.update(detector_losses)
        losses.update(proposal_losses)
        losses.update(self.distillation_losses(batched_inputs, sampled, student_logits))
        return losses

    def roi_heads_and_logits(
        self,
        images: ImageList,
        features: dict[str, torch.Tensor],
        proposals: list[Instances],
        gt_instances: list[Instances] | None,
    ) -> tuple[list[Instances], dict[str, torch.Tensor], torch.Tensor]:
        """The student's ROI heads in training, and the class logits of the ROIs they sampled.

        The logits are those of the heads' own box-predictor pass (kept by a forward hook), so
        the box head runs once.

        Returns:
            ``(sampled proposals, ROI-head losses, (R, K+1) logits of the sampled ROIs)``.
        """
        captured: list[torch.Tensor] = []
        handle = self.roi_heads.box_predictor.register_forward_hook(
            lambda _m, _i, out: captured.append(out[0])
        )
        try:
            sampled, detector_losses = self.roi_heads(images, features, proposals, gt_instances)
        finally:
            handle.remove()
        if len(captured) != 1:
            raise RuntimeError(
                "expected the student's box predictor to run exactly once in the ROI heads' "
                f"training forward; it ran {len(captured)} times"
            )
        return sampled, detector_losses, captured[0]

    def student_roi_logits(
        self, features: dict[str, torch.Tensor], boxes: list[Boxes]
    ) -> torch.Tensor:
        """Student class logits (R, K+1) for ``boxes``, by a separate box-head pass."""
        return box_class_logits(self.roi_heads, features, boxes)

    def distillation_weight(self) -> float:
        """``LOSS_WEIGHT * min(iter / WARMUP_ITERS, 1)`` at the current storage iteration."""
        if self.warmup_iters <= 0:
            return self.loss_weight
        it = get_event_storage().iter
        return self.loss_weight * min(it / self.warmup_iters, 1.0)

    def distillation_losses(
        self, batched_inputs: list[dict], sampled: list[Instances], student_logits: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``{"loss_<name>": weight * loss(student_logits, teacher_logits, gt_classes)}``.

        Args:
            batched_inputs: the step's inputs (the teacher prepares their images itself).
            sampled: the student's sampled proposals (``proposal_boxes``, ``gt_classes``).
            student_logits: (R, K+1) student class logits of those proposals, in order.
        """
        boxes = [p.proposal_boxes for p in sampled]
        sizes = [len(b) for b in boxes]
        n = sum(sizes)
        if student_logits.shape[0] != n:
            raise RuntimeError(
                f"{student_logits.shape[0]} student logit rows for {n} sampled proposals"
            )
        target = cat([p.gt_classes for p in sampled], dim=0)
        if n:
            teacher_logits = self._teacher.roi_logits(batched_inputs, boxes)
        else:  # no ROI on this device: nothing for the teacher to score
            teacher_logits = student_logits.detach().float()
        raw = apply_distill_loss(
            self._distill_loss, student_logits, teacher_logits, target, group_sizes=sizes
        )
        weight = self.distillation_weight()
        try:
            get_event_storage().put_scalar("distill/weight", weight, smoothing_hint=False)
        except AssertionError:  # no EventStorage (a bare forward outside a trainer)
            pass
        return {f"loss_{self.loss_name}": raw * weight}
