"""Process-group helpers: the same code runs single-process and under ``torchrun``."""

from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist

__all__ = [
    "init_distributed",
    "is_distributed",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "all_reduce_sum",
    "barrier",
    "select_device",
]

logger = logging.getLogger(__name__)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def select_device(name: str) -> torch.device:
    """``"auto"``: ``cuda:LOCAL_RANK`` when CUDA is available, else cpu; or ``name`` itself."""
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"DEVICE {name!r} requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def init_distributed(device: torch.device) -> bool:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1).

    Uses NCCL on CUDA and Gloo otherwise. Returns whether the run is distributed.
    """
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world <= 1 or is_distributed():
        return is_distributed()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    logger.info("process group: rank %d of %d (%s)", get_rank(), get_world_size(), backend)
    return True


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over processes (``t`` itself when not distributed)."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier() -> None:
    if is_distributed():
        dist.barrier()
