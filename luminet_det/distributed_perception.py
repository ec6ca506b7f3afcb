"""LumiNet with per-class statistics taken over the ROIs of all processes (optional).

By default LumiNet's perception standardises each class column over the ROIs of one process
(one GPU), like the authors' DataParallel code. With ``MODEL.DISTILL.GATHER_STATS`` the mean and
variance come from the sum, sum of squares and count of every process (one all-reduce per model
per step); gradients flow through the local part only.
"""

from __future__ import annotations

import logging

import torch
import torch.distributed as dist
from torch import nn

from luminet.losses import check_logit_pair, check_positive, perception, perception_kl

logger = logging.getLogger(__name__)

__all__ = ["global_class_moments", "perception_with_moments", "gathered_luminet_loss",
           "GatheredLumiNetLoss"]  # fmt: skip


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def global_class_moments(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean and biased variance of ``logits`` over the rows of all processes.

    Every process must call this the same number of times (it all-reduces), also with 0 rows.
    The returned tensors are differentiable with respect to the local ``logits`` (the other
    processes' contributions are constants). Computed in float64.

    Args:
        logits: (N, C) local logits; N may be 0.

    Returns:
        ``(mean, var)``, each of shape (1, C), float64.
    """
    if logits.dim() != 2:
        raise ValueError(f"expected 2-D logits (N, C); got shape {tuple(logits.shape)}")
    x = logits.double()
    n, c = x.shape
    local = torch.cat([x.sum(0), (x * x).sum(0), x.new_full((1,), float(n))])
    total = local
    if _world_size() > 1:
        reduced = local.detach().clone()
        dist.all_reduce(reduced)
        total = local + (reduced - local.detach())
    count = total[-1]
    if not count > 0:
        raise ValueError("no ROI on any process: cannot compute class statistics")
    mean = total[:c] / count
    var = (total[c : 2 * c] / count - mean * mean).clamp_min(0.0)
    return mean.unsqueeze(0), var.unsqueeze(0)


def perception_with_moments(
    logits: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """LumiNet perception with given per-class ``mean``/``var``, computed in float64 (float32
    result)."""
    return perception(logits.double(), eps, mean=mean, var=var).float()


def gathered_luminet_loss(
    logits_student: torch.Tensor,
    logits_teacher: torch.Tensor,
    temperature: float = 1.0,
    eps: float = 1e-5,
) -> torch.Tensor:
    """:func:`luminet.losses.luminet_loss` with statistics over the ROIs of all processes.

    In a single process it equals ``luminet_loss`` (up to float rounding). The KL is averaged
    over the local rows; DDP then averages the gradients over processes.
    """
    check_positive("temperature", temperature)
    n_local = logits_student.shape[0]
    if n_local:
        student, teacher = check_logit_pair(logits_student, logits_teacher)
    else:
        student, teacher = logits_student.float(), logits_teacher.detach().float()
    s_mean, s_var = global_class_moments(student)
    t_mean, t_var = global_class_moments(teacher)
    if n_local == 0:
        return student.sum() * 0.0 + (s_mean.sum() + s_var.sum()).float() * 0.0
    h_s = perception_with_moments(student, s_mean, s_var, eps)
    h_t = perception_with_moments(teacher, t_mean, t_var, eps)
    return perception_kl(h_s, h_t, temperature)


class GatheredLumiNetLoss(nn.Module):
    """Module form of :func:`gathered_luminet_loss` (``target`` accepted and ignored)."""

    def __init__(self, temperature: float = 1.0, eps: float = 1e-5):
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        self.eps = check_positive("eps", eps)

    def forward(self, logits_student, logits_teacher, target=None) -> torch.Tensor:
        return gathered_luminet_loss(logits_student, logits_teacher, self.temperature, self.eps)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, eps={self.eps}, statistics=all processes"
