"""The whole demo in one call: data, pretrained backbones, teacher, students, AP, table, figures."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .catalog import ensure_digit_scenes
from .report import markdown_table, mean_std, perception_figure
from .stages import (
    LOSSES,
    STUDENT_BACKBONE,
    STUDENT_CONFIG,
    STUDENT_NAME,
    TEACHER_NAME,
    Clock,
    evaluate,
    get_teacher,
    load_cfg,
    pretrained_backbone,
    quick_dataset_spec,
    student_init,
    train,
    write_text_atomic,
)
from .visualize import plot_ap_chart

logger = logging.getLogger(__name__)

__all__ = ["DemoSettings", "setup_demo_logging", "demo_datasets", "run_demo"]


@dataclass
class DemoSettings:
    """What one demo run does (the options of ``tools/demo.py``).

    Attributes:
        seeds: students are trained for seeds ``0 .. seeds - 1``.
        output_dir: results, plots and caches.
        quick: tiny data and a few iterations per model (checks the pipeline, not the method).
        losses: distillation losses of the students, a subset of :data:`LOSSES`.
        student_iters, teacher_iters: override ``SOLVER.MAX_ITER`` of students / teacher.
        retrain_teacher: ignore the cached teacher.
        threads: torch CPU threads.
        log_period: iterations between progress lines.
        student_opts: ``KEY VALUE`` pairs merged into every student config.
    """

    seeds: int = 1
    output_dir: str = "output/demo"
    quick: bool = False
    losses: list[str] = field(default_factory=lambda: list(LOSSES))
    student_iters: int | None = None
    teacher_iters: int | None = None
    retrain_teacher: bool = False
    threads: int = 2
    log_period: int = 25
    student_opts: list[str] = field(default_factory=list)

    def validate(self) -> DemoSettings:
        """Raise ``ValueError`` naming the first bad field; returns self."""
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1; got {self.seeds}")
        bad = [x for x in self.losses if x not in LOSSES]
        if bad or not self.losses:
            raise ValueError(f"losses must be a non-empty subset of {LOSSES}; got {self.losses}")
        if len(self.student_opts) % 2:
            raise ValueError(f"student_opts needs KEY VALUE pairs; got {self.student_opts}")
        return self


def setup_demo_logging() -> None:
    """Progress lines of the demo on stderr; detectron2's own chatter only from warnings up."""
    from detectron2.utils.logger import setup_logger

    setup_logger(name="detectron2", abbrev_name="d2")
    setup_logger(name="luminet_det")
    logging.getLogger("detectron2").setLevel(logging.WARNING)
    logging.getLogger("fvcore").setLevel(logging.WARNING)
    # Digit-scene category ids are 0..9, mapped one-to-one; detectron2 warns about any id
    # outside 1..K.
    logging.getLogger("detectron2.data.datasets.coco").setLevel(logging.ERROR)


def demo_datasets(quick: bool, cache: Path) -> dict[str, str]:
    """Register (on first use) and return the demo's ``{"train": name, "val": name}``."""
    if quick:
        return ensure_digit_scenes("digit_scenes_quick", quick_dataset_spec(), root=cache / "data")
    return ensure_digit_scenes()


def run_demo(settings: DemoSettings) -> dict:
    """Run the demo of ``settings``; writes ``results.json``, ``results.md``, ``ap.png`` and
    ``perception.png`` under ``settings.output_dir`` and prints the table.

    Returns:
        The content of ``results.json``.
    """
    settings.validate()
    torch.set_num_threads(settings.threads)
    setup_demo_logging()
    clock = Clock()
    out = Path(settings.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache"
    cache.mkdir(exist_ok=True)

    from detectron2.data import DatasetCatalog

    import luminet_det  # noqa: F401  (registers DistillRCNN)

    datasets = demo_datasets(settings.quick, cache)
    t0 = time.perf_counter()
    for name in datasets.values():
        DatasetCatalog.get(name)
    logger.info("%s data ready (%.1fs): %s", clock, time.perf_counter() - t0, datasets)

    teacher_weights, teacher_cfg_file, teacher_metrics = get_teacher(
        settings, datasets, cache, clock
    )

    base = load_cfg(STUDENT_CONFIG, datasets, settings.quick, settings.student_iters)
    backbone, _ = pretrained_backbone(base, STUDENT_BACKBONE, cache, settings.quick, clock)
    students: dict[str, dict] = {loss: {"runs": []} for loss in settings.losses}
    for seed in range(settings.seeds):
        init = student_init(base, seed, backbone, cache)
        for loss in settings.losses:
            cfg = base.clone()
            cfg.MODEL.META_ARCHITECTURE = "DistillRCNN"
            cfg.MODEL.DISTILL.LOSS = loss
            cfg.MODEL.DISTILL.TEACHER_CONFIG = teacher_cfg_file if loss != "none" else ""
            cfg.MODEL.DISTILL.TEACHER_WEIGHTS = teacher_weights if loss != "none" else ""
            cfg.merge_from_list(list(settings.student_opts))
            cfg.SEED = seed
            name = f"student {STUDENT_NAME} {loss} seed {seed}"
            logger.info("%s %s: training %d iterations", clock, name, cfg.SOLVER.MAX_ITER)
            model, seconds = train(cfg, init, name, clock, settings.log_period)
            metrics = evaluate(model, cfg, out / "eval" / f"{loss}_seed{seed}")
            logger.info(
                "%s %s: AP %.2f AP50 %.2f AP75 %.2f",
                clock,
                name,
                metrics["AP"],
                metrics["AP50"],
                metrics["AP75"],
            )
            students[loss]["runs"].append(
                {
                    "seed": seed,
                    **metrics,
                    "iterations": cfg.SOLVER.MAX_ITER,
                    "seconds": round(seconds, 1),
                }
            )
            student_cfg_dump = cfg.dump()
            del model
    for entry in students.values():
        for m in ("AP", "AP50", "AP75"):
            entry[f"{m}_mean"], entry[f"{m}_std"] = mean_std(entry["runs"], m)

    perception_info = perception_figure(
        teacher_cfg_file, teacher_weights, datasets["val"], out / "perception.png"
    )
    plot_ap_chart(
        {k: v["runs"] for k, v in students.items()},
        teacher_metrics,
        out / "ap.png",
        title=f"Digit scenes val: {STUDENT_NAME} students of an {TEACHER_NAME} teacher",
    )
    results = {
        "teacher": {**teacher_metrics, "model": TEACHER_NAME},
        "students": students,
        "settings": {
            "seeds": settings.seeds,
            "quick": settings.quick,
            "datasets": datasets,
            "threads": settings.threads,
            "student_opts": list(settings.student_opts),
            "total_seconds": round(time.perf_counter() - clock.start, 1),
        },
        "perception_example": perception_info,
    }
    write_text_atomic(out / "results.json", json.dumps(results, indent=1))
    write_text_atomic(out / "student_config_last.yaml", student_cfg_dump)
    table = markdown_table(results)
    write_text_atomic(out / "results.md", table + "\n")
    print("\n" + table + "\n", flush=True)
    logger.info("%s done: %s/{results.json,results.md,ap.png,perception.png}", clock, out)
    return results
