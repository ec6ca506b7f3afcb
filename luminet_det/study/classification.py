"""Classification part of the study: the ``luminet`` distiller on the digit crops.

A resnet20 teacher and resnet8 students (``configs/digit_crops/``), 20 epochs, one CPU thread
per run. A seed fixes the student's initial weights and the data order (shuffling and
augmentation) for every method. Tuning runs report the last epoch's val top-1; final runs also
score the last epoch's student on the test crops and keep its per-crop correctness for the
bootstrap. Uses only ``luminet`` (no detectron2), so runs can go to worker processes.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .protocol import Setting, TaskProtocol
from .run_cache import RunCache, config_hash

logger = logging.getLogger(__name__)

__all__ = ["CLASSIFICATION_RECIPE_VERSION", "CONFIG_DIR", "ClassificationStudy", "predict_correct"]

# Bump when this file changes how a run is trained or evaluated.
CLASSIFICATION_RECIPE_VERSION = 1
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "digit_crops"


@torch.no_grad()
def predict_correct(model: torch.nn.Module, dataset, batch_size: int = 500) -> np.ndarray:
    """Whether ``model``'s top-1 class is right, for every item of ``dataset`` in order.

    Returns:
        (N,) bool array.
    """
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    out = [model(x).argmax(dim=1) == y for x, y in loader]
    return torch.cat(out).numpy()


@dataclass
class ClassificationStudy:
    """Runs of the classification study, cached under ``work``.

    Args:
        work: run directories (trainer checkpoints) and run records.
        protocol: the classification protocol.
        quick: tiny data (under ``work``) and one epoch per model: checks the pipeline only.
    """

    work: Path
    protocol: TaskProtocol
    quick: bool = False

    def __post_init__(self):
        self.work = Path(self.work)
        self.cache = RunCache(self.work / "runs")

    def _load(self, name: str, opts: list[str]):
        from luminet.config import load_config

        if self.quick:
            opts = [
                "SOLVER.EPOCHS", "1", "DATASET.ROOT", str(self.work / "data"),
                "DATASET.DIGIT_CROPS.NUM_TRAIN", "60", "DATASET.DIGIT_CROPS.NUM_VAL", "30",
                "DATASET.DIGIT_CROPS.NUM_TEST", "40", "DATASET.DIGIT_CROPS.TRAIN_SUBSET", "30",
                *opts,
            ]  # fmt: skip
        return load_config(CONFIG_DIR / f"{name}.yaml", opts)

    def _key(self, cfg, split: str) -> str:
        dump = cfg.dump().replace(str(self.work), "<work>")
        return config_hash(
            {
                "config": dump.replace(str(cfg.OUTPUT_DIR), "<out>"),
                "split": split,
                "torch": torch.__version__,
                "recipe": CLASSIFICATION_RECIPE_VERSION,
            }
        )

    # ------------------------------------------------------------------ teacher
    def teacher_config(self):
        """The teacher's config, with its run directory under ``work``."""
        probe = self._load("teacher", [])
        key = self._key(probe, "teacher")
        return self._load("teacher", ["OUTPUT_DIR", str(self.work / f"teacher_{key}")])

    def teacher_checkpoint(self) -> str:
        """Path of the trained teacher (after :meth:`teacher_run`)."""
        from luminet.engine import LAST_FILE

        return str(Path(self.teacher_config().OUTPUT_DIR) / LAST_FILE)

    def teacher_run(self) -> dict:
        """Train the teacher (resumable, cached) and score it on val and test."""
        from luminet.data import build_datasets
        from luminet.engine import ClsTrainer

        cfg = self.teacher_config()
        key = self._key(cfg, "teacher")
        record = self.cache.load("runs", key)
        if record is not None:
            return record
        t0, c0 = time.perf_counter(), time.process_time()
        trainer = ClsTrainer(cfg, resume=True)
        result = trainer.train()
        splits = build_datasets(cfg)
        correct = predict_correct(trainer.student, splits.test)
        record = {
            "task": "classification",
            "method": "teacher",
            "model": cfg.DISTILLER.STUDENT,
            "metrics": {
                "val_top1": float(result["last"]["val.top1"]),
                "test_top1": 100.0 * float(correct.mean()),
            },
            "epochs": int(cfg.SOLVER.EPOCHS),
            "wall_seconds": round(time.perf_counter() - t0, 2),
            "cpu_seconds": round(time.process_time() - c0, 2),
        }
        logger.info(
            "teacher %s: val top-1 %.2f, test top-1 %.2f",
            cfg.DISTILLER.STUDENT, record["metrics"]["val_top1"], record["metrics"]["test_top1"],
        )  # fmt: skip
        return self.cache.store("runs", key, record, {"correct": correct})

    # ------------------------------------------------------------------ students
    def student_config(self, setting: Setting, seed: int, split: str):
        """The full config of a student run (its run directory is named by its key)."""
        opts = ["SEED", str(seed)]
        if setting.method != "none":
            opts += ["DISTILLER.TEACHER_WEIGHTS", f"['{self.teacher_checkpoint()}']"]
        opts += self.protocol.warmup_opts(setting.method) + setting.opts()
        probe = self._load(setting.method, opts)
        key = self._key(probe, split)
        return self._load(setting.method, [*opts, "OUTPUT_DIR", str(self.work / f"run_{key}")]), key

    def cached_run(self, setting: Setting, seed: int, split: str) -> dict | None:
        """The record of a finished run, or None."""
        return self.cache.load("runs", self.student_config(setting, seed, split)[1])

    def run(self, setting: Setting, seed: int, split: str) -> dict:
        """Train (unless cached; an interrupted run resumes) and evaluate one student.

        Returns:
            The run record; ``metrics["top1"]`` is the score on ``split`` (last epoch).
        """
        from luminet.data import build_datasets
        from luminet.engine import ClsTrainer

        cfg, key = self.student_config(setting, seed, split)
        record = self.cache.load("runs", key)
        if record is not None:
            return record
        t0, c0, load0 = time.perf_counter(), time.process_time(), os.getloadavg()[0]
        trainer = ClsTrainer(cfg, resume=True)
        result = trainer.train()
        metrics = {"val_top1": float(result["last"]["val.top1"])}
        arrays = None
        if split == "test":
            correct = predict_correct(trainer.student, build_datasets(cfg).test)
            metrics["test_top1"] = 100.0 * float(correct.mean())
            arrays = {"correct": correct}
        metrics["top1"] = metrics[f"{split}_top1"]
        record = {
            "task": "classification",
            "method": setting.method,
            "setting": setting.name,
            "overrides": [list(kv) for kv in setting.overrides],
            "seed": seed,
            "split": split,
            "metrics": metrics,
            "epochs": int(cfg.SOLVER.EPOCHS),
            "threads": int(cfg.NUM_THREADS),
            "wall_seconds": round(time.perf_counter() - t0, 2),
            "cpu_seconds": round(time.process_time() - c0, 2),
            "load_before": round(load0, 2),
            "load_after": round(os.getloadavg()[0], 2),
        }
        logger.info(
            "%s [%s] seed %d: %s top-1 %.2f (%.0f s wall, %.0f s CPU)",
            setting.method, setting.name, seed, split, metrics["top1"],
            record["wall_seconds"], record["cpu_seconds"],
        )  # fmt: skip
        return self.cache.store("runs", key, record, arrays)

    def correct(self, record: dict) -> np.ndarray:
        """Per-test-crop correctness stored with a final (or teacher) record."""
        return self.cache.load_arrays("runs", record["key"])["correct"]
