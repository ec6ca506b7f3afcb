"""Atomic checkpoint files and the random-number state needed to resume a run exactly."""

from __future__ import annotations

import logging
import os
import random
import tempfile
from typing import Any

import numpy as np
import torch

__all__ = ["atomic_save", "get_rng_state", "set_rng_state"]

logger = logging.getLogger(__name__)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace`` onto ``path``.

    A run killed while saving leaves the previous ``path`` intact (never a truncated file).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def get_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and (if present) CUDA generator states."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            logger.warning(
                "checkpoint has CUDA RNG states for %d devices, this machine has %d: CUDA RNG "
                "not restored (GPU-side random ops will differ from the uninterrupted run)",
                len(cuda),
                torch.cuda.device_count(),
            )
