"""The dense distillation meta-architectures: thin subclasses of detectron2's RetinaNet and FCOS.

All the distillation logic is the mixin :class:`~luminet_det.dense_distill.DenseDistillation`
(see :mod:`luminet_det.dense_distill` for the design and one training step); the classes here
only build the stock detector and attach the teacher and the loss. ``DistillRetinaNet`` is
registered in ``META_ARCH_REGISTRY`` at import.
"""

from __future__ import annotations

import logging

from detectron2.config import CfgNode, configurable
from detectron2.modeling.meta_arch.build import META_ARCH_REGISTRY
from detectron2.modeling.meta_arch.fcos import FCOS
from detectron2.modeling.meta_arch.retinanet import RetinaNet
from torch import nn

from .dense_distill import DenseDistillation, dense_distill_arguments
from .teacher import Teacher

logger = logging.getLogger(__name__)

__all__ = ["DistillRetinaNet", "DistillFCOS"]


@META_ARCH_REGISTRY.register()
class DistillRetinaNet(DenseDistillation, RetinaNet):
    """RetinaNet student plus a frozen RetinaNet teacher and a sigmoid loss on anchor logits.

    Built from a yacs config: the stock ``MODEL.RETINANET.*``/``MODEL.ANCHOR_GENERATOR.*`` keys
    for the student, ``MODEL.DISTILL.*`` for the distillation (see docs/dense.md).
    """

    @configurable
    def __init__(
        self,
        *,
        teacher: Teacher | None = None,
        distill_loss: nn.Module | None = None,
        loss_name: str = "luminet_sigmoid",
        loss_weight: float = 1.0,
        warmup_iters: int = 0,
        **kwargs,
    ):
        """
        Args:
            teacher, distill_loss, loss_name, loss_weight, warmup_iters: see
                :meth:`DenseDistillation.init_distillation`.
            kwargs: the arguments of :class:`~detectron2.modeling.RetinaNet` (the student).
        """
        super().__init__(**kwargs)
        self.init_distillation(
            teacher=teacher,
            distill_loss=distill_loss,
            loss_name=loss_name,
            loss_weight=loss_weight,
            warmup_iters=warmup_iters,
        )

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        distill = dense_distill_arguments(cfg)
        ret = super().from_config(cfg)
        ret.update(distill)
        return ret


class DistillFCOS(DenseDistillation, FCOS):
    """FCOS student plus a frozen FCOS teacher and a sigmoid loss on point logits.

    detectron2 builds FCOS from a LazyConfig only (no yacs keys), so this class takes keyword
    arguments (it is therefore not in ``META_ARCH_REGISTRY``): ``instantiate`` a LazyConfig
    whose ``model._target_`` is this class, or call it directly. The teacher is an FCOS wrapped
    by :meth:`Teacher.from_model <luminet_det.teacher.Teacher.from_model>`; the stock FCOS has
    no ``input_format``, so set ``teacher_model.input_format`` (e.g. "BGR") before wrapping it.
    """

    def __init__(
        self,
        *,
        teacher: Teacher | None = None,
        distill_loss: nn.Module | None = None,
        loss_name: str = "luminet_sigmoid",
        loss_weight: float = 1.0,
        warmup_iters: int = 0,
        input_format: str = "BGR",
        **kwargs,
    ):
        """
        Args:
            teacher, distill_loss, loss_name, loss_weight, warmup_iters: see
                :meth:`DenseDistillation.init_distillation`.
            input_format: channel order of the images the student is fed ("BGR" or "RGB").
            kwargs: the arguments of :class:`~detectron2.modeling.FCOS` (the student).
        """
        super().__init__(**kwargs)
        self.input_format = input_format
        self.init_distillation(
            teacher=teacher,
            distill_loss=distill_loss,
            loss_name=loss_name,
            loss_weight=loss_weight,
            warmup_iters=warmup_iters,
        )
