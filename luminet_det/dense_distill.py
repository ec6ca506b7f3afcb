"""Dense distillation: a RetinaNet or FCOS student distilled from a frozen teacher of its family.

Design: two thin subclasses of the stock detectors (:mod:`luminet_det.dense_meta_arch`):
:class:`~luminet_det.dense_meta_arch.DistillRetinaNet` (``RetinaNet``, built from a yacs config)
and :class:`~luminet_det.dense_meta_arch.DistillFCOS` (``FCOS``, built from keyword arguments,
e.g. a LazyConfig: detectron2 has no yacs keys for FCOS), that share the mixin of this module,
:class:`DenseDistillation`, holding all the distillation logic. Subclassing rather than wrapping
the student keeps everything a stock user relies on: ``state_dict()`` holds the student only,
with the stock keys (checkpoints load strictly into a stock ``RetinaNet``/``FCOS``), inference is
the stock inference, and the stock ``forward_training`` computes the student's own losses. A
wrapper holding the student as a submodule would prefix every key and need its own inference
path. The teacher (a :class:`~luminet_det.teacher.Teacher`) is kept outside the module tree (not
in ``state_dict``, ``parameters`` or DDP's view), as in :class:`~luminet_det.DistillRCNN`.

One training step:

1. The student runs as the stock detector does: backbone, head (once), its own label assignment
   and losses. Its per-level class logits are the head's output; its per-anchor labels are the
   ones its own ``label_anchors`` returned for its loss (kept as they pass).
2. The teacher prepares the raw images as its own ``preprocess_image`` does and runs its backbone
   and the class branch of its head under ``no_grad`` (:meth:`Teacher.dense_logits
   <luminet_det.teacher.Teacher.dense_logits>`).
3. Both are flattened level by level into (N*R, K) rows in detectron2's anchor order
   (:func:`~luminet_det.dense_head.dense_logit_rows`), and the sigmoid distillation loss of the
   rows with the labels as ``target`` (``0..K-1`` foreground, ``K`` background, ``-1`` ignored)
   is added as ``loss_<name>``, times ``LOSS_WEIGHT`` and the warm-up ramp.

Teacher and student must agree on the anchor layout; that is checked when the model is built
(:func:`~luminet_det.dense_layout.check_same_dense_layout`). The loss must be a sigmoid loss
(``kd_sigmoid``, ``luminet_sigmoid``, or a registered loss whose module sets
``logit_kind = "sigmoid"``).
"""

from __future__ import annotations

import logging

import torch
from detectron2.config import CfgNode
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import get_event_storage
from torch import nn

from luminet.losses import NO_DISTILLATION, KDSigmoidLoss, LumiNetSigmoidLoss, apply_distill_loss

from .config import build_distill_loss_from_cfg
from .dense_head import dense_logit_rows
from .dense_layout import check_same_dense_layout
from .frozen_teacher import FrozenTeacherMixin
from .teacher import Teacher, build_teacher

logger = logging.getLogger(__name__)

__all__ = [
    "DenseDistillation",
    "SIGMOID_LOSS_TYPES",
    "is_sigmoid_loss",
    "check_dense_loss",
    "check_dense_teacher",
    "dense_distill_arguments",
]

#: The built-in sigmoid losses; another loss qualifies if its module sets ``logit_kind``.
SIGMOID_LOSS_TYPES = (KDSigmoidLoss, LumiNetSigmoidLoss)


def is_sigmoid_loss(loss: object) -> bool:
    """Whether ``loss`` compares per-class sigmoid logits (N, K) without a background column."""
    return isinstance(loss, SIGMOID_LOSS_TYPES) or getattr(loss, "logit_kind", None) == "sigmoid"


def check_dense_loss(loss: object, name: str) -> None:
    """Raise unless ``loss`` (registered as ``name``) is a sigmoid loss.

    Raises:
        ValueError: naming ``MODEL.DISTILL.LOSS``.
    """
    if not is_sigmoid_loss(loss):
        raise ValueError(
            f"MODEL.DISTILL.LOSS {name!r} is not a sigmoid loss: dense heads (RetinaNet, FCOS) "
            "score K classes with independent sigmoids and no background column, so softmax "
            "losses (luminet, kd, dkd) do not apply; use 'kd_sigmoid' or 'luminet_sigmoid' (or a "
            "registered loss whose module sets logit_kind = 'sigmoid'), or 'none'"
        )


def check_dense_teacher(student: nn.Module, teacher: Teacher) -> None:
    """Check that ``teacher`` scores ``student``'s anchors: the same anchor layout (see
    :func:`~luminet_det.dense_layout.check_same_dense_layout`) and the student's image format.

    Raises:
        ValueError: naming what does not fit.
    """
    check_same_dense_layout(student, teacher.model)
    if teacher.image_format != student.input_format:
        raise ValueError(
            f"the teacher is fed images in {teacher.image_format!r}, but the student's "
            f"INPUT.FORMAT is {student.input_format!r}"
        )


def dense_distill_arguments(cfg: CfgNode) -> dict:
    """The distillation arguments of :class:`DenseDistillation` from ``cfg.MODEL.DISTILL``.

    The loss is built and checked (a sigmoid loss) before the teacher, so a wrong loss fails
    before any weights are read.

    Returns:
        ``teacher``, ``distill_loss``, ``loss_name``, ``loss_weight``, ``warmup_iters``.

    Raises:
        KeyError: unknown ``MODEL.DISTILL.LOSS``.
        ValueError: a softmax loss, bad loss arguments, or any problem with the teacher.
    """
    d = cfg.MODEL.DISTILL
    name = str(d.LOSS).lower()
    loss = build_distill_loss_from_cfg(cfg)
    if loss is not None:
        check_dense_loss(loss, name)
    return {
        "teacher": build_teacher(cfg) if loss is not None else None,
        "distill_loss": loss,
        "loss_name": name if loss is not None else NO_DISTILLATION,
        "loss_weight": d.LOSS_WEIGHT,
        "warmup_iters": d.WARMUP_ITERS,
    }


class DenseDistillation(FrozenTeacherMixin):
    """Distillation for a detectron2 ``DenseDetector`` subclass (mix in before the detector).

    The subclass's ``__init__`` builds the detector, then calls :meth:`init_distillation`.
    """

    def init_distillation(
        self,
        *,
        teacher: Teacher | None,
        distill_loss: nn.Module | None,
        loss_name: str,
        loss_weight: float,
        warmup_iters: int,
    ) -> None:
        """Attach the teacher and the loss after the student is built, and check them.

        Args:
            teacher: the frozen teacher; None when ``distill_loss`` is None.
            distill_loss: a sigmoid distillation loss, called by
                :func:`luminet.losses.apply_distill_loss` on (N*R, K) rows; None trains the
                student alone.
            loss_name: the loss-dict key is ``"loss_" + loss_name``.
            loss_weight: multiplies the distillation loss (``MODEL.DISTILL.LOSS_WEIGHT``).
            warmup_iters: linear ramp ``min(iter / warmup_iters, 1)``; 0 for none.

        Raises:
            ValueError: a teacher without loss or the reverse, a softmax loss, a bad weight or
                warm-up, or a teacher whose anchor layout or image format differs.
        """
        if (teacher is None) != (distill_loss is None):
            raise ValueError(
                f"{type(self).__name__} needs both a teacher and a distillation loss, or "
                f"neither; got teacher={type(teacher).__name__}, "
                f"distill_loss={type(distill_loss).__name__}"
            )
        if distill_loss is not None:
            check_dense_loss(distill_loss, loss_name)
        self.check_distillation_weight(loss_weight, warmup_iters)
        if teacher is not None:
            check_dense_teacher(self, teacher)
        # Outside the module tree: not in state_dict/parameters/DDP (see the module docstring).
        object.__setattr__(self, "_recorded_labels", None)
        self.attach_teacher(teacher, distill_loss, loss_name, loss_weight, warmup_iters)

    # ----------------------------------------------------------------- training
    def forward(self, batched_inputs: list[dict]):
        """Training: the student's losses plus ``loss_<name>``; inference: the student's.

        Args:
            batched_inputs: as for the stock detector (DatasetMapper outputs with "instances"
                in training).

        Returns:
            In training a dict of losses; otherwise a list of dicts with "instances".

        Raises:
            ValueError: training inputs without "instances".
        """
        if not self.training or self._teacher is None:
            return super().forward(batched_inputs)
        if "instances" not in batched_inputs[0]:
            raise ValueError("dense distillation trains on annotated inputs: no 'instances'")
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        features = [features[f] for f in self.head_in_features]
        predictions = self.head(features)
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]

        recorded: list = []
        object.__setattr__(self, "_recorded_labels", recorded)
        try:
            losses = self.forward_training(images, features, predictions, gt_instances)
        finally:
            object.__setattr__(self, "_recorded_labels", None)
        if len(recorded) != 1:
            raise RuntimeError(
                "expected the student's label assignment to run exactly once in its training "
                f"forward; it ran {len(recorded)} times"
            )
        losses.update(self.distillation_losses(batched_inputs, predictions[0], recorded[0]))
        return losses

    def label_anchors(self, anchors: list[Boxes], gt_instances: list[Instances]):
        """The stock label assignment; during a distillation step its labels are also kept
        for the distillation loss's ``target``."""
        labels, boxes = super().label_anchors(anchors, gt_instances)
        if self._recorded_labels is not None:
            self._recorded_labels.append(labels)
        return labels, boxes

    def distillation_losses(
        self,
        batched_inputs: list[dict],
        student_level_logits: list[torch.Tensor],
        labels: list[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """``{"loss_<name>": weight * loss(student_rows, teacher_rows, labels)}``.

        Args:
            batched_inputs: the step's inputs (the teacher prepares their images itself).
            student_level_logits: the student head's per-level class logits (N, A*K, H, W).
            labels: the student's per-image anchor labels (R,), from its own assignment.

        Raises:
            RuntimeError: if a teacher level's shape differs from the student's (e.g. a
                different padding of the images).
        """
        teacher_level_logits = self._teacher.dense_logits(batched_inputs)
        if len(teacher_level_logits) != len(student_level_logits):
            raise RuntimeError(
                f"the teacher's head gave {len(teacher_level_logits)} levels, the student's "
                f"{len(student_level_logits)}"
            )
        for level, (t, s) in enumerate(zip(teacher_level_logits, student_level_logits)):
            if t.shape != s.shape:
                raise RuntimeError(
                    f"teacher and student class logits of FPN level {self.head_in_features[level]}"
                    f" differ in shape: teacher {tuple(t.shape)}, student {tuple(s.shape)}"
                )
        k = self.num_classes
        student_rows = dense_logit_rows(student_level_logits, k)
        teacher_rows = dense_logit_rows(teacher_level_logits, k)
        target = torch.cat(labels, dim=0)
        if target.shape[0] != student_rows.shape[0]:
            raise RuntimeError(
                f"{target.shape[0]} anchor labels for {student_rows.shape[0]} student logit rows"
            )
        sizes = [len(x) for x in labels]
        raw = apply_distill_loss(
            self._distill_loss, student_rows, teacher_rows, target, group_sizes=sizes
        )
        weight = self.distillation_weight()
        try:
            get_event_storage().put_scalar("distill/weight", weight, smoothing_hint=False)
        except AssertionError:  # no EventStorage (a bare forward outside a trainer)
            pass
        return {f"loss_{self.loss_name}": raw * weight}
