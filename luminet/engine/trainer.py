"""Epoch-based trainer of the classification distiller: SGD, step LR, AMP, DDP, exact resume.

Files written under ``cfg.OUTPUT_DIR`` (by rank 0):

* ``config.yaml``: the full config of the run;
* ``resume.pth``: everything needed to continue after an interruption (student, optimizer,
  scheduler, AMP scaler, completed epoch, best accuracy, RNG states), rewritten atomically after
  every epoch;
* ``student_last.pth`` / ``student_best.pth``: the student only, as ``{"model": state_dict, ...}``
  (loadable with :func:`luminet.models.load_checkpoint`);
* ``metrics.jsonl``: one JSON object per epoch;
* ``run.lock``: held while a run trains; a second run into the same folder is refused;
* ``tb/``: TensorBoard scalars.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from typing import Any

import numpy as np
import torch
from fvcore.common.config import CfgNode
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from luminet.atomic_io import atomic_torch_save
from luminet.data import build_datasets, build_train_loader, build_val_loader, set_loader_epoch
from luminet.distillers import build_distiller
from luminet.rng_state import get_rng_state, set_rng_state
from luminet.run_lock import OutputDirLockedError, RunLock

from .comm import (
    all_reduce_sum,
    barrier,
    get_rank,
    get_world_size,
    init_distributed,
    is_main_process,
    select_device,
)
from .evaluator import evaluate, topk_correct

__all__ = ["ClsTrainer", "seed_everything", "RESUME_FILE", "LAST_FILE", "BEST_FILE", "METRICS_FILE"]

logger = logging.getLogger(__name__)

RESUME_FILE = "resume.pth"
LAST_FILE = "student_last.pth"
BEST_FILE = "student_best.pth"
METRICS_FILE = "metrics.jsonl"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class ClsTrainer:
    """Train ``cfg.DISTILLER.STUDENT`` on ``cfg.DATASET`` with the configured distiller.

    Args:
        cfg: a config from :func:`luminet.config.load_config`.
        resume: continue from ``OUTPUT_DIR/resume.pth`` if it exists. Without ``resume`` an
            existing ``resume.pth`` is an error (a finished or interrupted run is never silently
            overwritten).
    """

    def __init__(self, cfg: CfgNode, resume: bool = False):
        self.cfg = cfg
        self.output_dir = cfg.OUTPUT_DIR
        self.device = select_device(cfg.DEVICE)
        self.distributed = init_distributed(self.device)
        self.rank, self.world_size = get_rank(), get_world_size()
        self.resume_path = os.path.join(self.output_dir, RESUME_FILE)
        if os.path.exists(self.resume_path) and not resume:
            raise FileExistsError(
                f"{self.resume_path} exists: pass --resume (resume=True) to continue that run, "
                "or choose another OUTPUT_DIR"
            )
        self._resume = resume and os.path.exists(self.resume_path)
        if cfg.DETERMINISTIC:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if int(cfg.NUM_THREADS) > 0:
            torch.set_num_threads(int(cfg.NUM_THREADS))
        seed_everything(int(cfg.SEED) + self.rank)

        splits = build_datasets(cfg)
        self.num_classes = splits.num_classes
        self.train_loader = build_train_loader(
            splits.train,
            int(cfg.SOLVER.BATCH_SIZE),
            seed=int(cfg.SEED),
            num_workers=int(cfg.DATASET.NUM_WORKERS),
            rank=self.rank,
            world_size=self.world_size,
        )
        self.val_loader = build_val_loader(
            splits.val,
            int(cfg.DATASET.TEST.BATCH_SIZE),
            num_workers=int(cfg.DATASET.NUM_WORKERS),
            rank=self.rank,
            world_size=self.world_size,
        )

        self.distiller = build_distiller(cfg, splits.num_classes, splits.in_channels)
        self.distiller.to(self.device)
        self.student = self.distiller.student
        self.teacher = self.distiller.teacher
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.distiller.set_student_runner(DistributedDataParallel(self.student, device_ids=ids))

        s = cfg.SOLVER
        self.optimizer = torch.optim.SGD(
            self.student.parameters(),
            lr=float(s.LR),
            momentum=float(s.MOMENTUM),
            weight_decay=float(s.WEIGHT_DECAY),
            nesterov=bool(s.NESTEROV),
        )
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer,
            milestones=[int(x) for x in s.LR_DECAY_STAGES],
            gamma=float(s.LR_DECAY_RATE),
        )
        self.amp = bool(cfg.AMP.ENABLED) and self.device.type == "cuda"
        if cfg.AMP.ENABLED and not self.amp:
            logger.info(
                "AMP.ENABLED on device %s: AMP is CUDA-only, training in float32", self.device
            )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

        self.start_epoch = 0  # number of completed epochs
        self.best_top1 = -1.0
        self.best_epoch = 0
        self._rng_to_restore: dict[str, Any] | None = None
        if self._resume:
            self._load_resume_state()
        self.writer = None

    # ------------------------------------------------------------------ checkpoints
    def _load_resume_state(self) -> None:
        state = torch.load(self.resume_path, map_location="cpu", weights_only=False)
        if state.get("student_arch") != self.cfg.DISTILLER.STUDENT:
            raise ValueError(
                f"{self.resume_path} holds a {state.get('student_arch')!r} student but the config "
                f"asks for {self.cfg.DISTILLER.STUDENT!r}"
            )
        if state.get("world_size", 1) != self.world_size:
            logger.warning(
                "resuming a %d-process run with %d processes: the data order differs from the "
                "uninterrupted run",
                state.get("world_size", 1),
                self.world_size,
            )
        saved = set(state.get("config", "").splitlines())
        changed = sorted(set(self.cfg.dump().splitlines()) - saved)
        if changed:
            logger.warning(
                "the config differs from the one %s was written with; new/changed lines: %s",
                self.resume_path,
                "; ".join(ln.strip() for ln in changed[:10]),
            )
        self.student.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.start_epoch = int(state["epoch"])
        self.best_top1 = float(state["best_top1"])
        self.best_epoch = int(state["best_epoch"])
        rng = state.get("rng", {})
        self._rng_to_restore = rng.get(self.rank)
        if self._rng_to_restore is None:
            logger.warning("no RNG state for rank %d in %s", self.rank, self.resume_path)
        logger.info("resumed from %s after epoch %d", self.resume_path, self.start_epoch)

    def _gather_rng(self) -> dict[int, Any]:
        local = get_rng_state()
        if not self.distributed:
            return {0: local}
        states: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(states, local)
        return dict(enumerate(states))

    def _student_file(self, epoch: int, top1: float) -> dict[str, Any]:
        return {
            "model": self.student.state_dict(),
            "arch": self.cfg.DISTILLER.STUDENT,
            "num_classes": self.num_classes,
            "epoch": epoch,
            "top1": top1,
        }

    def _save(self, epoch: int, top1: float, is_best: bool) -> None:
        rng = self._gather_rng()  # collective: every rank takes part
        if not is_main_process():
            return
        out = self.output_dir
        student = self._student_file(epoch, top1)
        atomic_torch_save(student, os.path.join(out, LAST_FILE))
        if is_best:
            atomic_torch_save(student, os.path.join(out, BEST_FILE))
        freq = int(self.cfg.LOG.SAVE_CHECKPOINT_FREQ)
        if freq > 0 and epoch % freq == 0:
            atomic_torch_save(student, os.path.join(out, f"student_epoch_{epoch}.pth"))
        # resume.pth last: it is the commit point of the epoch.
        atomic_torch_save(
            {
                "model": student["model"],
                "student_arch": self.cfg.DISTILLER.STUDENT,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "epoch": epoch,
                "best_top1": self.best_top1,
                "best_epoch": self.best_epoch,
                "world_size": self.world_size,
                "rng": rng,
                "config": self.cfg.dump(),
            },
            self.resume_path,
        )

    # ------------------------------------------------------------------ logging
    def _open_logs(self) -> None:
        if not is_main_process():
            return
        os.makedirs(self.output_dir, exist_ok=True)
        with open(os.path.join(self.output_dir, "config.yaml"), "w") as f:
            f.write(self.cfg.dump())
        path = os.path.join(self.output_dir, METRICS_FILE)
        # Drop lines of epochs after the checkpoint (written just before an interruption).
        kept = []
        if os.path.exists(path):
            with open(path) as f:
                kept = [
                    ln for ln in f if ln.strip() and json.loads(ln)["epoch"] <= self.start_epoch
                ]
        with open(path, "w") as f:
            f.writelines(kept)
        if self.cfg.LOG.TENSORBOARD:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ImportError(
                    "LOG.TENSORBOARD needs the tensorboard package (pip install tensorboard), "
                    "or set LOG.TENSORBOARD False"
                ) from e
            self.writer = SummaryWriter(
                os.path.join(self.output_dir, "tb"), purge_step=self.start_epoch + 1
            )

    def _log_epoch(self, record: dict[str, Any]) -> None:
        if not is_main_process():
            return
        with open(os.path.join(self.output_dir, METRICS_FILE), "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "epoch" and isinstance(value, int | float):
                    self.writer.add_scalar(key.replace(".", "/", 1), value, record["epoch"])
            self.writer.flush()

    # ------------------------------------------------------------------ training
    def evaluate_teacher(self) -> dict[str, float] | None:
        """Validation accuracy of the (ensemble) teacher; None without a teacher."""
        if self.teacher is None:
            return None
        members = self.teacher.members
        if len(members) > 1:
            for name, m in zip(self._teacher_names(), members):
                r = evaluate(m, self.val_loader, self.device, amp=self.amp)
                logger.info("teacher %s: top-1 %.2f  top-5 %.2f", name, r["top1"], r["top5"])
        result = evaluate(self.teacher, self.val_loader, self.device, amp=self.amp)
        label = "teacher ensemble" if len(members) > 1 else f"teacher {self._teacher_names()[0]}"
        logger.info("%s: top-1 %.2f  top-5 %.2f", label, result["top1"], result["top5"])
        return result

    def _teacher_names(self) -> list[str]:
        from luminet.config.config import teacher_names

        return teacher_names(self.cfg)

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        """Train epoch ``epoch`` (1-based); returns the mean losses and training accuracy."""
        cfg = self.cfg
        self.distiller.train()
        set_loader_epoch(self.train_loader, epoch, int(cfg.SEED), self.rank)
        sums: dict[str, float] = {}
        correct, count = 0, 0
        bar = tqdm(
            self.train_loader,
            desc=f"epoch {epoch}/{cfg.SOLVER.EPOCHS}",
            disable=not (is_main_process() and cfg.LOG.PROGRESS_BAR),
            leave=False,
            dynamic_ncols=True,
        )
        for it, (images, target) in enumerate(bar):
            images = images.to(self.device, non_blocking=True)
            target = target.to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, enabled=self.amp):
                logits, losses = self.distiller(images, target, epoch)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite loss at epoch {epoch}, iteration {it}: "
                    + ", ".join(f"{k}={float(v):.4g}" for k, v in losses.items())
                    + "; lower SOLVER.LR or the distillation weight"
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()

            n = len(target)
            for k, v in {"loss": loss, **losses}.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * n
            correct += topk_correct(logits.detach().float(), target, (1,))[0]
            count += n
            if it % 10 == 0:
                bar.set_postfix(
                    loss=f"{loss.item():.3f}", lr=f"{self.optimizer.param_groups[0]['lr']:.3g}"
                )
        self.scheduler.step()
        keys = sorted(sums)
        totals = torch.tensor([sums[k] for k in keys] + [correct, count], dtype=torch.float64)
        totals = all_reduce_sum(totals.to(self.device)).cpu()
        n = float(totals[-1])
        out = {f"train.{k}": float(totals[i]) / n for i, k in enumerate(keys)}
        out["train.top1"] = 100.0 * float(totals[-2]) / n
        return out

    def train(self) -> dict[str, Any]:
        """Run (or continue) training to ``SOLVER.EPOCHS``, holding ``OUTPUT_DIR``'s run lock.

        Returns:
            ``{"teacher": {...} or None, "last": last epoch's record, "best_top1", "best_epoch"}``.

        Raises:
            OutputDirLockedError: another run uses ``OUTPUT_DIR``.
        """
        lock, error = None, None
        if is_main_process():
            try:
                lock = RunLock(self.output_dir).acquire()
            except OutputDirLockedError as e:
                error = e
        failed = torch.tensor([0.0 if error is None else 1.0], device=self.device)
        if float(all_reduce_sum(failed)) > 0:  # every process stops, not only the main one
            raise error or OutputDirLockedError(
                f"OUTPUT_DIR {self.output_dir} is in use by another run (see rank 0)"
            )
        try:
            return self._train()
        finally:
            if lock is not None:
                lock.release()

    def _train(self) -> dict[str, Any]:
        cfg = self.cfg
        total = int(cfg.SOLVER.EPOCHS)
        self._open_logs()
        if is_main_process():
            logger.info(
                "student %s, distiller %s, %d process(es), device %s, epochs %d -> %d",
                cfg.DISTILLER.STUDENT, cfg.DISTILLER.TYPE, self.world_size, self.device,
                self.start_epoch + 1, total,
            )  # fmt: skip
        teacher = self.evaluate_teacher()
        if self._rng_to_restore is not None:  # after all set-up that draws random numbers
            set_rng_state(self._rng_to_restore)
            self._rng_to_restore = None
        record: dict[str, Any] = {}
        for epoch in range(self.start_epoch + 1, total + 1):
            t0 = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            train_stats = self.train_one_epoch(epoch)
            val = evaluate(self.student, self.val_loader, self.device, amp=self.amp)
            is_best = val["top1"] > self.best_top1
            if is_best:
                self.best_top1, self.best_epoch = val["top1"], epoch
            record = {
                "epoch": epoch,
                "lr": lr,
                **train_stats,
                "val.top1": val["top1"],
                "val.top5": val["top5"],
                "val.loss": val["loss"],
                "best.top1": self.best_top1,
                "time_s": time.perf_counter() - t0,
            }
            if not all(math.isfinite(v) for v in record.values() if isinstance(v, float)):
                raise FloatingPointError(f"non-finite metrics at epoch {epoch}: {record}")
            self._log_epoch(record)
            self._save(epoch, val["top1"], is_best)
            self.start_epoch = epoch
            if is_main_process():
                logger.info(
                    "epoch %d/%d  loss %.4f  train top-1 %.2f  val top-1 %.2f  top-5 %.2f  "
                    "(best %.2f @ %d)  %.1fs",
                    epoch, total, record["train.loss"], record["train.top1"], val["top1"],
                    val["top5"], self.best_top1, self.best_epoch, record["time_s"],
                )  # fmt: skip
        if not record:  # nothing left to train: report the stored state
            val = evaluate(self.student, self.val_loader, self.device, amp=self.amp)
            record = {"epoch": self.start_epoch, "val.top1": val["top1"], "val.top5": val["top5"]}
            logger.info("run already complete (%d epochs); val top-1 %.2f", total, val["top1"])
        if self.writer is not None:
            self.writer.close()
        barrier()
        return {
            "teacher": teacher,
            "last": record,
            "best_top1": self.best_top1,
            "best_epoch": self.best_epoch,
        }
