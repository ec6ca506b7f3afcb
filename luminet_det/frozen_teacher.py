"""What every distilling meta-architecture shares: a frozen teacher and a loss held outside the
module tree, and the warmed-up weight of the distillation term.

Mixed in before the detectron2 meta-architecture (``DistillRCNN``, the dense detectors). The
teacher and the loss are attributes set with ``object.__setattr__``, so they are not submodules:
not in ``state_dict``, ``parameters()`` or DDP's reducer; checkpoints hold the student only.
``.to()`` / ``.half()`` still reach them through :meth:`_apply`.
"""

from __future__ import annotations

from detectron2.utils.events import get_event_storage
from torch import nn

from .teacher import Teacher

__all__ = ["FrozenTeacherMixin"]


class FrozenTeacherMixin:
    """Teacher, loss and warm-up of a distilling meta-architecture (see the module docstring)."""

    @staticmethod
    def check_distillation_weight(loss_weight: float, warmup_iters: int) -> None:
        """Raise a ``ValueError`` naming the key for a negative warm-up or weight (or NaN)."""
        if warmup_iters < 0:
            raise ValueError(f"MODEL.DISTILL.WARMUP_ITERS must be >= 0; got {warmup_iters}")
        if not loss_weight >= 0:
            raise ValueError(f"MODEL.DISTILL.LOSS_WEIGHT must be >= 0; got {loss_weight}")

    def attach_teacher(
        self,
        teacher: Teacher | None,
        distill_loss: nn.Module | None,
        loss_name: str,
        loss_weight: float,
        warmup_iters: int,
    ) -> None:
        """Keep the (checked) teacher and loss outside the module tree, with the term's name,
        weight and warm-up; move the teacher to the student's device."""
        object.__setattr__(self, "_teacher", teacher)
        object.__setattr__(self, "_distill_loss", distill_loss)
        self.loss_name = str(loss_name).lower()
        self.loss_weight = float(loss_weight)
        self.warmup_iters = int(warmup_iters)
        if teacher is not None:
            teacher.to(self.device)

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

    def teacher_description(self) -> str:
        """How :meth:`extra_repr` names the teacher."""
        return type(self._teacher.model).__name__

    def extra_repr(self) -> str:
        if self._teacher is None:
            return "distillation: none (student alone)"
        return (
            f"distillation: loss_{self.loss_name}={self._distill_loss!r} x {self.loss_weight} "
            f"(warm-up {self.warmup_iters} iters), teacher: {self.teacher_description()} "
            f"(frozen, not saved)"
        )

    def distillation_weight(self) -> float:
        """``LOSS_WEIGHT * min(iter / WARMUP_ITERS, 1)`` at the current storage iteration."""
        if self.warmup_iters <= 0:
            return self.loss_weight
        it = get_event_storage().iter
        return self.loss_weight * min(it / self.warmup_iters, 1.0)
