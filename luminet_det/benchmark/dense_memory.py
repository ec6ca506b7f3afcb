"""Peak memory of one dense variant, measured in a fresh subprocess per variant.

The same method as :mod:`.memory` (see there: CPU peak-RSS growth from just before the models are
built, CUDA ``max_memory_allocated``); the child (``python -m luminet_det.benchmark.dense_memory
SPEC VARIANT OUT``) builds only what the dense variant needs and runs ``memory_steps`` steps on
the parent's batch.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import subprocess
import sys
import tempfile

import torch

from .dense_variants import DenseBenchModels, build_dense_bench_cfgs
from .memory import PeakRSS
from .presets import BenchSettings

logger = logging.getLogger(__name__)

__all__ = ["measure_dense_memory"]


def measure_dense_memory(
    settings: BenchSettings,
    family: str,
    variants: list[str],
    batch: list[dict],
    threads: int,
    timeout_s: float = 900.0,
) -> dict[str, dict]:
    """Peak memory of each dense variant, one subprocess each (sequentially).

    Returns:
        variant -> ``{"peak_bytes": int, "method": str}``.

    Raises:
        RuntimeError: when a child fails (its stderr tail is in the message).
    """
    results = {}
    with tempfile.TemporaryDirectory(prefix="luminet_bench_dense_") as tmp:
        spec_path = os.path.join(tmp, "spec.pt")
        torch.save(
            {
                "settings": dataclasses.asdict(settings),
                "family": family,
                "batch": batch,
                "threads": threads,
            },
            spec_path,
        )
        for i, variant in enumerate(variants):
            logger.info("memory %s (%d/%d): running a child process", variant, i + 1, len(variants))
            out_path = os.path.join(tmp, f"{variant}.json")
            cmd = [sys.executable, "-m", __name__, spec_path, variant, out_path]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
            if proc.returncode != 0:
                raise RuntimeError(
                    f"memory child for dense variant {variant!r} failed (exit "
                    f"{proc.returncode}):\n{proc.stderr[-3000:]}"
                )
            with open(out_path) as f:
                results[variant] = json.load(f)
            logger.info("memory %s: %.1f MiB", variant, results[variant]["peak_bytes"] / 2**20)
    return results


def _child(spec_path: str, variant: str, out_path: str) -> None:
    import luminet_det  # noqa: F401  (registers DistillRetinaNet)

    spec = torch.load(spec_path, weights_only=False)
    torch.set_num_threads(int(spec["threads"]))
    settings = BenchSettings(**spec["settings"])
    student_cfg, teacher_cfg = build_dense_bench_cfgs(settings, spec["family"])
    cuda = settings.device == "cuda"
    gc.collect()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    peak = PeakRSS()
    peak.start()
    models = DenseBenchModels(student_cfg, teacher_cfg, spec["batch"], settings.seed)
    step = models.step_fn(variant)
    for _ in range(settings.memory_steps):
        step()
    if cuda:
        torch.cuda.synchronize()
        result = {
            "peak_bytes": int(torch.cuda.max_memory_allocated()),
            "method": "cuda_max_allocated",
        }
    else:
        result = {"peak_bytes": peak.stop(), "method": peak.method}
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(f"usage: python -m {__name__} SPEC VARIANT OUT")
    _child(*sys.argv[1:])
