"""The measured variants of a dense detector (RetinaNet): one callable per variant.

Variants (names used in tables and JSON):

* ``student``: :class:`~luminet_det.DistillRetinaNet` with ``MODEL.DISTILL.LOSS "none"`` (the
  student alone), one training step (forward, backward, SGD update).
* ``kd_sigmoid``, ``luminet_sigmoid``: DistillRetinaNet training steps with that sigmoid loss on
  the per-anchor class logits of every FPN level.
* ``teacher``: the teacher's part of a distillation step alone
  (:meth:`~luminet_det.teacher.Teacher.dense_logits`: input preparation, backbone+FPN and the
  class branch of the head, under ``no_grad``).
* ``loss_kd_sigmoid``, ``loss_luminet_sigmoid``: the loss alone, forward and backward, on random
  (anchors, K) logits of the batch's size, with the student's own anchor labels as target.

As in :mod:`.variants`, the SGD updates use learning rate 0 so that every measured step does the
same work.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from luminet.losses import apply_distill_loss

from ..config import add_distill_config, build_distill_loss_from_cfg
from ..dense_meta_arch import DistillRetinaNet
from ..dense_testing import tiny_retinanet_cfg
from ..teacher import Teacher, load_teacher_config
from ..testing import random_batch
from .presets import BENCH_CONFIG_DIR, BenchSettings

logger = logging.getLogger(__name__)

__all__ = [
    "DENSE_FAMILIES",
    "DENSE_MODEL_VARIANTS",
    "DENSE_LOSS_VARIANTS",
    "ALL_DENSE_VARIANTS",
    "DENSE_BENCH_CONFIGS",
    "build_dense_bench_cfgs",
    "make_dense_batch",
    "DenseBenchModels",
]

#: Dense families the benchmark knows (``tools/benchmark.py --family``).
DENSE_FAMILIES = ("retinanet",)
#: family -> the student config of the non-tiny presets (in ``configs/bench``).
DENSE_BENCH_CONFIGS = {"retinanet": "retinanet_r101_r18.yaml"}
#: variant -> MODEL.DISTILL.LOSS
DENSE_MODEL_VARIANTS: dict[str, str] = {
    "student": "none",
    "kd_sigmoid": "kd_sigmoid",
    "luminet_sigmoid": "luminet_sigmoid",
}
DENSE_LOSS_VARIANTS = ("loss_kd_sigmoid", "loss_luminet_sigmoid")
ALL_DENSE_VARIANTS = (*DENSE_MODEL_VARIANTS, "teacher", *DENSE_LOSS_VARIANTS)


def _check_family(family: str) -> None:
    if family not in DENSE_FAMILIES:
        raise ValueError(f"unknown dense benchmark family {family!r}; known: {DENSE_FAMILIES}")


def build_dense_bench_cfgs(settings: BenchSettings, family: str) -> tuple[CfgNode, CfgNode]:
    """The student config and the teacher config of a dense benchmark run.

    ``settings.config`` "tiny" is the tiny RetinaNet of :mod:`luminet_det.dense_testing` as both
    teacher and student; any other value is a DistillRetinaNet config file (a relative path is
    looked up in ``configs/bench`` first) whose ``MODEL.DISTILL.TEACHER_CONFIG`` names the
    teacher. Both run on ``settings.device`` with random-init weights; ``WARMUP_ITERS`` is 0.

    Raises:
        ValueError: unknown family, a config file that is not found, or ``settings.rois`` set
            (dense heads have no sampled ROIs).
    """
    _check_family(family)
    if settings.rois is not None:
        raise ValueError(
            f"benchmark setting rois does not apply to the dense family {family!r} (its heads "
            "score every anchor; there are no sampled ROIs); leave --rois out"
        )
    if settings.config == "tiny":
        student = tiny_retinanet_cfg(**{"MODEL.META_ARCHITECTURE": "DistillRetinaNet"})
        teacher = tiny_retinanet_cfg()
    else:
        path = _resolve_config(settings.config)
        student = get_cfg()
        add_distill_config(student)
        student.merge_from_file(path)
        teacher = load_teacher_config(student, path).clone()
        teacher.defrost()
    if student.MODEL.META_ARCHITECTURE != "DistillRetinaNet":
        raise ValueError(
            f"the {family} benchmark needs MODEL.META_ARCHITECTURE 'DistillRetinaNet'; "
            f"{settings.config!r} has {student.MODEL.META_ARCHITECTURE!r}"
        )
    for cfg in (student, teacher):
        cfg.MODEL.DEVICE = settings.device
        cfg.MODEL.WEIGHTS = ""
    student.MODEL.DISTILL.WARMUP_ITERS = 0
    return student, teacher


def _resolve_config(path: str) -> str:
    for candidate in (os.path.join(BENCH_CONFIG_DIR, path), path):
        if os.path.isfile(candidate):
            return candidate
    raise ValueError(f"benchmark config {path!r} not found (looked in {BENCH_CONFIG_DIR} and cwd)")


def make_dense_batch(settings: BenchSettings, num_classes: int) -> list[dict]:
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


class DenseBenchModels:
    """Builds the teacher once and a DistillRetinaNet student per variant (same initial weights).

    Args:
        student_cfg: DistillRetinaNet config (see :func:`build_dense_bench_cfgs`).
        teacher_cfg: the teacher's RetinaNet config.
        batch: the batch every variant runs on.
        seed: seed of the weights.
    """

    def __init__(
        self, student_cfg: CfgNode, teacher_cfg: CfgNode, batch: list[dict], seed: int = 0
    ):
        self.student_cfg = student_cfg
        self.teacher_cfg = teacher_cfg
        self.batch = batch
        self.seed = seed
        self.device = torch.device(student_cfg.MODEL.DEVICE)
        self._teacher: Teacher | None = None
        self._labels: list[torch.Tensor] | None = None

    # ------------------------------------------------------------------ models
    def teacher(self) -> Teacher:
        """The frozen, random-init teacher (built on first use), fed images in the student's
        format."""
        if self._teacher is None:
            torch.manual_seed(self.seed + 1)
            model = build_model(self.teacher_cfg)
            self._teacher = Teacher(
                model, image_format=self.student_cfg.INPUT.FORMAT, cfg=self.teacher_cfg
            ).to(self.device)
        return self._teacher

    def build_student(self, variant: str) -> DistillRetinaNet:
        """The DistillRetinaNet of a model variant (see :data:`DENSE_MODEL_VARIANTS`), in train
        mode."""
        if variant not in DENSE_MODEL_VARIANTS:
            raise KeyError(
                f"{variant!r} is not a dense model variant; known: {list(DENSE_MODEL_VARIANTS)}"
            )
        loss = DENSE_MODEL_VARIANTS[variant]
        torch.manual_seed(self.seed)
        kwargs = DistillRetinaNet.from_config(_loss_cfg(self.student_cfg, "none"))
        if loss != "none":
            kwargs.update(
                teacher=self.teacher(),
                distill_loss=build_distill_loss_from_cfg(_loss_cfg(self.student_cfg, loss)),
                loss_name=loss,
            )
        return DistillRetinaNet(**kwargs).to(self.device).train()

    def anchor_labels(self) -> list[torch.Tensor]:
        """The student's per-image anchor labels on the batch (its own assignment), cached."""
        if self._labels is None:
            m = self.build_student("student")
            with torch.no_grad():
                images = m.preprocess_image(self.batch)
                features = m.backbone(images.tensor)
                features = [features[f] for f in m.head_in_features]
                anchors = m.anchor_generator(features)
                gt = [x["instances"].to(self.device) for x in self.batch]
                self._labels, _ = m.label_anchors(anchors, gt)
            del m
        return self._labels

    def num_anchors(self) -> int:
        """Anchor rows of the batch (images x anchors per image): the rows the loss sees."""
        return sum(len(x) for x in self.anchor_labels())

    def num_classes(self) -> int:
        return int(self.student_cfg.MODEL.RETINANET.NUM_CLASSES)

    def teacher_bytes(self) -> int:
        """Bytes of the teacher's parameters and buffers."""
        t = self.teacher().model
        return sum(x.numel() * x.element_size() for x in (*t.parameters(), *t.buffers()))

    # ------------------------------------------------------------------ step callables
    def step_fn(self, variant: str) -> Callable[[], object]:
        """A callable running one step of ``variant`` (built now, run many times).

        Raises:
            KeyError: unknown variant.
        """
        if variant in DENSE_MODEL_VARIANTS:
            return self._train_step_fn(self.build_student(variant))
        if variant == "teacher":
            return self._teacher_fn()
        if variant in DENSE_LOSS_VARIANTS:
            return self._loss_fn(variant[len("loss_") :])
        raise KeyError(
            f"unknown dense benchmark variant {variant!r}; known: {list(ALL_DENSE_VARIANTS)}"
        )

    def _train_step_fn(self, model: DistillRetinaNet) -> Callable[[], object]:
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

        step.model = model
        return step

    def _teacher_fn(self) -> Callable[[], object]:
        teacher = self.teacher()
        batch = self.batch

        def step():
            return teacher.dense_logits(batch)

        return step

    def _loss_fn(self, name: str) -> Callable[[], object]:
        loss = build_distill_loss_from_cfg(_loss_cfg(self.student_cfg, name)).to(self.device)
        labels = self.anchor_labels()
        sizes = [len(x) for x in labels]
        target = torch.cat(labels).to(self.device)
        g = torch.Generator().manual_seed(self.seed)
        shape = (sum(sizes), self.num_classes())
        s = torch.randn(*shape, generator=g).to(self.device).requires_grad_()
        t = torch.randn(*shape, generator=g).to(self.device)

        def step():
            s.grad = None
            value = apply_distill_loss(loss, s, t, target, group_sizes=sizes)
            value.backward()
            return value.detach()

        return step
