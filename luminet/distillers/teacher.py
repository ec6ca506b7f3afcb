"""Frozen teacher(s): one model, or a logit-averaging ensemble of several (paper Fig. 4d)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["TeacherEnsemble"]

logger = logging.getLogger(__name__)


class TeacherEnsemble(nn.Module):
    """Averages the logits of frozen teachers; never trains and never receives gradients.

    The members are put in eval mode, their parameters get ``requires_grad=False`` and
    :meth:`train` keeps them in eval mode (BatchNorm statistics stay fixed).

    Args:
        teachers: one or more models mapping images to ``(N, C)`` logits with the same C.
    """

    def __init__(self, teachers: Sequence[nn.Module]):
        super().__init__()
        if len(teachers) == 0:
            raise ValueError("TeacherEnsemble needs at least one teacher")
        self.members = nn.ModuleList(teachers)
        for p in self.members.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> TeacherEnsemble:
        # A teacher is always in inference mode, whatever its parent's mode.
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Mean of the members' logits, ``(N, C)``."""
        logits = [m(images) for m in self.members]
        shapes = {tuple(x.shape) for x in logits}
        if len(shapes) != 1:
            raise ValueError(f"teachers disagree on the logit shape: {sorted(shapes)}")
        if len(logits) == 1:
            return logits[0]
        return torch.stack([x.float() for x in logits]).mean(dim=0)
