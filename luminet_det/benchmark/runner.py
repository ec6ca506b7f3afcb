"""One benchmark run (all variants on one batch) and the scaling sweep."""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import platform

import torch
from detectron2.utils.events import EventStorage

from .memory import measure_memory
from .presets import BenchSettings, build_bench_cfgs
from .report import MIB, compute_targets
from .timing import summarize, time_interleaved
from .variants import ALL_VARIANTS, MODEL_VARIANTS, BenchModels, make_batch

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_VARIANTS", "MEMORY_VARIANTS", "run_benchmark", "run_scaling", "environment"]

#: Timed by default (the bf16 variants are added by ``teacher_autocast="bf16"``).
DEFAULT_VARIANTS = (
    "student",
    "kd",
    "dkd",
    "luminet",
    "reference",
    "teacher",
    "student_box_head",
    "loss_luminet",
    "loss_kd",
    "loss_dkd",
)
#: Variants whose peak memory is measured (a subprocess each).
MEMORY_VARIANTS = ("student", "kd", "dkd", "luminet", "reference", "teacher")


def environment(settings: BenchSettings, threads: int) -> dict:
    """Machine, library versions and load, for the record."""
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "loadavg_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "device": settings.device,
        "weights": "random init (timing and memory only)",
    }
    if settings.device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
    return env


def _check_variants(variants: list[str]) -> None:
    unknown = [v for v in variants if v not in ALL_VARIANTS]
    if unknown:
        raise KeyError(f"unknown benchmark variant(s) {unknown}; known: {list(ALL_VARIANTS)}")
    if not variants:
        raise ValueError("no benchmark variants selected")


def bf16_loss_check(models: BenchModels, luminet_step) -> dict:
    """LumiNet loss on the same batch and ROIs with the teacher in fp32 and under bf16 autocast.

    The student's logits come from one forward of the ``luminet`` model; only the teacher's
    precision changes between the two values.
    """
    model = luminet_step.model
    sampled = models.sampled_proposals()
    boxes = [p.proposal_boxes for p in sampled]
    with torch.no_grad():
        images = model.preprocess_image(models.batch)
        features = model.backbone(images.tensor)
        student_logits = model.student_roi_logits(features, boxes)
        target = torch.cat([p.gt_classes for p in sampled])
        values = {}
        teacher = model.teacher
        saved = teacher.autocast
        try:
            for mode in ("fp32", "bf16"):
                teacher.autocast = mode
                t = teacher.roi_logits(models.batch, boxes)
                values[f"loss_{mode}"] = float(model.distill_loss(student_logits, t, target))
        finally:
            teacher.autocast = saved
    return values


def run_benchmark(
    settings: BenchSettings,
    variants: list[str] | None = None,
    memory: bool = True,
    teacher_autocast: str = "",
    threads: int | None = None,
) -> dict:
    """Time all ``variants`` interleaved, measure memory in subprocesses, check the targets.

    Args:
        settings: what to run (see :mod:`.presets`).
        variants: subset of :data:`~.variants.ALL_VARIANTS`; default :data:`DEFAULT_VARIANTS`.
        memory: measure peak memory of :data:`MEMORY_VARIANTS` (those selected).
        teacher_autocast: "bf16" adds the ``luminet_bf16``/``teacher_bf16`` variants and the
            loss-value check; "" for none.
        threads: torch CPU threads (default: all cores).

    Returns:
        A JSON-serialisable dict: settings, environment, rois, timing, memory, ratios, targets.
    """
    settings.validate()
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False")
    if teacher_autocast not in ("", "bf16"):
        raise ValueError(f"teacher_autocast must be '' or 'bf16'; got {teacher_autocast!r}")
    variants = list(variants or DEFAULT_VARIANTS)
    if teacher_autocast == "bf16":
        variants += [v for v in ("luminet_bf16", "teacher_bf16") if v not in variants]
    _check_variants(variants)
    threads = int(threads or os.cpu_count() or 1)
    torch.set_num_threads(threads)

    student_cfg, teacher_cfg = build_bench_cfgs(settings)
    models = BenchModels(
        student_cfg, teacher_cfg, make_batch(settings, student_cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    )
    logger.info("building %d variants", len(variants))
    steps = {v: models.step_fn(v) for v in variants}
    timing_raw = time_interleaved(steps, settings.steps, settings.warmup, settings.device)
    timing = {v: summarize(timing_raw[v]) for v in variants}

    bf16 = None
    if teacher_autocast == "bf16":
        lum = steps.get("luminet") or models.step_fn("luminet")
        bf16 = bf16_loss_check(models, lum)
    sampled = models.sampled_proposals()
    result = {
        "settings": dataclasses.asdict(settings),
        "environment": environment(settings, threads),
        "sampled_rois": models.num_rois(),
        "num_classes": models.num_classes(),
        "teacher_weights_mib": models.teacher_bytes() / MIB,
        "timing": timing,
        "timing_raw_s": timing_raw,
    }
    del steps
    gc.collect()
    mem = None
    if memory:
        mem_variants = [v for v in MEMORY_VARIANTS if v in variants]
        if teacher_autocast == "bf16":
            mem_variants += ["luminet_bf16", "teacher_bf16"]
        mem = measure_memory(settings, mem_variants, models.batch, sampled, threads)
    result["memory"] = mem
    result["bf16_check"] = bf16
    ratios, targets = compute_targets(timing, mem, bf16, settings.device)
    result["ratios"] = ratios
    result["targets"] = targets
    result["environment"]["loadavg_after"] = list(os.getloadavg())
    return result


def run_scaling(
    settings: BenchSettings,
    images: list[int],
    rois: list[int],
    memory: bool = True,
    threads: int | None = None,
) -> dict:
    """Sweep images per batch x ROIs per image; time student, teacher and luminet steps.

    Returns:
        ``{"settings", "environment", "rows": [...]}`` with one row per (images, rois).
    """
    settings.validate()
    threads = int(threads or os.cpu_count() or 1)
    torch.set_num_threads(threads)
    rows = []
    for r in rois:
        for n in images:
            s = dataclasses.replace(settings, images=int(n), rois=int(r)).validate()
            student_cfg, teacher_cfg = build_bench_cfgs(s)
            models = BenchModels(
                student_cfg, teacher_cfg, make_batch(s, student_cfg.MODEL.ROI_HEADS.NUM_CLASSES)
            )
            steps = {v: models.step_fn(v) for v in ("student", "teacher", "luminet")}
            raw = time_interleaved(steps, s.steps, s.warmup, s.device)
            t = {v: summarize(raw[v]) for v in steps}
            row = {
                "images": n,
                "rois": r,
                "sampled_rois": models.num_rois(),
                "student_ms": t["student"]["median_ms"],
                "teacher_ms": t["teacher"]["median_ms"],
                "luminet_ms": t["luminet"]["median_ms"],
                "ratio_floor": t["luminet"]["median_ms"]
                / (t["student"]["median_ms"] + t["teacher"]["median_ms"]),
                "timing": t,
            }
            del steps
            gc.collect()
            if memory:
                mem = measure_memory(
                    s, ["student", "luminet"], models.batch, models.sampled_proposals(), threads
                )
                row["student_peak_mib"] = mem["student"]["peak_bytes"] / MIB
                row["luminet_peak_mib"] = mem["luminet"]["peak_bytes"] / MIB
            rows.append(row)
            logger.info(
                "scaling images=%d rois=%d: student %.1f ms, teacher %.1f ms, luminet %.1f ms",
                n,
                r,
                row["student_ms"],
                row["teacher_ms"],
                row["luminet_ms"],
            )
    return {
        "settings": dataclasses.asdict(settings),
        "environment": environment(settings, threads),
        "rows": rows,
    }


def profile_step(settings: BenchSettings, variant: str, threads: int | None = None) -> str:
    """torch.profiler table (top 25 ops by self CPU time) of one step of ``variant``."""
    from torch.profiler import ProfilerActivity, profile

    if variant not in MODEL_VARIANTS and variant not in ALL_VARIANTS:
        raise KeyError(f"unknown benchmark variant {variant!r}; known: {list(ALL_VARIANTS)}")
    torch.set_num_threads(int(threads or os.cpu_count() or 1))
    student_cfg, teacher_cfg = build_bench_cfgs(settings)
    models = BenchModels(
        student_cfg, teacher_cfg, make_batch(settings, student_cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    )
    step = models.step_fn(variant)
    for _ in range(max(settings.warmup, 1)):
        step()
    activities = [ProfilerActivity.CPU]
    if settings.device == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with EventStorage(0), profile(activities=activities) as prof:
        step()
    key = "self_cuda_time_total" if settings.device == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=25)
