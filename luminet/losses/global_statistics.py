"""LumiNet with per-class statistics over the rows of all processes, with the exact gradient.

LumiNet's perception standardises each class column over a batch. Under data parallelism the
batch of one process is a slice of the global batch; with ``stats="global"`` the mean and
variance are those of the rows of *every* process. They come from one all-reduce of the per-class
sums, sums of squares and the row count, made differentiable the way synchronised batch norm
does it (``torch.distributed.nn.functional.all_reduce``: its backward all-reduces the incoming
gradients), so each process also receives the gradient that its logits get through the other
processes' losses. Treating the other processes' statistics as constants instead gives a
visibly wrong gradient.

Each process returns ``W / N * sum of its rows' KL`` (``W`` processes, ``N`` rows in all), so
that the mean over processes, which data-parallel training optimises (DDP averages gradients),
is the loss of one process on the concatenated batch, and so is its gradient. Every process
must call the loss at every step, also with zero rows; a step in which no process has a row
gives a zero loss.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ._validation import check_logit_pair, check_positive
from .perception import perception

logger = logging.getLogger(__name__)

__all__ = ["world_size", "global_class_moments", "global_luminet_loss", "GlobalLumiNetLoss"]


def world_size() -> int:
    """Processes of the default group (1 without an initialised ``torch.distributed``)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def global_class_moments(
    *logits: torch.Tensor,
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Per-class mean and biased variance of each ``(N, C)`` tensor over the rows of all
    processes, with a single (differentiable) all-reduce, in float64.

    Every process must call this the same number of times (it all-reduces), also with N = 0.

    Args:
        logits: one or more tensors with the same (local) number of rows N.

    Returns:
        ``(count, [(mean, var), ...])``: the total number of rows (float64 scalar) and, per
        input, its (1, C) mean and variance (zeros when ``count`` is 0).
    """
    if not logits or any(x.dim() != 2 for x in logits):
        raise ValueError(
            f"expected 2-D logits (N, C); got shapes {[tuple(x.shape) for x in logits]}"
        )
    n = logits[0].shape[0]
    if any(x.shape[0] != n for x in logits):
        raise ValueError(f"all logits need the same rows; got {[tuple(x.shape) for x in logits]}")
    xs = [x.double() for x in logits]
    parts = [t for x in xs for t in (x.sum(0), (x * x).sum(0))]
    local = torch.cat([*parts, xs[0].new_full((1,), float(n))])
    total = local
    if world_size() > 1:
        from torch.distributed.nn.functional import all_reduce

        total = all_reduce(local)
    count = total[-1]
    denom = count.clamp_min(1.0)
    moments, offset = [], 0
    for x in xs:
        c = x.shape[1]
        mean = total[offset : offset + c] / denom
        var = (total[offset + c : offset + 2 * c] / denom - mean * mean).clamp_min(0.0)
        moments.append((mean.unsqueeze(0), var.unsqueeze(0)))
        offset += 2 * c
    return count, moments


def global_luminet_loss(
    logits_student: torch.Tensor,
    logits_teacher: torch.Tensor,
    temperature: float = 1.0,
    alpha: float = 1.0,
    eps: float = 1e-5,
    check_finite: bool = True,
) -> torch.Tensor:
    """:func:`luminet.losses.luminet_loss` with statistics over the rows of all processes.

    In one process it equals ``luminet_loss`` (up to float rounding: the statistics are
    computed in float64). See the module docstring for the scaling across processes.

    Args:
        logits_student: (N, C) local student logits; N may be 0.
        logits_teacher: (N, C) local teacher logits (detached inside).
        temperature: softmax temperature (> 0).
        alpha: the loss is multiplied by ``alpha ** 2``.
        eps: variance stabiliser of the perception.
        check_finite: raise ``ValueError`` on NaN/inf inputs.

    Returns:
        A float32 scalar: ``W / N_total * alpha^2 * sum of the local rows' KL``.
    """
    check_positive("temperature", temperature)
    check_positive("eps", eps)
    n_local = logits_student.shape[0]
    if n_local:
        student, teacher = check_logit_pair(
            logits_student, logits_teacher, check_finite=check_finite
        )
    else:
        if logits_student.shape != logits_teacher.shape or logits_student.dim() != 2:
            raise ValueError(
                "student and teacher logits must be 2-D with the same shape; got "
                f"{tuple(logits_student.shape)} and {tuple(logits_teacher.shape)}"
            )
        student, teacher = logits_student.float(), logits_teacher.detach().float()
    count, ((s_mean, s_var), (t_mean, t_var)) = global_class_moments(student, teacher)
    if n_local == 0:
        # No local rows: nothing to add, but the statistics stay in the graph so that this
        # process joins the all-reduce of their gradients in the backward pass.
        return student.sum() * 0.0 + (s_mean.sum() + s_var.sum()).float() * 0.0
    h_s = perception(student.double(), eps, mean=s_mean, var=s_var).float()
    h_t = perception(teacher.double(), eps, mean=t_mean, var=t_var).float()
    log_p_s = F.log_softmax(h_s / temperature, dim=1)
    log_p_t = F.log_softmax(h_t / temperature, dim=1)
    kl_sum = F.kl_div(log_p_s, log_p_t, reduction="sum", log_target=True)
    scale = (world_size() / count).detach().float()
    return kl_sum * scale * (alpha**2)


class GlobalLumiNetLoss(nn.Module):
    """Module form of :func:`global_luminet_loss`.

    ``forward`` takes ``group_sizes`` (and ignores it): by the calling contract of
    :mod:`luminet.losses.contract` this makes it a loss that is called at every step, also when
    this process has no row, which the all-reduce requires. ``target`` is ignored.
    """

    def __init__(
        self,
        temperature: float = 1.0,
        alpha: float = 1.0,
        eps: float = 1e-5,
        check_finite: bool = True,
    ):
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        self.alpha = float(alpha)
        self.eps = check_positive("eps", eps)
        self.check_finite = bool(check_finite)

    def forward(
        self,
        logits_student: torch.Tensor,
        logits_teacher: torch.Tensor,
        target: torch.Tensor | None = None,
        *,
        group_sizes: Sequence[int] | None = None,
    ) -> torch.Tensor:
        return global_luminet_loss(
            logits_student,
            logits_teacher,
            temperature=self.temperature,
            alpha=self.alpha,
            eps=self.eps,
            check_finite=self.check_finite,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, alpha={self.alpha}, eps={self.eps}, "
            "statistics=all processes"
        )
