"""Step-time and memory benchmark of DistillRCNN against its floor and the reference design.

Entry point: ``tools/benchmark.py``; see ``docs/benchmark.md``.
"""

from .presets import PRESETS, BenchSettings, build_bench_cfgs, get_preset
from .reference import ReferenceDistillRCNN
from .report import compute_targets, format_scaling, format_table, format_targets
from .runner import DEFAULT_VARIANTS, MEMORY_VARIANTS, profile_step, run_benchmark, run_scaling
from .timing import summarize, time_interleaved
from .variants import ALL_VARIANTS, LOSS_VARIANTS, MODEL_VARIANTS, BenchModels

__all__ = [
    "PRESETS",
    "BenchSettings",
    "build_bench_cfgs",
    "get_preset",
    "compute_targets",
    "format_scaling",
    "format_table",
    "format_targets",
    "DEFAULT_VARIANTS",
    "MEMORY_VARIANTS",
    "profile_step",
    "run_benchmark",
    "run_scaling",
    "summarize",
    "time_interleaved",
    "ALL_VARIANTS",
    "LOSS_VARIANTS",
    "MODEL_VARIANTS",
    "BenchModels",
    "ReferenceDistillRCNN",
]
