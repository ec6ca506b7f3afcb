"""The state of every global random-number generator a training step may draw from.

Python's ``random``, NumPy's legacy global generator, torch's CPU generator and (when present)
the CUDA generators. The captured state holds only tuples, ints, floats, strings and tensors, so
a checkpoint that contains it loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch

__all__ = ["get_rng_state", "set_rng_state", "same_rng_state"]

logger = logging.getLogger(__name__)


def _numpy_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "bit_generator": str(name),
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def _set_numpy_state(state: Any) -> None:
    if isinstance(state, dict):
        keys = np.asarray(
            state["keys"].numpy() if torch.is_tensor(state["keys"]) else state["keys"]
        )
        state = (
            state["bit_generator"],
            keys.astype(np.uint32),
            state["pos"],
            state["has_gauss"],
            state["cached_gaussian"],
        )
    np.random.set_state(state)  # also the tuple of np.random.get_state() (older checkpoints)


def get_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and (if CUDA is available) CUDA generator states.

    Returns:
        ``{"python", "numpy", "torch"[, "cuda"]}``; restore with :func:`set_rng_state`.
    """
    state = {"python": random.getstate(), "numpy": _numpy_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned.

    CUDA states are restored only when the number of devices matches; otherwise a warning says
    that GPU-side random draws will differ.
    """
    python = state["python"]
    if isinstance(python, list):  # a tuple may come back as a list from other serialisers
        python = (python[0], tuple(python[1]), python[2])
    random.setstate(python)
    _set_numpy_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            logger.warning(
                "the saved state has CUDA RNG states for %d devices, this machine has %d: CUDA "
                "RNG not restored (GPU-side random ops will differ from the uninterrupted run)",
                len(cuda),
                torch.cuda.device_count(),
            )


def same_rng_state(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two states of :func:`get_rng_state` are the same (CUDA states ignored)."""

    def numpy_key(state):
        if isinstance(state, dict):
            keys = state["keys"]
            keys = keys.numpy() if torch.is_tensor(keys) else np.asarray(keys)
            return keys.astype(np.int64).tolist(), state["pos"]
        return np.asarray(state[1]).astype(np.int64).tolist(), state[2]

    return (
        torch.equal(a["torch"], b["torch"])
        and numpy_key(a["numpy"]) == numpy_key(b["numpy"])
        and tuple(a["python"][1]) == tuple(b["python"][1])
    )
