"""DistillRCNN: a Faster R-CNN student distilled from a frozen Faster R-CNN teacher on ROI logits.

The student *is* a stock :class:`~detectron2.modeling.GeneralizedRCNN` (this class subclasses it
and adds no parameters), so ``state_dict()`` holds the student only, with GeneralizedRCNN keys:
checkpoints written during training load strictly into a stock GeneralizedRCNN. The teacher is
kept outside the module tree (not in ``state_dict``, ``parameters`` or DDP's view), follows the
student across devices/dtypes, is frozen and always in eval mode; it is loaded from
``MODEL.DISTILL.TEACHER_WEIGHTS`` when the model is built.

One training step:

1. The student runs as usual (RPN, ROI sampling, box head, its own losses). A forward hook on
   its box predictor keeps the class logits of the sampled ROIs: the box head runs once.
2. The teacher normalises the raw image with its own input format and pixel mean/std, runs its
   backbone and box head on the student's sampled proposals (no teacher RPN), under ``no_grad``.
3. The distillation loss (``MODEL.DISTILL.LOSS``) of the two (R, K+1) logit matrices is added
   as ``loss_<name>``, times ``LOSS_WEIGHT`` and the warm-up ramp.

Inference is the student's inference.
"""

from __future__ import annotations

import contextlib
import logging

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import cat
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.meta_arch.build import META_ARCH_REGISTRY
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import get_event_storage
from torch import nn

from luminet.losses import NO_DISTILLATION, build_distill_loss

from .config import TEACHER_AUTOCAST_CHOICES, distill_loss_kwargs
from .distributed_perception import GatheredLumiNetLoss
from .teacher import build_teacher, check_box_head_model, load_teacher_config

logger = logging.getLogger(__name__)

__all__ = ["DistillRCNN", "build_distill_loss_from_cfg", "LUMINET_STATS_CHOICES"]

#: Values of ``MODEL.DISTILL.LUMINET.STATS``.
LUMINET_STATS_CHOICES = ("batch", "image")

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def build_distill_loss_from_cfg(cfg: CfgNode) -> nn.Module | None:
    """The distillation loss module that ``cfg.MODEL.DISTILL`` describes (None for "none").

    Raises:
        KeyError: unknown ``MODEL.DISTILL.LOSS``.
        ValueError: bad hyperparameters, or ``GATHER_STATS`` with a loss other than "luminet".
    """
    d = cfg.MODEL.DISTILL
    name = str(d.LOSS).lower()
    kwargs = distill_loss_kwargs(cfg)
    stats = str(d.LUMINET.STATS).lower()
    if stats not in LUMINET_STATS_CHOICES:
        raise ValueError(
            f"MODEL.DISTILL.LUMINET.STATS must be one of {LUMINET_STATS_CHOICES}; got "
            f"{d.LUMINET.STATS!r}"
        )
    if stats != "batch" and name != "luminet":
        raise ValueError(
            f"MODEL.DISTILL.LUMINET.STATS {d.LUMINET.STATS!r} applies to the 'luminet' loss only; "
            f"LOSS is {d.LOSS!r}"
        )
    if stats != "batch" and d.GATHER_STATS:
        raise ValueError(
            "MODEL.DISTILL.GATHER_STATS (statistics over all processes) contradicts "
            f"MODEL.DISTILL.LUMINET.STATS {d.LUMINET.STATS!r} (statistics per image)"
        )
    if d.GATHER_STATS:
        if name != "luminet":
            raise ValueError(
                f"MODEL.DISTILL.GATHER_STATS applies to the 'luminet' loss only; LOSS is {d.LOSS!r}"
            )
        return GatheredLumiNetLoss(**kwargs)
    try:
        loss = build_distill_loss(name, **kwargs)
    except KeyError as e:
        raise KeyError(f"MODEL.DISTILL.LOSS: {e.args[0]}") from e
    except TypeError as e:
        raise ValueError(f"MODEL.DISTILL.LOSS {d.LOSS!r}: {e}") from e
    if loss is not None and not callable(loss):
        raise ValueError(f"distillation loss {d.LOSS!r} built a non-callable {loss!r}")
    if isinstance(loss, nn.Module) and any(p.requires_grad for p in loss.parameters()):
        raise ValueError(
            f"distillation loss {d.LOSS!r} has trainable parameters; DistillRCNN keeps the loss "
            "outside the student (checkpoints hold the student only), so they would never be "
            "saved. Put them in the student model instead."
        )
    return loss


@META_ARCH_REGISTRY.register()
class DistillRCNN(GeneralizedRCNN):
    """GeneralizedRCNN student plus a frozen teacher and a distillation loss on ROI logits."""

    @configurable
    def __init__(
        self,
        *,
        teacher: GeneralizedRCNN | None = None,
        distill_loss: nn.Module | None = None,
        loss_name: str = "luminet",
        loss_weight: float = 1.0,
        warmup_iters: int = 0,
        teacher_autocast: str = "",
        recompute_student_logits: bool = False,
        per_image_loss: bool = False,
        **kwargs,
    ):
        """
        Args:
            teacher: frozen teacher (see :func:`luminet_det.teacher.build_teacher`); None when
                ``distill_loss`` is None.
            distill_loss: called as ``loss(logits_student, logits_teacher, target)`` on the
                (R, K+1) class logits of the sampled ROIs (target: their gt classes, background
                = K); None trains the student alone.
            loss_name: the loss-dict key is ``"loss_" + loss_name``.
            loss_weight: multiplies the distillation loss.
            warmup_iters: linear ramp ``min(iter / warmup_iters, 1)``; 0 for none.
            teacher_autocast: "" (inherit), "fp32", "bf16" or "fp16" for the teacher's forward.
            recompute_student_logits: benchmarking only: run the student's box head a second
                time for the distillation logits instead of reusing its first pass.
            per_image_loss: apply ``distill_loss`` to each image's ROIs separately and take
                the ROI-weighted mean (``MODEL.DISTILL.LUMINET.STATS "image"``).
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
        if teacher_autocast not in TEACHER_AUTOCAST_CHOICES:
            raise ValueError(
                f"MODEL.DISTILL.TEACHER_AUTOCAST must be one of {TEACHER_AUTOCAST_CHOICES}; "
                f"got {teacher_autocast!r}"
            )
        if warmup_iters < 0:
            raise ValueError(f"MODEL.DISTILL.WARMUP_ITERS must be >= 0; got {warmup_iters}")
        if not loss_weight >= 0:
            raise ValueError(f"MODEL.DISTILL.LOSS_WEIGHT must be >= 0; got {loss_weight}")
        self._flip_teacher_channels = False
        if teacher is not None:
            check_box_head_model(teacher, "teacher")
            k_s = self.roi_heads.box_predictor.num_classes
            k_t = teacher.roi_heads.box_predictor.num_classes
            if k_s != k_t:
                raise ValueError(
                    f"teacher and student must have the same classes; the teacher has {k_t} "
                    f"(MODEL.ROI_HEADS.NUM_CLASSES of TEACHER_CONFIG), the student {k_s}"
                )
            self._flip_teacher_channels = _needs_channel_flip(
                self.input_format, teacher.input_format
            )
            for p in teacher.parameters():
                p.requires_grad_(False)
            teacher.eval()
        # Outside the module tree: not in state_dict/parameters/DDP (see the module docstring).
        object.__setattr__(self, "_teacher", teacher)
        object.__setattr__(self, "_distill_loss", distill_loss)
        self.loss_name = str(loss_name).lower()
        self.loss_weight = float(loss_weight)
        self.warmup_iters = int(warmup_iters)
        self.teacher_autocast = teacher_autocast
        self.recompute_student_logits = bool(recompute_student_logits)
        if per_image_loss and isinstance(distill_loss, GatheredLumiNetLoss):
            raise ValueError("per-image statistics contradict statistics over all processes")
        self.per_image_loss = bool(per_image_loss)
        if self._teacher is not None:
            self._teacher.to(self.device)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        d = cfg.MODEL.DISTILL
        loss = build_distill_loss_from_cfg(cfg)
        teacher_cfg = None
        if loss is not None:
            teacher_cfg = load_teacher_config(cfg)
            k_s, k_t = cfg.MODEL.ROI_HEADS.NUM_CLASSES, teacher_cfg.MODEL.ROI_HEADS.NUM_CLASSES
            if k_s != k_t:
                raise ValueError(
                    f"teacher and student must have the same classes; the teacher config "
                    f"{d.TEACHER_CONFIG!r} has MODEL.ROI_HEADS.NUM_CLASSES {k_t}, the student "
                    f"config {k_s}"
                )
            _needs_channel_flip(cfg.INPUT.FORMAT, teacher_cfg.INPUT.FORMAT)
        ret = super().from_config(cfg)
        ret.update(
            teacher=build_teacher(teacher_cfg) if teacher_cfg is not None else None,
            distill_loss=loss,
            loss_name=str(d.LOSS).lower() if loss is not None else NO_DISTILLATION,
            loss_weight=d.LOSS_WEIGHT,
            warmup_iters=d.WARMUP_ITERS,
            teacher_autocast=d.TEACHER_AUTOCAST,
            recompute_student_logits=d.RECOMPUTE_STUDENT_LOGITS,
            per_image_loss=loss is not None and str(d.LUMINET.STATS).lower() == "image",
        )
        return ret

    # ----------------------------------------------------------------- module plumbing
    @property
    def teacher(self) -> GeneralizedRCNN | None:
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

    def train(self, mode: bool = True):
        super().train(mode)
        if self._teacher is not None:
            self._teacher.eval()
        return self

    def extra_repr(self) -> str:
        if self._teacher is None:
            return "distillation: none (student alone)"
        return (
            f"distillation: loss_{self.loss_name}={self._distill_loss!r} x {self.loss_weight} "
            f"(warm-up {self.warmup_iters} iters), teacher: {type(self._teacher).__name__} "
            f"with {type(self._teacher.backbone).__name__} backbone (frozen, not saved)"
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

        distill = self._teacher is not None
        captured: list[torch.Tensor] = []
        handle = None
        if distill and not self.recompute_student_logits:
            handle = self.roi_heads.box_predictor.register_forward_hook(
                lambda _m, _i, out: captured.append(out[0])
            )
        try:
            sampled, detector_losses = self.roi_heads(images, features, proposals, gt_instances)
        finally:
            if handle is not None:
                handle.remove()

        if self.vis_period > 0:
            storage = get_event_storage()
            if storage.iter % self.vis_period == 0:
                self.visualize_training(batched_inputs, proposals)

        losses = {}
        losses.update(detector_losses)
        losses.update(proposal_losses)
        if distill:
            boxes = [p.proposal_boxes for p in sampled]
            if self.recompute_student_logits:
                student_logits = self.student_roi_logits(features, boxes)
            else:
                if len(captured) != 1:
                    raise RuntimeError(
                        "expected the student's box predictor to run exactly once in the ROI "
                        f"heads' training forward; it ran {len(captured)} times"
                    )
                student_logits = captured[0]
            losses.update(self.distillation_losses(batched_inputs, sampled, student_logits))
        return losses

    def student_roi_logits(
        self, features: dict[str, torch.Tensor], boxes: list[Boxes]
    ) -> torch.Tensor:
        """Student class logits (R, K+1) for ``boxes``, by a separate box-head pass."""
        heads = self.roi_heads
        x = heads.box_pooler([features[f] for f in heads.box_in_features], boxes)
        return heads.box_predictor(heads.box_head(x))[0]

    def teacher_images(self, batched_inputs: list[dict]) -> ImageList:
        """The raw images as the teacher's own ``preprocess_image`` prepares them (its pixel
        mean/std, size divisibility and, where detectron2 has them, padding constraints), after
        reversing the channel order when the teacher's input format differs."""
        if self._flip_teacher_channels:
            batched_inputs = [{"image": x["image"].flip(0)} for x in batched_inputs]
        return self._teacher.preprocess_image(batched_inputs)

    @torch.no_grad()
    def teacher_roi_logits(self, batched_inputs: list[dict], boxes: list[Boxes]) -> torch.Tensor:
        """Teacher class logits (R, K+1), float32, for ``boxes`` (one Boxes per image).

        The teacher runs its backbone/FPN on its own normalisation of the same images, then its
        box head on ``boxes`` (image coordinates of the resized input, shared by both models).
        """
        t = self._teacher
        if t is None:
            raise ValueError("this DistillRCNN has no teacher (MODEL.DISTILL.LOSS is 'none')")
        if t.training:  # someone called teacher.train() directly
            t.eval()
        with self._teacher_autocast_context():
            images = self.teacher_images(batched_inputs)
            features = t.backbone(images.tensor)
            heads = t.roi_heads
            x = heads.box_pooler([features[f] for f in heads.box_in_features], boxes)
            logits = heads.box_predictor(heads.box_head(x))[0]
        return logits.float()

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
            batched_inputs: the step's inputs (the teacher normalises their images itself).
            sampled: the student's sampled proposals (``proposal_boxes``, ``gt_classes``).
            student_logits: (R, K+1) student class logits of those proposals, in order.
        """
        boxes = [p.proposal_boxes for p in sampled]
        n = sum(len(b) for b in boxes)
        if student_logits.shape[0] != n:
            raise RuntimeError(
                f"{student_logits.shape[0]} student logit rows for {n} sampled proposals"
            )
        target = cat([p.gt_classes for p in sampled], dim=0) if n else None
        gathered = isinstance(self._distill_loss, GatheredLumiNetLoss)
        if n == 0 and not gathered:
            # Nothing to distill on this device; keep the graph connected for DDP.
            raw = student_logits.sum() * 0.0
        else:
            if n:
                teacher_logits = self.teacher_roi_logits(batched_inputs, boxes)
            else:
                teacher_logits = student_logits.detach().float()
            if self.per_image_loss and n:
                raw = self._per_image_distill_loss(
                    student_logits, teacher_logits, target, [len(b) for b in boxes]
                )
            else:
                raw = self._distill_loss(student_logits, teacher_logits, target)
        weight = self.distillation_weight()
        try:
            get_event_storage().put_scalar("distill/weight", weight, smoothing_hint=False)
        except AssertionError:  # no EventStorage (a bare forward outside a trainer)
            pass
        return {f"loss_{self.loss_name}": raw * weight}

    def _per_image_distill_loss(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        target: torch.Tensor,
        sizes: list[int],
    ) -> torch.Tensor:
        """ROI-weighted mean of the loss of each image's ROIs (statistics per image)."""
        total = student_logits.new_zeros((), dtype=torch.float32)
        for s, t, y in zip(
            student_logits.split(sizes), teacher_logits.split(sizes), target.split(sizes)
        ):
            if len(s):
                total = total + self._distill_loss(s, t, y) * len(s)
        return total / sum(sizes)

    def _teacher_autocast_context(self):
        mode = self.teacher_autocast
        if mode == "":
            return contextlib.nullcontext()
        device_type = self._teacher.device.type
        if mode == "fp32":
            return torch.autocast(device_type, enabled=False)
        return torch.autocast(device_type, dtype=_AUTOCAST_DTYPES[mode])


def _needs_channel_flip(student_format: str, teacher_format: str) -> bool:
    """Whether the teacher needs the channels of the student's input image reversed.

    Raises:
        ValueError: for formats other than RGB/BGR that differ.
    """
    if student_format == teacher_format:
        return False
    if {student_format, teacher_format} == {"RGB", "BGR"}:
        return True
    raise ValueError(
        f"cannot convert the student's INPUT.FORMAT {student_format!r} to the teacher's "
        f"{teacher_format!r}; supported: equal formats, or RGB <-> BGR"
    )
