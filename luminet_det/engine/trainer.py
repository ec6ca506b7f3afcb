"""detectron2's DefaultTrainer, made to survive a kill and resume bit for bit.

:class:`ExactResumeTrainer` builds and trains exactly what ``DefaultTrainer`` does (same objects,
in the same order, with the same random draws, so an uninterrupted run gives the same weights),
and in addition:

* checks the training data before step 0 (``DATALOADER.CHECK.*``, see
  :mod:`luminet_det.dataset_check`) and reads training images with
  :class:`~luminet_det.image_files.VerifyingMapper`;
* feeds training batches through :class:`~luminet_det.engine.train_loader.ResumableTrainLoader`;
* writes checkpoints atomically (:class:`~luminet_det.engine.checkpointer.ResumableCheckpointer`)
  holding the optimizer, LR scheduler and AMP grad-scaler state (with detectron2 v0.6 too, whose
  DefaultTrainer saves no optimizer state), the iteration, the random states and the data
  position of every process (:class:`~luminet_det.engine.resume_hook.ExactResumeHook`);
* on resume, restores all of it: on CPU with the same thread count, a run killed at any moment
  and resumed ends with weights bitwise equal to the uninterrupted run's.

Before constructing it for a resume, call :func:`luminet_det.engine.restore_setup_rng` (after
``default_setup``); ``tools/train_net.py`` shows the whole sequence.
"""

from __future__ import annotations

import logging
import os
import weakref

from detectron2.data import DatasetMapper
from detectron2.engine import (
    AMPTrainer,
    DefaultTrainer,
    SimpleTrainer,
    TrainerBase,
    create_ddp_model,
    hooks,
)
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from fvcore.nn.precise_bn import get_bn_modules

from luminet.atomic_io import atomic_write
from luminet.rng_state import get_rng_state

from ..dataset_check import (
    DatasetCheckError,
    check_detection_dataset,
    num_classes_of,
    resolve_check_mode,
)
from ..image_files import VerifyingMapper
from .checkpointer import ResumableCheckpointer
from .output_dir import truncate_metrics
from .resume_hook import ExactResumeHook
from .train_loader import ResumableTrainLoader

__all__ = ["ExactResumeTrainer", "DATA_CHECK_FILE"]

logger = logging.getLogger(__name__)

#: The full report of the pre-training data check, in OUTPUT_DIR.
DATA_CHECK_FILE = "data_check.txt"


class ExactResumeTrainer(DefaultTrainer):
    """``DefaultTrainer`` with checked data, atomic checkpoints and exact resume.

    Subclass it like ``DefaultTrainer`` (``build_evaluator``, ``build_model``, ...). A
    ``build_train_loader`` override should return a :class:`ResumableTrainLoader` (e.g.
    ``ResumableTrainLoader.from_config(cfg, mapper=...)``); any other loader trains, but its
    position is not saved (a warning says so).

    Args:
        cfg: a detectron2 config with this project's keys (``luminet_det.add_distill_config``).
    """

    def __init__(self, cfg):
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        self.validate_config(cfg)
        self.setup_rng = get_rng_state()  # restored on resume before anything draws from it
        # The order of DefaultTrainer: model, optimizer, data (their random draws included).
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        self.check_training_data(cfg, data_loader)
        model = create_ddp_model(model, broadcast_buffers=False)
        self._trainer = (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)(
            model, data_loader, optimizer
        )
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = ResumableCheckpointer(
            model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @classmethod
    def validate_config(cls, cfg) -> None:
        """Errors in the keys this trainer adds or relies on, before anything is built.

        Raises:
            ValueError: naming the key.
        """
        if int(cfg.SOLVER.CHECKPOINT_PERIOD) <= 0:
            raise ValueError(
                f"SOLVER.CHECKPOINT_PERIOD must be > 0; got {cfg.SOLVER.CHECKPOINT_PERIOD}"
            )
        resolve_check_mode(cfg.DATALOADER.CHECK.MODE, 0, 0)

    # ------------------------------------------------------------------ data
    @classmethod
    def build_train_loader(cls, cfg) -> ResumableTrainLoader:
        """detectron2's training loader (``DatasetMapper(cfg, True)``, the configured sampler,
        batching and workers) as a :class:`ResumableTrainLoader`, reading images with a
        :class:`VerifyingMapper`."""
        mapper = VerifyingMapper(DatasetMapper(cfg, True), cfg.DATALOADER.CHECK.VERIFY_ON_READ)
        return ResumableTrainLoader.from_config(cfg, mapper=mapper)

    @classmethod
    def check_training_data(cls, cfg, data_loader) -> None:
        """Check the images and annotations the loader will train on (main process; every
        process raises if they fail). The full report goes to ``OUTPUT_DIR/data_check.txt``.

        Raises:
            DatasetCheckError: a missing, damaged or mis-sized image, a NaN box, a category id
                outside ``[0, NUM_CLASSES)``, or no usable box at all.
        """
        names = "+".join(cfg.DATASETS.TRAIN)
        dataset = getattr(data_loader, "dataset", None)
        if not isinstance(data_loader, ResumableTrainLoader) or dataset is None:
            logger.warning(
                "The training loader is a %s, not a ResumableTrainLoader: its data is not checked "
                "and its position is not saved in checkpoints",
                type(data_loader).__name__,
            )
            return
        check = cfg.DATALOADER.CHECK
        mode = resolve_check_mode(check.MODE, len(dataset), int(check.FULL_MAX_IMAGES))
        if mode == "off":
            logger.info("DATALOADER.CHECK.MODE off: the training data is not checked")
            return
        failure = None
        if comm.is_main_process():
            threads = int(check.THREADS) or max(1, int(cfg.DATALOADER.NUM_WORKERS))
            logger.info(
                "Checking the %d training images of %s (DATALOADER.CHECK.MODE %s -> %s, %d "
                "thread(s))",
                len(dataset), names, check.MODE, mode, threads,
            )  # fmt: skip
            report = check_detection_dataset(
                dataset,
                names,
                mode=mode,
                num_classes=num_classes_of(cfg),
                threads=threads,
            )
            os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
            with atomic_write(os.path.join(cfg.OUTPUT_DIR, DATA_CHECK_FILE), "w") as f:
                f.write(report.summary() + "\n")
                f.writelines(f"{p}\n" for p in report.problems)
            (logger.info if not report.problems else logger.warning)(
                "%s (all problems: %s)", report.summary(), DATA_CHECK_FILE
            )
            for p in report.warnings[:10]:
                logger.warning("  %s", p)
            if not report.trainable:
                failure = str(DatasetCheckError.from_reports([report]))
        if comm.get_world_size() > 1:
            failure = comm.all_gather(failure)[0]
        if failure is not None:
            raise DatasetCheckError(failure)

    # ------------------------------------------------------------------ hooks
    def build_hooks(self) -> list:
        """DefaultTrainer's hooks, with :class:`ExactResumeHook` (on every process, last)
        instead of ``PeriodicCheckpointer``."""
        cfg = self.cfg.clone()
        cfg.defrost()
        cfg.DATALOADER.NUM_WORKERS = 0  # save some memory and time for PreciseBN
        loaders = {}
        if isinstance(self.data_loader, ResumableTrainLoader):
            loaders["train"] = self.data_loader
        ret = [hooks.IterationTimer(), hooks.LRScheduler()]
        if cfg.TEST.PRECISE_BN.ENABLED and get_bn_modules(self.model):
            precise_bn_loader = self.build_train_loader(cfg)
            if isinstance(precise_bn_loader, ResumableTrainLoader):
                loaders["precise_bn"] = precise_bn_loader
            ret.append(
                hooks.PreciseBN(
                    cfg.TEST.EVAL_PERIOD,
                    self.model,
                    precise_bn_loader,
                    cfg.TEST.PRECISE_BN.NUM_ITER,
                )
            )

        def test_and_save_results():
            self._last_eval_results = self.test(self.cfg, self.model)
            return self._last_eval_results

        ret.append(hooks.EvalHook(cfg.TEST.EVAL_PERIOD, test_and_save_results))
        if comm.is_main_process():
            ret.append(hooks.PeriodicWriter(self.build_writers(), period=20))
        self.resume_hook = ExactResumeHook(
            self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD, self.setup_rng, loaders
        )
        ret.append(self.resume_hook)
        return ret

    # ------------------------------------------------------------------ state
    def resume_or_load(self, resume: bool = True) -> dict:
        """Load the last checkpoint of ``OUTPUT_DIR`` with everything it holds (``resume`` and
        one exists), or only the model weights of ``MODEL.WEIGHTS``.

        Returns:
            The checkpoint's data that was not loaded into an object.
        """
        extra = self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        if resume and self.checkpointer.has_checkpoint():
            self.start_iter = self.iter + 1
            source = self.checkpointer.get_checkpoint_file()
            exact = self.resume_hook.load(extra, source)
            logger.info(
                "Resuming from %s at iteration %d (%s)",
                source,
                self.start_iter,
                "exact: random states and data position restored" if exact else "not exact",
            )
            if comm.is_main_process():
                truncate_metrics(self.cfg.OUTPUT_DIR, self.start_iter)
        return extra

    def state_dict(self) -> dict:
        """Iteration, hook states, optimizer (and AMP grad scaler), LR scheduler."""
        ret = TrainerBase.state_dict(self)
        ret["_trainer"] = self._trainer.state_dict()
        ret["scheduler"] = self.scheduler.state_dict()
        return ret

    def load_state_dict(self, state_dict: dict) -> None:
        TrainerBase.load_state_dict(self, state_dict)
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])
        else:
            logger.warning(
                "The checkpoint holds no optimizer state (written by detectron2 v0.6's "
                "DefaultTrainer?): momentum restarts from zero"
            )
        if "scheduler" in state_dict:
            self.scheduler.load_state_dict(state_dict["scheduler"])
