"""The measured variants: one callable per variant that runs one step on a fixed batch.

Variants (names used in tables and JSON):

* ``student``: DistillRCNN with ``MODEL.DISTILL.LOSS "none"`` (the student alone), one training
  step (forward, backward, SGD update).
* ``kd``, ``dkd``, ``luminet``: DistillRCNN training steps with that distillation loss.
* ``reference``: the design of public Detectron2 KD code (:class:`~.reference.ReferenceDistillRCNN`:
  the student's box head runs a second time on the sampled proposals to get the distillation
  logits), with the LumiNet loss, so that it differs from ``luminet`` by that second pass only.
* ``teacher``: the teacher's part of a distillation step alone
  (:meth:`~luminet_det.teacher.Teacher.roi_logits`: input preparation, backbone+FPN and box head
  on the student's sampled proposals, under ``no_grad``).
* ``student_box_head``: the student's ROI pooler + box head + box predictor, forward and backward,
  on the sampled proposals (the extra work of ``reference``).
* ``loss_luminet``, ``loss_kd``, ``loss_dkd``: the loss alone, forward and backward, on random
  (ROIs, classes + 1) logits of the batch's size.
* ``luminet_bf16``, ``teacher_bf16``: as ``luminet``/``teacher`` with the teacher under bf16
  autocast (only with ``teacher_autocast="bf16"``).

The SGD updates use learning rate 0: every measured step does the arithmetic of a real update,
but sees the same weights, so all steps of a variant do the same work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model
from detectron2.structures import Instances
from detectron2.utils.events import EventStorage

from ..config import build_distill_loss_from_cfg
from ..distill_rcnn import DistillRCNN
from ..teacher import Teacher
from ..testing import random_batch
from .presets import BenchSettings
from .reference import ReferenceDistillRCNN

logger = logging.getLogger(__name__)

__all__ = [
    "MODEL_VARIANTS",
    "LOSS_VARIANTS",
    "ALL_VARIANTS",
    "BenchModels",
    "make_batch",
]

#: variant -> (MODEL.DISTILL.LOSS, model class, teacher autocast)
MODEL_VARIANTS: dict[str, tuple[str, type[DistillRCNN], str]] = {
    "student": ("none", DistillRCNN, ""),
    "kd": ("kd", DistillRCNN, ""),
    "dkd": ("dkd", DistillRCNN, ""),
    "luminet": ("luminet", DistillRCNN, ""),
    "reference": ("luminet", ReferenceDistillRCNN, ""),
    "luminet_bf16": ("luminet", DistillRCNN, "bf16"),
}
LOSS_VARIANTS = ("loss_luminet", "loss_kd", "loss_dkd")
ALL_VARIANTS = (
    *MODEL_VARIANTS,
    "teacher",
    "teacher_bf16",
    "student_box_head",
    *LOSS_VARIANTS,
)


def make_batch(settings: BenchSettings, num_classes: int) -> list[dict]:
    """Synthetic DatasetMapper-like inputs of the preset's size (uint8 images on the CPU)."""
    return random_batch(
        settings.images,
        (settings.height, settings.width),
        num_classes=num_classes,
        seed=settings.seed,
        boxes_per_image=settings.boxes_per_image,
    )


def _loss_cfg(cfg: CfgNode, loss: str) -> CfgNode:
    c = cfg.clone()
    c.defrost()
    c.MODEL.DISTILL.LOSS = loss
    return c


class BenchModels:
    """Builds the teacher once and a student per variant (same seed: same initial weights).

    Args:
        student_cfg: DistillRCNN config (see :func:`~.presets.build_bench_cfgs`).
        teacher_cfg: the teacher's GeneralizedRCNN config.
        batch: the batch every variant runs on.
        seed: seed of the weights.
        sampled: the sampled proposals to use (e.g. from another process); by default a
            student samples them on ``batch``.
    """

    def __init__(
        self,
        student_cfg: CfgNode,
        teacher_cfg: CfgNode,
        batch: list[dict],
        seed: int = 0,
        sampled: list[Instances] | None = None,
    ):
        self.student_cfg = student_cfg
        self.teacher_cfg = teacher_cfg
        self.batch = batch
        self.seed = seed
        self.device = torch.device(student_cfg.MODEL.DEVICE)
        self._teacher_model = None
        self._teachers: dict[str, Teacher] = {}
        self._sampled = None if sampled is None else [p.to(self.device) for p in sampled]

    # ------------------------------------------------------------------ models
    def teacher(self, autocast: str = "") -> Teacher:
        """The frozen, random-init teacher (built on first use; one model shared by every
        autocast mode), fed images in the student's format."""
        if self._teacher_model is None:
            torch.manual_seed(self.seed + 1)
            self._teacher_model = build_model(self.teacher_cfg)
        if autocast not in self._teachers:
            self._teachers[autocast] = Teacher(
                self._teacher_model,
                image_format=self.student_cfg.INPUT.FORMAT,
                autocast=autocast,
                cfg=self.teacher_cfg,
            )
        return self._teachers[autocast]

    def build_student(self, variant: str) -> DistillRCNN:
        """The DistillRCNN of a model variant (see :data:`MODEL_VARIANTS`), in train mode."""
        if variant not in MODEL_VARIANTS:
            raise KeyError(f"{variant!r} is not a model variant; known: {list(MODEL_VARIANTS)}")
        loss, model_class, autocast = MODEL_VARIANTS[variant]
        torch.manual_seed(self.seed)
        kwargs = DistillRCNN.from_config(_loss_cfg(self.student_cfg, "none"))
        if loss != "none":
            kwargs.update(
                teacher=self.teacher(autocast),
                distill_loss=build_distill_loss_from_cfg(_loss_cfg(self.student_cfg, loss)),
                loss_name=loss,
            )
        model = model_class(**kwargs).to(self.device)
        return model.train()

    def sampled_proposals(self) -> list[Instances]:
        """The ROIs a student samples on the batch (proposal_boxes, gt_classes), cached."""
        if self._sampled is None:
            m = self.build_student("student")
            with torch.no_grad(), EventStorage(0):
                images = m.preprocess_image(self.batch)
                gt = [x["instances"].to(self.device) for x in self.batch]
                features = m.backbone(images.tensor)
                proposals, _ = m.proposal_generator(images, features, gt)
                self._sampled = m.roi_heads.label_and_sample_proposals(proposals, gt)
            del m
        return self._sampled

    def num_rois(self) -> int:
        return sum(len(p) for p in self.sampled_proposals())

    def num_classes(self) -> int:
        return int(self.student_cfg.MODEL.ROI_HEADS.NUM_CLASSES)

    def teacher_bytes(self) -> int:
        """Bytes of the teacher's parameters and buffers."""
        t = self.teacher().model
        return sum(x.numel() * x.element_size() for x in (*t.parameters(), *t.buffers()))

    # ------------------------------------------------------------------ step callables
    def step_fn(self, variant: str) -> Callable[[], object]:
        """A callable running one step of ``variant`` (built now, run many times)."""
        if variant in MODEL_VARIANTS:
            return self._train_step_fn(self.build_student(variant))
        if variant in ("teacher", "teacher_bf16"):
            return self._teacher_fn("bf16" if variant == "teacher_bf16" else "")
        if variant == "student_box_head":
            return self._box_head_fn()
        if variant in LOSS_VARIANTS:
            return self._loss_fn(variant[len("loss_") :])
        raise KeyError(f"unknown benchmark variant {variant!r}; known: {list(ALL_VARIANTS)}")

    def _train_step_fn(self, model: DistillRCNN) -> Callable[[], object]:
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=0.0, momentum=0.9)
        batch = self.batch

        def step():
            with EventStorage(0):
                losses = model(batch)
            total = sum(losses.values())
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            return total.detach()

        step.model = model  # for loss-value checks and memory accounting
        return step

    def _teacher_fn(self, autocast: str) -> Callable[[], object]:
        teacher = self.teacher(autocast).to(self.device)
        boxes = [p.proposal_boxes for p in self.sampled_proposals()]
        batch = self.batch

        def step():
            return teacher.roi_logits(batch, boxes)

        return step

    def _box_head_fn(self) -> Callable[[], object]:
        m = self.build_student("student")
        boxes = [p.proposal_boxes for p in self.sampled_proposals()]
        with torch.no_grad():
            images = m.preprocess_image(self.batch)
            features = m.backbone(images.tensor)
        heads = m.roi_heads
        feats = [features[f].detach().requires_grad_() for f in heads.box_in_features]

        def step():
            m.zero_grad(set_to_none=True)
            for f in feats:
                f.grad = None
            x = heads.box_pooler(feats, boxes)
            logits = heads.box_predictor(heads.box_head(x))[0]
            logits.float().logsumexp(dim=1).mean().backward()
            return logits.detach()

        return step

    def _loss_fn(self, name: str) -> Callable[[], object]:
        loss = build_distill_loss_from_cfg(_loss_cfg(self.student_cfg, name)).to(self.device)
        sampled = self.sampled_proposals()
        r, c = self.num_rois(), self.num_classes() + 1
        g = torch.Generator().manual_seed(self.seed)
        s = torch.randn(r, c, generator=g).to(self.device).requires_grad_()
        t = torch.randn(r, c, generator=g).to(self.device)
        target = torch.cat([p.gt_classes for p in sampled]).to(self.device)

        def step():
            s.grad = None
            value = loss(s, t, target)
            value.backward()
            return value.detach()

        return step
