"""Detection part of the study: digit scenes with a test split, the demo's teacher and students.

Every student run trains the demo's R18-FPN student (same recipe, 300 iterations) from the
seed's initial weights (the pretrained R18 plus seeded FPN and heads, shared by every method)
with the seed's data order, then evaluates COCO AP on one split and keeps the per-detection
matches (:mod:`.coco_matches`) for the bootstrap. Finished runs are cached by a hash of the full
config, the initial weights, the seed, the split, the thread count and the library versions.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from luminet_det.demo import DigitScenesSpec

from . import demo_stages
from .coco_matches import CocoMatches, ap_of_weighted_images, coco_matches
from .protocol import STUDY_SCENES, Setting, TaskProtocol
from .run_cache import RunCache, config_hash

logger = logging.getLogger(__name__)

__all__ = ["DETECTION_RECIPE_VERSION", "DATASET_PREFIX", "QUICK_SCENES", "DetectionStudy"]

# Bump when this file changes how a run is trained or evaluated.
DETECTION_RECIPE_VERSION = 1
DATASET_PREFIX = "study_scenes"
_METRICS = ("AP", "AP50", "AP75")
# Tiny scenes for --quick (tests): checks the pipeline, not the methods.
QUICK_SCENES = DigitScenesSpec(num_train=24, num_val=12, num_test=12, test_fraction=0.2)


def _register_datasets(spec: DigitScenesSpec, root: Path | None) -> dict[str, str]:
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from luminet_det.demo import register_digit_scenes

    prefix = DATASET_PREFIX if spec == STUDY_SCENES else f"{DATASET_PREFIX}_{spec.key()}"
    names = {s: f"{prefix}_{s}" for s in spec.splits()}
    if names["train"] in DatasetCatalog.list():
        registered = MetadataCatalog.get(names["train"]).digit_scenes_spec
        if registered != spec:
            raise ValueError(f"{names['train']!r} is registered with another spec: {registered}")
        return names
    return register_digit_scenes(prefix, spec, root=root)


@dataclass
class DetectionStudy:
    """Runs of the detection study, cached under ``work``.

    Args:
        work: directory of the demo-stage caches (pretrained backbones, teacher, initial
            weights), the evaluation outputs and the run records.
        protocol: the detection protocol.
        threads: torch intra-op threads of every run (part of the cache key: CPU training is
            bit-deterministic only for a fixed thread count).
        log_period: iterations between progress lines.
        quick: the demo's quick mode (tiny scenes under ``work``, a few iterations per model).
    """

    work: Path
    protocol: TaskProtocol
    threads: int = 1
    log_period: int = 50
    quick: bool = False
    clock: object = field(default_factory=lambda: demo_stages.Clock())

    def __post_init__(self):
        self.work = Path(self.work)
        self.cache = RunCache(self.work / "runs")
        self._ready = False

    # ------------------------------------------------------------------ set-up
    def prepare(self) -> dict:
        """Build the data, pretrain the backbones and train the teacher (each cached).

        Returns:
            The teacher's val metrics (with ``seconds`` of training when it was trained now).
        """
        if self._ready:
            return self.teacher_metrics
        from detectron2.data import DatasetCatalog

        torch.set_num_threads(self.threads)
        if self.quick:
            self.datasets = _register_datasets(QUICK_SCENES, self.work / "data")
        else:
            self.datasets = _register_datasets(STUDY_SCENES, None)
        stage_cache = self.work / "stages"
        stage_cache.mkdir(parents=True, exist_ok=True)
        args = SimpleNamespace(
            quick=self.quick, teacher_iters=None, retrain_teacher=False, log_period=self.log_period
        )
        train_val = {"train": self.datasets["train"], "val": self.datasets["val"]}
        t0, c0 = time.perf_counter(), time.process_time()
        for name in self.datasets.values():
            DatasetCatalog.get(name)  # builds the scenes on first use
        weights, cfg_file, metrics = demo_stages.get_teacher(
            args, train_val, stage_cache, self.clock
        )
        self.teacher_weights, self.teacher_cfg_file, self.teacher_metrics = (
            weights,
            cfg_file,
            metrics,
        )
        self.base_cfg = demo_stages.load_cfg(
            demo_stages.STUDENT_CONFIG, train_val, self.quick, None
        )
        self.backbone, _ = demo_stages.pretrained_backbone(
            self.base_cfg, demo_stages.STUDENT_BACKBONE, stage_cache, self.quick, self.clock
        )
        self.stage_cache = stage_cache
        self._ready = True
        if self.cache.load("setup", "detection") is None:
            # The first complete set-up: data, both pretrainings, the teacher and its val AP.
            self.cache.store(
                "setup",
                "detection",
                {
                    "wall_seconds": round(time.perf_counter() - t0, 2),
                    "cpu_seconds": round(time.process_time() - c0, 2),
                    "teacher_was_cached": bool(metrics.get("cached")),
                    "threads": self.threads,
                },
            )
        return metrics

    def setup_record(self) -> dict:
        """Time of the first complete set-up (see :meth:`prepare`)."""
        self.prepare()
        return self.cache.load("setup", "detection")

    def _relative(self, text: str) -> str:
        """``text`` with this study's directory replaced by a placeholder (stable keys)."""
        return text.replace(str(self.work), "<work>")

    # ------------------------------------------------------------------ students
    def student_config(self, setting: Setting, seed: int, split: str):
        """The full config of a student run, and its initial weights.

        Returns:
            ``(cfg, init_weights_path)``.
        """
        self.prepare()
        method = setting.method
        cfg = self.base_cfg.clone()
        cfg.MODEL.META_ARCHITECTURE = "DistillRCNN"
        cfg.MODEL.DISTILL.LOSS = method
        cfg.MODEL.DISTILL.TEACHER_CONFIG = self.teacher_cfg_file if method != "none" else ""
        cfg.MODEL.DISTILL.TEACHER_WEIGHTS = self.teacher_weights if method != "none" else ""
        cfg.merge_from_list(self.protocol.warmup_opts(method) + setting.opts())
        cfg.SEED = seed
        cfg.DATASETS.TEST = (self.datasets[split],)
        init = demo_stages.student_init(self.base_cfg, seed, self.backbone, self.stage_cache)
        return cfg, init

    def run_key(self, setting: Setting, seed: int, split: str) -> str:
        """The cache key of a student run."""
        import detectron2

        cfg, init = self.student_config(setting, seed, split)
        return config_hash(
            {
                "config": self._relative(cfg.dump()),
                "init": Path(init).name,
                "seed": seed,
                "split": split,
                "threads": self.threads,
                "torch": torch.__version__,
                "detectron2": detectron2.__version__,
                "recipe": DETECTION_RECIPE_VERSION,
            }
        )

    def cached_run(self, setting: Setting, seed: int, split: str) -> dict | None:
        """The record of a finished run, or None."""
        return self.cache.load("runs", self.run_key(setting, seed, split))

    def run(self, setting: Setting, seed: int, split: str) -> dict:
        """Train (unless cached) the student of ``setting`` and ``seed``; evaluate on ``split``.

        Returns:
            The run record: ``metrics`` (AP, AP50, AP75 in percent), times, settings.
        """
        key = self.run_key(setting, seed, split)
        record = self.cache.load("runs", key)
        if record is not None:
            return record
        cfg, init = self.student_config(setting, seed, split)
        torch.set_num_threads(self.threads)
        name = f"{setting.method} [{setting.name}] seed {seed}"
        logger.info("%s %s: training, then %s evaluation", self.clock, name, split)
        load0, t0, c0 = os.getloadavg()[0], time.perf_counter(), time.process_time()
        model, train_seconds = demo_stages.train(cfg, init, name, self.clock, self.log_period)
        t1 = time.perf_counter()
        metrics, matches = self._evaluate(model, cfg, self.work / "eval" / key)
        del model
        record = {
            "task": "detection",
            "method": setting.method,
            "setting": setting.name,
            "overrides": [list(kv) for kv in setting.overrides],
            "seed": seed,
            "split": split,
            "metrics": metrics,
            "iterations": cfg.SOLVER.MAX_ITER,
            "threads": self.threads,
            "train_seconds": round(train_seconds, 2),
            "eval_seconds": round(time.perf_counter() - t1, 2),
            "wall_seconds": round(time.perf_counter() - t0, 2),
            "cpu_seconds": round(time.process_time() - c0, 2),
            "load_before": round(load0, 2),
            "load_after": round(os.getloadavg()[0], 2),
        }
        logger.info(
            "%s %s: %s AP %.2f AP50 %.2f AP75 %.2f (%.0f s wall, %.0f s CPU)",
            self.clock, name, split, metrics["AP"], metrics["AP50"], metrics["AP75"],
            record["wall_seconds"], record["cpu_seconds"],
        )  # fmt: skip
        return self.cache.store("runs", key, record, matches.to_npz_dict())

    def matches(self, record: dict) -> CocoMatches:
        """The per-detection matches stored with a run (or teacher) record."""
        return CocoMatches.from_npz_dict(self.cache.load_arrays("runs", record["key"]))

    def _evaluate(self, model, cfg, out_dir: Path) -> tuple[dict, CocoMatches]:
        """The demo's COCO evaluation, plus the per-detection matches (checked to give the same
        AP)."""
        from detectron2.data import MetadataCatalog
        from pycocotools.coco import COCO

        metrics = demo_stages.evaluate(model, cfg, out_dir)
        meta = MetadataCatalog.get(cfg.DATASETS.TEST[0])
        results_file = out_dir / "coco_instances_results.json"
        results = json.loads(results_file.read_text()) if results_file.is_file() else []
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(meta.json_file)
        matches = coco_matches(gt, results)
        ours = ap_of_weighted_images(matches, np.ones(len(matches.image_ids)))
        ours = np.nan_to_num(ours, nan=0.0)
        theirs = np.array([metrics[m] for m in _METRICS])
        if not np.allclose(ours, theirs, rtol=0, atol=1e-6):
            raise RuntimeError(
                f"AP from the stored matches {ours.tolist()} differs from COCOeval's "
                f"{theirs.tolist()} ({out_dir})"
            )
        return metrics, matches

    # ------------------------------------------------------------------ teacher
    @property
    def teacher_name(self) -> str:
        """The teacher's name in tables (the demo's)."""
        return demo_stages.TEACHER_NAME

    def teacher_run(self, split: str) -> dict:
        """The teacher evaluated on ``split`` (cached), with its matches."""
        from detectron2.checkpoint import DetectionCheckpointer
        from detectron2.config import get_cfg
        from detectron2.modeling import build_model

        from luminet_det import add_distill_config

        self.prepare()
        key = config_hash(
            {"teacher": Path(self.teacher_weights).parent.name, "split": split, "eval": 1}
        )
        record = self.cache.load("runs", key)
        if record is not None:
            return record
        cfg = get_cfg()
        add_distill_config(cfg)
        cfg.merge_from_file(self.teacher_cfg_file)
        cfg.DATASETS.TEST = (self.datasets[split],)
        t0, c0 = time.perf_counter(), time.process_time()
        model = build_model(cfg)
        DetectionCheckpointer(model).load(self.teacher_weights)
        metrics, matches = self._evaluate(model, cfg, self.work / "eval" / key)
        record = {
            "task": "detection",
            "method": "teacher",
            "split": split,
            "metrics": metrics,
            "iterations": cfg.SOLVER.MAX_ITER,
            "train_seconds": self.teacher_metrics.get("seconds"),
            "pretrain_seconds": self.teacher_metrics.get("pretrain_seconds"),
            "wall_seconds": round(time.perf_counter() - t0, 2),
            "cpu_seconds": round(time.process_time() - c0, 2),
        }
        logger.info("%s teacher on %s: AP %.2f", self.clock, split, metrics["AP"])
        return self.cache.store("runs", key, record, matches.to_npz_dict())
