"""DistillRCNN: an R-CNN student distilled from a frozen teacher on ROI logits.

Students and teachers are GeneralizedRCNN models with standard box heads (Faster R-CNN, Mask
R-CNN and other ``StandardROIHeads`` subclasses: extra heads train as usual) or Cascade box heads
(per-stage distillation, :mod:`luminet_det.cascade`), in any pairing.

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

For a Cascade student, steps 1-3 run per stage: the logits *and* the labelled proposals of each
stage are kept from the student's own forward, the teacher scores each stage's proposals with
its matching stage (or its single box head) after one backbone pass, and the term is the mean of
the per-stage losses weighted by ``CASCADE_STAGE_WEIGHTS``
(:meth:`DistillRCNN.cascade_distillation_losses`).

Inference is the student's inference.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import cat
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.meta_arch.build import META_ARCH_REGISTRY
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import get_event_storage
from torch import nn

from luminet.losses import NO_DISTILLATION, apply_distill_loss

from .box_head import box_class_logits, box_stage_count, check_box_head_model
from .cascade import (
    BoxStageOutput,
    normalized_stage_weights,
    record_box_stages,
    teacher_stage_map,
)
from .config import build_distill_loss_from_cfg
from .frozen_teacher import FrozenTeacherMixin
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
    k_s = student.roi_heads.num_classes
    k_t = teacher.model.roi_heads.num_classes
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
class DistillRCNN(FrozenTeacherMixin, GeneralizedRCNN):
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
        cascade_stage_weights: Sequence[float] = (),
        cascade_teacher_stage: int = -1,
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
            cascade_stage_weights: one weight per student box stage, or empty for the mean
                (see :func:`luminet_det.cascade.normalized_stage_weights`).
            cascade_teacher_stage: the teacher stage that scores every student stage, or -1
                (see :func:`luminet_det.cascade.teacher_stage_map`).
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
        self.check_distillation_weight(loss_weight, warmup_iters)
        #: The student's box stages' weights, normalised to sum 1.
        self.stage_weights = normalized_stage_weights(
            cascade_stage_weights, box_stage_count(self.roi_heads)
        )
        #: The teacher box stage that scores each student stage (empty without a teacher).
        self.teacher_stages: tuple[int, ...] = ()
        if teacher is not None:
            check_roi_teacher(self, teacher)
            self.teacher_stages = teacher_stage_map(
                len(self.stage_weights),
                box_stage_count(teacher.model.roi_heads),
                int(cascade_teacher_stage),
            )
        elif cascade_teacher_stage != -1:
            raise ValueError(
                "MODEL.DISTILL.CASCADE_TEACHER_STAGE is set but there is no teacher "
                "(MODEL.DISTILL.LOSS none); leave it at -1"
            )
        # Outside the module tree: not in state_dict/parameters/DDP (see the module docstring).
        self.attach_teacher(teacher, distill_loss, loss_name, loss_weight, warmup_iters)

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
            cascade_stage_weights=tuple(d.CASCADE_STAGE_WEIGHTS),
            cascade_teacher_stage=d.CASCADE_TEACHER_STAGE,
        )
        return ret

    # ----------------------------------------------------------------- module plumbing
    def teacher_description(self) -> str:
        model = self._teacher.model
        return f"{type(model).__name__} with {type(model.backbone).__name__} backbone"

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

        if len(self.stage_weights) > 1:
            sampled, detector_losses, stages = self.roi_heads_and_stage_outputs(
                images, features, proposals, gt_instances
            )
            distill_losses = self.cascade_distillation_losses(batched_inputs, stages)
        else:
            sampled, detector_losses, student_logits = self.roi_heads_and_logits(
                images, features, proposals, gt_instances
            )
            distill_losses = self.distillation_losses(batched_inputs, sampled, student_logits)

        if self.vis_period > 0:
            storage = get_event_storage()
            if storage.iter % self.vis_period == 0:
                self.visualize_training(batched_inputs, proposals)

        losses = {}
        losses.update(detector_losses)
        losses.update(proposal_losses)
        losses.update(distill_losses)
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

    def roi_heads_and_stage_outputs(
        self,
        images: ImageList,
        features: dict[str, torch.Tensor],
        proposals: list[Instances],
        gt_instances: list[Instances] | None,
    ) -> tuple[list[Instances], dict[str, torch.Tensor], list[BoxStageOutput]]:
        """The student's ROI heads in training, and each box stage's logits and labelled
        proposals, kept from that forward (each stage's head runs once; see
        :func:`luminet_det.cascade.record_box_stages`).

        Returns:
            ``(sampled proposals of stage 0, ROI-head losses, one output per stage)``.
        """
        with record_box_stages(self.roi_heads) as stages:
            sampled, detector_losses = self.roi_heads(images, features, proposals, gt_instances)
        return sampled, detector_losses, stages

    def student_roi_logits(
        self, features: dict[str, torch.Tensor], boxes: list[Boxes], stage: int = 0
    ) -> torch.Tensor:
        """Student class logits (R, K+1) of box ``stage`` for ``boxes``, by a separate
        box-head pass."""
        return box_class_logits(self.roi_heads, features, boxes, stage)

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
            teacher_logits = self._teacher.roi_logits(
                batched_inputs, boxes, stage=self.teacher_stages[0]
            )
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

    def cascade_distillation_losses(
        self, batched_inputs: list[dict], stages: list[BoxStageOutput]
    ) -> dict[str, torch.Tensor]:
        """``{"loss_<name>": weight * sum_k w_k * loss(stage k logits, teacher logits)}``.

        Stage k's student logits are compared with the teacher's logits (stage
        ``teacher_stages[k]``) on the same stage-k proposals, each stage with its own gt classes
        and statistics; ``w_k`` are :attr:`stage_weights` (stages of weight 0 are skipped). The
        teacher's backbone runs once for all stages.

        Args:
            batched_inputs: the step's inputs.
            stages: the student's per-stage outputs (:meth:`roi_heads_and_stage_outputs`).
        """
        if len(stages) != len(self.stage_weights):
            raise RuntimeError(
                f"{len(stages)} student box stages recorded for {len(self.stage_weights)} weights"
            )
        active = [
            k for k, w in enumerate(self.stage_weights) if w > 0 and len(stages[k].logits) > 0
        ]
        teacher_logits: dict[int, torch.Tensor] = {}
        if active:
            scored = self._teacher.roi_logits_per_stage(
                batched_inputs,
                [[p.proposal_boxes for p in stages[k].proposals] for k in active],
                [self.teacher_stages[k] for k in active],
            )
            teacher_logits = dict(zip(active, scored))
        terms = []  # at least one: the weights are checked not to be all zero
        for k, stage in enumerate(stages):
            if self.stage_weights[k] == 0:
                continue
            sizes = [len(p) for p in stage.proposals]
            if stage.logits.shape[0] != sum(sizes):
                raise RuntimeError(
                    f"stage {k}: {stage.logits.shape[0]} student logit rows for {sum(sizes)} "
                    "proposals"
                )
            target = cat([p.gt_classes for p in stage.proposals], dim=0)
            teacher = teacher_logits.get(k, stage.logits.detach().float())
            raw = apply_distill_loss(
                self._distill_loss, stage.logits, teacher, target, group_sizes=sizes
            )
            terms.append(self.stage_weights[k] * raw)
        total = torch.stack(terms).sum()
        weight = self.distillation_weight()
        try:
            get_event_storage().put_scalar("distill/weight", weight, smoothing_hint=False)
        except AssertionError:  # no EventStorage (a bare forward outside a trainer)
            pass
        return {f"loss_{self.loss_name}": total * weight}
