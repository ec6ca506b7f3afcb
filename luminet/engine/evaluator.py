"""Top-k accuracy over a (possibly sharded) validation loader."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from .comm import all_reduce_sum

__all__ = ["topk_correct", "evaluate"]

logger = logging.getLogger(__name__)


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks: Sequence[int]) -> list[int]:
    """Number of rows whose target is among the top-k logits, for each k (k capped at C)."""
    maxk = min(max(ks), logits.shape[1])
    pred = logits.topk(maxk, dim=1).indices
    hit = pred.eq(target.view(-1, 1))
    return [int(hit[:, : min(k, maxk)].any(dim=1).sum()) for k in ks]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    *,
    amp: bool = False,
) -> dict[str, float]:
    """Top-1 / top-5 accuracy (percent) and mean cross-entropy of ``model`` on ``loader``.

    Counts are summed over processes, so under ``torchrun`` each process passes its shard.
    The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # top1, top5, loss, count
    try:
        for images, target in loader:
            images = images.to(device, non_blocking=True)
            target = target.to(device, non_blocking=True)
            with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
                logits = model(images)
            logits = logits.float()
            top1, top5 = topk_correct(logits, target, (1, 5))
            sums += torch.tensor(
                [top1, top5, float(F.cross_entropy(logits, target, reduction="sum")), len(target)],
                dtype=torch.float64,
                device=device,
            )
    finally:
        model.train(was_training)
    all_reduce_sum(sums)
    n = float(sums[3])
    if n == 0:
        raise ValueError("the validation loader is empty")
    return {
        "top1": 100.0 * float(sums[0]) / n,
        "top5": 100.0 * float(sums[1]) / n,
        "loss": float(sums[2]) / n,
        "count": int(n),
    }
