"""One benchmark run of a dense detector family (RetinaNet): variants, memory, targets.

The same method as the R-CNN run (:func:`~.runner.run_benchmark`): every variant is timed
interleaved in one process on one synthetic batch, peak memory is measured in a subprocess per
variant, and the targets are ratios of the medians of this run. Entry point:
``tools/benchmark.py --family retinanet``; see ``docs/benchmark.md``.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os

import torch

from .dense_memory import measure_dense_memory
from .dense_variants import (
    ALL_DENSE_VARIANTS,
    DENSE_BENCH_CONFIGS,
    DENSE_FAMILIES,
    DenseBenchModels,
    build_dense_bench_cfgs,
    make_dense_batch,
)
from .presets import BenchSettings
from .report import MIB
from .runner import environment
from .timing import summarize, time_interleaved

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_DENSE_VARIANTS",
    "DENSE_MEMORY_VARIANTS",
    "DENSE_DISTILL_VARIANTS",
    "dense_settings",
    "compute_dense_targets",
    "run_dense_benchmark",
]

DEFAULT_DENSE_VARIANTS = ALL_DENSE_VARIANTS
#: Variants whose peak memory is measured (a subprocess each).
DENSE_MEMORY_VARIANTS = ("student", "kd_sigmoid", "luminet_sigmoid", "teacher")
#: The distillation steps, each checked against the floor (student step + teacher inference).
DENSE_DISTILL_VARIANTS = ("kd_sigmoid", "luminet_sigmoid")

#: distillation step <= FLOOR_THRESHOLD x (student step + teacher inference)
FLOOR_THRESHOLD = 1.05
#: luminet_sigmoid step <= LOSS_THRESHOLD x kd_sigmoid step
LOSS_THRESHOLD = 1.02
#: distillation peak <= MEMORY_THRESHOLD x (student peak + teacher peak)
MEMORY_THRESHOLD = 1.10


def dense_settings(settings: BenchSettings, family: str) -> BenchSettings:
    """A preset of :mod:`.presets` for a dense family: the ``tiny`` preset keeps its tiny models
    (the tiny RetinaNet as teacher and student), any other preset runs the family's shipped
    pair (:data:`~.dense_variants.DENSE_BENCH_CONFIGS`) at the preset's batch and image size.

    Raises:
        ValueError: unknown family.
    """
    if family not in DENSE_BENCH_CONFIGS:
        raise ValueError(f"unknown dense benchmark family {family!r}; known: {DENSE_FAMILIES}")
    if settings.config == "tiny":
        return dataclasses.replace(settings)
    return dataclasses.replace(settings, config=DENSE_BENCH_CONFIGS[family])


def _target(value, threshold, met, what: str) -> dict:
    return {"what": what, "value": value, "threshold": threshold, "met": met}


def compute_dense_targets(
    timing: dict[str, dict], memory: dict[str, dict] | None, device: str
) -> tuple[dict[str, float], dict[str, dict]]:
    """The ratios of a dense run and its targets.

    Args:
        timing: variant -> :func:`~.timing.summarize` output.
        memory: variant -> ``{"peak_bytes"}`` or None when memory was not measured.
        device: "cpu" or "cuda".

    Returns:
        ``(ratios, targets)``; each target has ``met`` True/False, or None when its inputs were
        not measured in this run.
    """
    m = {name: t["median_ms"] for name, t in timing.items()}
    ratios: dict[str, float] = {}
    if "luminet_sigmoid" in m and "kd_sigmoid" in m:
        ratios["luminet_sigmoid/kd_sigmoid"] = m["luminet_sigmoid"] / m["kd_sigmoid"]
    for v in DENSE_DISTILL_VARIANTS:
        if v in m and "student" in m:
            ratios[f"{v}/student"] = m[v] / m["student"]
        if all(k in m for k in (v, "student", "teacher")):
            ratios[f"{v}/(student+teacher)"] = m[v] / (m["student"] + m["teacher"])
        if v in m and f"loss_{v}" in m:
            ratios[f"loss_{v}/{v}"] = m[f"loss_{v}"] / m[v]

    targets: dict[str, dict] = {}
    for v in DENSE_DISTILL_VARIANTS:
        r = ratios.get(f"{v}/(student+teacher)")
        targets[f"{v}_vs_floor"] = _target(
            r,
            FLOOR_THRESHOLD,
            None if r is None else r <= FLOOR_THRESHOLD,
            f"{v} step / (student step + teacher inference) <= {FLOOR_THRESHOLD} ({device})",
        )
    r = ratios.get("luminet_sigmoid/kd_sigmoid")
    targets["luminet_sigmoid_vs_kd_sigmoid"] = _target(
        r,
        LOSS_THRESHOLD,
        None if r is None else r <= LOSS_THRESHOLD,
        f"luminet_sigmoid step / kd_sigmoid step <= {LOSS_THRESHOLD}",
    )
    what = (
        f"luminet_sigmoid peak <= {MEMORY_THRESHOLD} x (student-alone peak + teacher weights "
        "and inference) (MiB)"
    )
    if memory and all(k in memory for k in ("luminet_sigmoid", "student", "teacher")):
        budget = MEMORY_THRESHOLD * (
            memory["student"]["peak_bytes"] + memory["teacher"]["peak_bytes"]
        )
        peak = memory["luminet_sigmoid"]["peak_bytes"]
        targets["memory"] = _target(peak / MIB, budget / MIB, peak <= budget, what)
    else:
        targets["memory"] = _target(None, None, None, what)
    return ratios, targets


def run_dense_benchmark(
    settings: BenchSettings,
    family: str = "retinanet",
    variants: list[str] | None = None,
    memory: bool = True,
    threads: int | None = None,
) -> dict:
    """Time the dense ``variants`` interleaved, measure memory in subprocesses, check targets.

    Args:
        settings: what to run (a preset of :mod:`.presets`; see :func:`dense_settings`).
        family: a dense family of :data:`~.dense_variants.DENSE_FAMILIES`.
        variants: subset of :data:`~.dense_variants.ALL_DENSE_VARIANTS`; default all.
        memory: measure peak memory of :data:`DENSE_MEMORY_VARIANTS` (those selected).
        threads: torch CPU threads (default: all cores).

    Returns:
        A JSON-serialisable dict: family, settings, environment, anchors, timing, memory,
        ratios, targets.

    Raises:
        ValueError: bad settings, an unknown family, no variants, or CUDA requested but absent.
        KeyError: an unknown variant.
    """
    settings.validate()
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False")
    variants = list(variants or DEFAULT_DENSE_VARIANTS)
    if not variants:
        raise ValueError("no benchmark variants selected")
    unknown = [v for v in variants if v not in ALL_DENSE_VARIANTS]
    if unknown:
        raise KeyError(
            f"unknown variant(s) {unknown} for --family {family}; known: {list(ALL_DENSE_VARIANTS)}"
        )
    student_cfg, teacher_cfg = build_dense_bench_cfgs(settings, family)
    threads = int(threads or os.cpu_count() or 1)
    torch.set_num_threads(threads)

    models = DenseBenchModels(
        student_cfg,
        teacher_cfg,
        make_dense_batch(settings, student_cfg.MODEL.RETINANET.NUM_CLASSES),
        settings.seed,
    )
    logger.info("building %d %s variants", len(variants), family)
    steps = {v: models.step_fn(v) for v in variants}
    timing_raw = time_interleaved(steps, settings.steps, settings.warmup, settings.device)
    timing = {v: summarize(timing_raw[v]) for v in variants}
    result = {
        "family": family,
        "settings": dataclasses.asdict(settings),
        "environment": environment(settings, threads),
        "anchors": models.num_anchors(),
        "num_classes": models.num_classes(),
        "teacher_weights_mib": models.teacher_bytes() / MIB,
        "timing": timing,
        "timing_raw_s": timing_raw,
    }
    del steps
    gc.collect()
    mem = None
    if memory:
        mem_variants = [v for v in DENSE_MEMORY_VARIANTS if v in variants]
        mem = measure_dense_memory(settings, family, mem_variants, models.batch, threads)
    result["memory"] = mem
    ratios, targets = compute_dense_targets(timing, mem, settings.device)
    result["ratios"] = ratios
    result["targets"] = targets
    result["environment"]["loadavg_after"] = list(os.getloadavg())
    return result
