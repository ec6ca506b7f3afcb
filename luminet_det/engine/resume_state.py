"""What a checkpoint holds, per process, so that a resumed run continues bit for bit.

Saved under ``resume_state`` in every checkpoint written by :class:`~luminet_det.engine.
resume_hook.ExactResumeHook`::

    {"version": 1, "world_size": N,
     "ranks": [{"setup_rng": ..., "rng": ..., "loaders": {"train": ..., ...}}, ...]}

* ``setup_rng``: the random state of the process right before the model was built. A resumed
  process restores it first, so that building the model, the data sampler (whose seed detectron2
  v0.6 draws from NumPy) and every other set-up step draw exactly what the original run drew.
* ``rng``: the random state at the start of the next iteration (restored just before it).
* ``loaders``: :meth:`ResumableTrainLoader.state_dict` of each training data loader.

Everything is made of tensors, numbers, strings, lists and dicts: checkpoints still load with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from detectron2.utils import comm

from luminet.rng_state import get_rng_state, set_rng_state

from .checkpointer import LAST_CHECKPOINT_FILE
from .train_loader import ResumableTrainLoader

__all__ = [
    "RESUME_STATE_KEY",
    "local_resume_state",
    "gather_resume_state",
    "rank_resume_state",
    "read_last_resume_state",
    "restore_setup_rng",
]

logger = logging.getLogger(__name__)

#: Key of the resume state in a checkpoint file.
RESUME_STATE_KEY = "resume_state"
_VERSION = 1


def local_resume_state(
    setup_rng: dict[str, Any], loaders: dict[str, ResumableTrainLoader]
) -> dict[str, Any]:
    """This process's part of the resume state, taken now (between two iterations)."""
    return {
        "setup_rng": setup_rng,
        "rng": get_rng_state(),
        "loaders": {name: loader.state_dict() for name, loader in loaders.items()},
    }


def gather_resume_state(local: dict[str, Any]) -> dict[str, Any]:
    """The resume state of all processes (a collective call: every process must make it)."""
    ranks = comm.all_gather(local) if comm.get_world_size() > 1 else [local]
    return {"version": _VERSION, "world_size": len(ranks), "ranks": ranks}


def rank_resume_state(state: dict[str, Any], source: str) -> dict[str, Any] | None:
    """This process's entry of ``state``; None (with a warning) when the number of processes
    differs from the saved run's."""
    world = comm.get_world_size()
    if state.get("version") != _VERSION or state.get("world_size") != world:
        logger.warning(
            "%s was written by %s process(es) (resume-state version %s); this run has %d: "
            "random states and data positions are not restored, so the run continues but "
            "differs from an uninterrupted one",
            source,
            state.get("world_size"),
            state.get("version"),
            world,
        )
        return None
    return state["ranks"][comm.get_rank()]


def read_last_resume_state(output_dir: str) -> tuple[str, dict[str, Any] | None]:
    """``(path, resume_state)`` of the checkpoint that ``output_dir/last_checkpoint`` names;
    ``("", None)`` without one, ``(path, None)`` for a checkpoint written without resume state.

    Raises:
        FileNotFoundError: when ``last_checkpoint`` names a missing file.
    """
    pointer = os.path.join(output_dir, LAST_CHECKPOINT_FILE)
    if not os.path.isfile(pointer):
        return "", None
    with open(pointer) as f:
        path = os.path.join(output_dir, f.read().strip())
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{pointer} names {path}, which does not exist")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return path, checkpoint.get(RESUME_STATE_KEY)


def restore_setup_rng(output_dir: str) -> bool:
    """Before building anything of a resumed run: restore the random state that the original
    run had at this point. Returns whether it was restored."""
    path, state = read_last_resume_state(output_dir)
    if not path:
        return False
    if state is None:
        logger.warning(
            "%s holds no resume state (written by an older version or another tool): the "
            "resumed run will not match an uninterrupted one",
            path,
        )
        return False
    mine = rank_resume_state(state, path)
    if mine is None:
        return False
    set_rng_state(mine["setup_rng"])
    logger.info("Restored the set-up random state of the run in %s", output_dir)
    return True
