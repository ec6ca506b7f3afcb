"""One run per output folder: the run lock, no silent retraining, clean metrics on resume."""

from __future__ import annotations

import glob
import json
import logging
import os

from detectron2.utils import comm

from luminet.atomic_io import TEMP_SUFFIX, atomic_write
from luminet.run_lock import OutputDirLockedError, RunLock

from .checkpointer import LAST_CHECKPOINT_FILE

__all__ = [
    "claim_output_dir",
    "prepare_output_dir",
    "truncate_metrics",
    "FINAL_CHECKPOINT",
    "METRICS_FILE",
]

logger = logging.getLogger(__name__)

#: The checkpoint written after the last iteration.
FINAL_CHECKPOINT = "model_final.pth"
#: detectron2's JSONWriter output.
METRICS_FILE = "metrics.json"


def _training_problem(output_dir: str, resume: bool, overwrite: bool) -> str | None:
    final = os.path.join(output_dir, FINAL_CHECKPOINT)
    pointer = os.path.join(output_dir, LAST_CHECKPOINT_FILE)
    if resume or overwrite:
        if resume and not os.path.exists(pointer) and os.path.exists(final):
            return (
                f"--resume: {output_dir} holds {FINAL_CHECKPOINT} but no {LAST_CHECKPOINT_FILE}, "
                "so there is nothing to resume from and training from scratch would overwrite "
                f"it; write {FINAL_CHECKPOINT} into {pointer} to continue that run, or pass "
                "--overwrite instead of --resume to train again"
            )
        return None
    if os.path.exists(final):
        return (
            f"OUTPUT_DIR {output_dir} holds {FINAL_CHECKPOINT} of a finished run: pass --resume to "
            "continue it (e.g. with a larger SOLVER.MAX_ITER), --overwrite to train again from "
            "scratch into this folder, or choose another OUTPUT_DIR"
        )
    if os.path.exists(pointer):
        return (
            f"OUTPUT_DIR {output_dir} holds checkpoints of an unfinished run ({pointer}): pass "
            "--resume to continue it, --overwrite to start again, or choose another OUTPUT_DIR"
        )
    return None


def _start_over(output_dir: str) -> None:
    for name in (LAST_CHECKPOINT_FILE, METRICS_FILE):
        path = os.path.join(output_dir, name)
        if os.path.exists(path):
            logger.warning("--overwrite: removing %s of the earlier run", path)
            os.remove(path)
    left = sorted(os.path.basename(p) for p in glob.glob(os.path.join(output_dir, "model_*.pth")))
    if left:
        logger.warning("--overwrite: checkpoints of the earlier run stay until replaced: %s", left)


def _remove_stale_temporary_files(output_dir: str) -> None:
    for path in sorted(glob.glob(os.path.join(output_dir, f"*{TEMP_SUFFIX}"))):
        name = os.path.basename(path)
        if name.startswith((LAST_CHECKPOINT_FILE + ".", "model_")) or ".pth." in name:
            logger.warning("Removing %s, left by an interrupted checkpoint write", path)
            os.remove(path)


def claim_output_dir(
    output_dir: str, *, resume: bool = False, overwrite: bool = False, train: bool = True
) -> RunLock | None:
    """Lock ``output_dir`` for this run and check that it may be trained into.

    A collective call under DDP: the main process decides, every process raises the same error.
    Hold the returned lock (main process; None elsewhere) for the life of the run.

    Args:
        output_dir: ``cfg.OUTPUT_DIR``.
        resume: ``--resume`` was given.
        overwrite: ``--overwrite`` was given: train from scratch into a folder of an earlier run
            (then call :func:`prepare_output_dir`).
        train: False for evaluation-only commands (they only take the lock).

    Raises:
        ValueError: ``resume`` and ``overwrite`` together.
        OutputDirLockedError: another process runs in ``output_dir``.
        FileExistsError: ``output_dir`` holds a finished or unfinished run and neither
            ``resume`` nor ``overwrite`` was given.
    """
    if resume and overwrite:
        raise ValueError("--resume and --overwrite contradict each other; pass one of them")
    lock, problem = None, None
    if comm.is_main_process():
        try:
            lock = RunLock(output_dir).acquire()
        except OutputDirLockedError as e:
            problem = ("locked", str(e))
        if problem is None and train:
            message = _training_problem(output_dir, resume, overwrite)
            if message:
                problem = ("exists", message)
    if comm.get_world_size() > 1:
        problem = comm.all_gather(problem)[0]
    if problem is not None:
        if lock is not None:
            lock.release()
        kind, message = problem
        raise (OutputDirLockedError if kind == "locked" else FileExistsError)(message)
    return lock


def prepare_output_dir(output_dir: str, *, overwrite: bool = False) -> None:
    """After :func:`claim_output_dir` and the logging set-up (main process): remove what killed
    checkpoint writes left behind and, with ``overwrite``, the earlier run's ``last_checkpoint``
    and ``metrics.json`` (its checkpoints stay until the new run replaces them)."""
    if not comm.is_main_process() or not os.path.isdir(output_dir):
        return
    _remove_stale_temporary_files(output_dir)
    if overwrite:
        _start_over(output_dir)


def truncate_metrics(output_dir: str, first_iteration: int) -> int:
    """Drop the lines of ``metrics.json`` for iterations >= ``first_iteration`` (written after
    the checkpoint a run resumes from; the resumed run writes them again). Returns how many
    lines were dropped."""
    path = os.path.join(output_dir, METRICS_FILE)
    if not os.path.isfile(path):
        return 0
    kept, dropped = [], 0
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            try:
                iteration = json.loads(line).get("iteration", -1)
            except json.JSONDecodeError:  # a line cut by the interruption
                dropped += 1
                continue
            if iteration >= first_iteration:
                dropped += 1
            else:
                kept.append(line if line.endswith("\n") else line + "\n")
    if dropped:
        with atomic_write(path, "w") as f:
            f.writelines(kept)
        logger.info("Resuming at iteration %d: dropped %d later line(s) of %s", first_iteration,
                    dropped, path)  # fmt: skip
    return dropped
