"""The checkpoint hook of an exactly resumable run (replaces detectron2's PeriodicCheckpointer).

Like ``hooks.PeriodicCheckpointer`` it writes ``model_{iter:07d}.pth`` every ``period``
iterations and ``model_final.pth`` after the last one, through the checkpointer (atomically with
:class:`~luminet_det.engine.checkpointer.ResumableCheckpointer`). In addition each file holds the
:mod:`~luminet_det.engine.resume_state` of every process, and on resume the hook restores it.

Register it after every other hook: the checkpoint of iteration ``i`` is then the exact state at
the start of iteration ``i + 1``, including the random draws of an evaluation run in
iteration ``i`` and the metrics already written. (detectron2 saves before evaluating; an
evaluation that crashes here costs the iterations since the previous checkpoint.)

If a run was killed between its last periodic checkpoint and ``model_final.pth``, the resumed
run has nothing left to train; the hook then writes the missing ``model_final.pth``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from detectron2.engine import HookBase
from detectron2.utils import comm

from luminet.rng_state import same_rng_state, set_rng_state

from .resume_state import (
    RESUME_STATE_KEY,
    gather_resume_state,
    local_resume_state,
    rank_resume_state,
)
from .train_loader import ResumableTrainLoader

__all__ = ["ExactResumeHook"]

logger = logging.getLogger(__name__)


class ExactResumeHook(HookBase):
    """Periodic and final checkpoints with everything an exact resume needs.

    Must be registered on every process (gathering the states is collective); only the main
    process writes.

    Args:
        checkpointer: writes the files (model, trainer state and the ``resume_state`` kwarg).
        period: save every ``period`` iterations.
        setup_rng: the random state before the model was built (saved, restored on resume).
        loaders: the training data loaders whose position is saved, by name.
        file_prefix: checkpoint names ``{file_prefix}_{iter:07d}`` and ``{file_prefix}_final``.
    """

    def __init__(
        self,
        checkpointer,
        period: int,
        setup_rng: dict[str, Any],
        loaders: dict[str, ResumableTrainLoader],
        file_prefix: str = "model",
    ):
        if int(period) <= 0:
            raise ValueError(f"SOLVER.CHECKPOINT_PERIOD must be > 0; got {period}")
        self.checkpointer = checkpointer
        self.period = int(period)
        self.setup_rng = setup_rng
        self.loaders = loaders
        self.file_prefix = file_prefix
        self._pending_rng: dict[str, Any] | None = None

    def load(self, checkpoint_extra: dict[str, Any], source: str) -> bool:
        """Take the resume state out of what the checkpointer's ``load`` returned.

        Restores the data-loader positions now; the random state is restored in
        ``before_train``, after all set-up. Returns whether an exact resume is possible.
        """
        state = checkpoint_extra.get(RESUME_STATE_KEY)
        if state is None:
            logger.warning(
                "%s holds no resume state (an older version or another tool wrote it): the data "
                "stream restarts and random draws differ from an uninterrupted run",
                source,
            )
            return False
        mine = rank_resume_state(state, source)
        if mine is None:
            return False
        if not same_rng_state(self.setup_rng, mine["setup_rng"]):
            logger.warning(
                "The random state before the model was built differs from the one of the run in "
                "%s: call restore_setup_rng(OUTPUT_DIR) before building the trainer, or the data "
                "sampler's seed (and so the data order) may differ from the original run",
                source,
            )
        self.setup_rng = mine["setup_rng"]
        for name, loader in self.loaders.items():
            saved = mine["loaders"].get(name)
            if saved is None:
                logger.warning(
                    "%s has no position for data loader %r: it starts over", source, name
                )
                continue
            loader.load_state_dict(saved)
        self._pending_rng = mine["rng"]
        return True

    def _save(self, names: list[str], iteration: int) -> None:
        state = gather_resume_state(local_resume_state(self.setup_rng, self.loaders))
        if not comm.is_main_process():
            return
        for name in names:
            self.checkpointer.save(name, iteration=iteration, **{RESUME_STATE_KEY: state})

    def before_train(self) -> None:
        if self._pending_rng is not None:
            set_rng_state(self._pending_rng)
            self._pending_rng = None
        trainer = self.trainer
        if trainer.start_iter >= trainer.max_iter > 0:
            final = os.path.join(self.checkpointer.save_dir, f"{self.file_prefix}_final.pth")
            missing = comm.all_gather(not os.path.exists(final))[0]
            if missing:
                logger.warning(
                    "Nothing left to train (iteration %d of %d) but %s is missing (the run was "
                    "stopped while writing it): writing it now",
                    trainer.start_iter,
                    trainer.max_iter,
                    final,
                )
                self._save([f"{self.file_prefix}_final"], trainer.start_iter - 1)

    def after_step(self) -> None:
        iteration = self.trainer.iter
        names = []
        if (iteration + 1) % self.period == 0:
            names.append(f"{self.file_prefix}_{iteration:07d}")
        if iteration >= self.trainer.max_iter - 1:
            names.append(f"{self.file_prefix}_final")
        if names:
            self._save(names, iteration)
