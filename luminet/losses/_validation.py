"""Shared input checks and dtype handling for the distillation losses."""

from __future__ import annotations

import torch


def check_logit_pair(
    logits_student: torch.Tensor,
    logits_teacher: torch.Tensor,
    *,
    check_finite: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a (student, teacher) logit pair and return float32 views of both.

    The teacher side is detached: no distillation loss ever sends gradient into the teacher.

    Raises:
        ValueError: when either tensor is not 2-D, the shapes differ, there are no rows or no
            columns, or (with ``check_finite``) a value is NaN or infinite.
    """
    if not isinstance(logits_student, torch.Tensor) or not isinstance(logits_teacher, torch.Tensor):
        raise TypeError(
            "logits must be torch.Tensor, got "
            f"{type(logits_student).__name__} and {type(logits_teacher).__name__}"
        )
    s_shape, t_shape = tuple(logits_student.shape), tuple(logits_teacher.shape)
    if logits_student.dim() != 2 or logits_teacher.dim() != 2:
        raise ValueError(
            "logits must be 2-D (rows = samples or ROIs, columns = classes); got student "
            f"shape {s_shape} and teacher shape {t_shape}"
        )
    if s_shape != t_shape:
        raise ValueError(
            f"student and teacher logits must have the same shape; got student {s_shape} "
            f"and teacher {t_shape}"
        )
    if s_shape[0] == 0 or s_shape[1] == 0:
        raise ValueError(f"logits must have at least one row and one column; got shape {s_shape}")
    student = logits_student.float()
    teacher = logits_teacher.detach().float()
    if check_finite:
        for name, x in (("student", student), ("teacher", teacher)):
            if not bool(torch.isfinite(x).all()):
                bad = int((~torch.isfinite(x)).sum())
                raise ValueError(
                    f"{name} logits of shape {tuple(x.shape)} contain {bad} non-finite "
                    "value(s) (NaN or inf); refusing to compute a distillation loss from them"
                )
    return student, teacher


def check_positive(name: str, value: float) -> float:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)
