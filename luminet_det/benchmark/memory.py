"""Peak memory of one variant, measured in a fresh subprocess per variant.

``ru_maxrss`` only ever grows within a process, so each variant runs alone in a child
(``python -m luminet_det.benchmark.memory SPEC OUT``) that builds only what the variant needs and
runs ``memory_steps`` steps on the parent's batch and sampled proposals:

* CPU: ``peak RSS during build + steps - RSS before building the models`` (weights, gradients,
  optimizer state and activations; the interpreter and imports are excluded). On Linux the
  kernel's peak-RSS counter (``VmHWM``) is reset through ``/proc/self/clear_refs`` just before
  the build, so that transient peaks of the imports do not hide the variant's; elsewhere the
  difference of ``ru_maxrss`` is used (a lower bound).
* CUDA: ``torch.cuda.max_memory_allocated()`` of the child (it starts with nothing on the GPU).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile

import torch

from .presets import BenchSettings, build_bench_cfgs
from .variants import BenchModels

logger = logging.getLogger(__name__)

__all__ = ["measure_memory", "max_rss_bytes", "PeakRSS"]


def max_rss_bytes() -> int:
    """Peak resident set size of this process so far, in bytes (Linux: ru_maxrss is in KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss) if sys.platform == "darwin" else int(rss) * 1024


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(f"{field} not in /proc/self/status")


class PeakRSS:
    """Peak RSS growth from :meth:`start` to :meth:`stop`, in bytes, and the method used."""

    def start(self) -> None:
        try:
            self.base = _status_kib("VmRSS") * 1024
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM (peak RSS) to the current RSS
            self.method = "rss_peak_delta (VmHWM reset)"
        except OSError:
            self.base = max_rss_bytes()
            self.method = "ru_maxrss_delta"

    def stop(self) -> int:
        if self.method.startswith("rss_peak"):
            return _status_kib("VmHWM") * 1024 - self.base
        return max_rss_bytes() - self.base


def measure_memory(
    settings: BenchSettings,
    variants: list[str],
    batch: list[dict],
    sampled: list,
    threads: int,
    timeout_s: float = 900.0,
) -> dict[str, dict]:
    """Peak memory of each variant, one subprocess each (sequentially).

    Returns:
        variant -> ``{"peak_bytes": int, "method": str}`` (method: how it was measured).

    Raises:
        RuntimeError: when a child fails (its stderr tail is in the message).
    """
    results = {}
    with tempfile.TemporaryDirectory(prefix="luminet_bench_") as tmp:
        spec_path = os.path.join(tmp, "spec.pt")
        torch.save(
            {
                "settings": dataclasses.asdict(settings),
                "batch": batch,
                "sampled": [p.to("cpu") for p in sampled],
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
                    f"memory child for {variant!r} failed (exit {proc.returncode}):\n"
                    f"{proc.stderr[-3000:]}"
                )
            with open(out_path) as f:
                results[variant] = json.load(f)
            logger.info("memory %s: %.1f MiB", variant, results[variant]["peak_bytes"] / 2**20)
    return results


def _child(spec_path: str, variant: str, out_path: str) -> None:
    spec = torch.load(spec_path, weights_only=False)
    torch.set_num_threads(int(spec["threads"]))
    settings = BenchSettings(**spec["settings"])
    student_cfg, teacher_cfg = build_bench_cfgs(settings)
    cuda = settings.device == "cuda"
    gc.collect()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    peak = PeakRSS()
    peak.start()
    models = BenchModels(student_cfg, teacher_cfg, spec["batch"], settings.seed, spec["sampled"])
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
