"""Ratios, targets (met / not met) and text tables of a benchmark run."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

__all__ = ["compute_targets", "format_table", "format_targets", "format_scaling"]

MIB = 2**20


def _median(timing: dict, name: str) -> float | None:
    return timing[name]["median_ms"] if name in timing else None


def _target(value, threshold, met, what: str, **extra) -> dict:
    return {"what": what, "value": value, "threshold": threshold, "met": met, **extra}


def compute_targets(
    timing: dict[str, dict],
    memory: dict[str, dict] | None,
    bf16: dict | None,
    device: str,
) -> tuple[dict[str, float], dict[str, dict]]:
    """The ratios of the run and the issue's targets.

    Args:
        timing: variant -> :func:`~.timing.summarize` output.
        memory: variant -> ``{"peak_bytes"}`` or None when memory was not measured.
        bf16: ``{"loss_fp32", "loss_bf16"}`` of the bf16-teacher check, or None.
        device: "cpu" or "cuda".

    Returns:
        ``(ratios, targets)``; each target has ``met`` True/False, or None when its inputs were
        not measured in this run.
    """
    m = {name: _median(timing, name) for name in timing}
    ratios: dict[str, float] = {}

    def ratio(key, a, b):
        if m.get(a) is not None and m.get(b) is not None:
            ratios[key] = m[a] / m[b]

    ratio("luminet/kd", "luminet", "kd")
    ratio("dkd/kd", "dkd", "kd")
    ratio("luminet/student", "luminet", "student")
    ratio("reference/luminet", "reference", "luminet")
    ratio("loss_luminet/loss_kd", "loss_luminet", "loss_kd")
    ratio("loss_dkd/loss_kd", "loss_dkd", "loss_kd")
    ratio("teacher/teacher_bf16", "teacher", "teacher_bf16")
    ratio("luminet/luminet_bf16", "luminet", "luminet_bf16")
    if all(m.get(k) is not None for k in ("luminet", "student", "teacher")):
        ratios["luminet/(student+teacher)"] = m["luminet"] / (m["student"] + m["teacher"])
    if m.get("luminet") is not None and m.get("loss_luminet") is not None:
        ratios["loss_luminet/luminet"] = m["loss_luminet"] / m["luminet"]

    targets: dict[str, dict] = {}
    v = ratios.get("luminet/kd")
    targets["luminet_vs_kd"] = _target(
        v, 1.02, None if v is None else v <= 1.02, "LumiNet step / KD step <= 1.02"
    )
    v = ratios.get("luminet/(student+teacher)")
    targets["luminet_vs_floor"] = _target(
        v,
        1.05,
        None if v is None else v <= 1.05,
        f"LumiNet step / (student step + teacher inference) <= 1.05 ({device})",
    )
    if all(m.get(k) is not None for k in ("reference", "luminet", "student_box_head")):
        saved = m["reference"] - m["luminet"]
        targets["luminet_vs_reference"] = _target(
            saved,
            m["student_box_head"],
            saved >= m["student_box_head"],
            "reference step - LumiNet step >= student box-head cost (ms)",
        )
    else:
        targets["luminet_vs_reference"] = _target(
            None, None, None, "reference step - LumiNet step >= student box-head cost (ms)"
        )
    if memory and all(k in memory for k in ("luminet", "student", "teacher")):
        budget = 1.10 * (memory["student"]["peak_bytes"] + memory["teacher"]["peak_bytes"])
        lum = memory["luminet"]["peak_bytes"]
        targets["memory"] = _target(
            lum / MIB,
            budget / MIB,
            lum <= budget,
            "LumiNet peak <= 1.10 x (student-alone peak + teacher weights and inference) (MiB)",
        )
    else:
        targets["memory"] = _target(None, None, None, "LumiNet peak memory budget (MiB)")
    if bf16 is not None:
        rel = abs(bf16["loss_bf16"] - bf16["loss_fp32"]) / max(abs(bf16["loss_fp32"]), 1e-12)
        targets["bf16_teacher"] = _target(
            rel,
            0.01,
            rel <= 0.01,
            "bf16-autocast teacher: relative change of the LumiNet loss <= 1%",
            speedup_teacher=ratios.get("teacher/teacher_bf16"),
            speedup_step=ratios.get("luminet/luminet_bf16"),
            device=device,
        )
    else:
        targets["bf16_teacher"] = _target(
            None, 0.01, None, "bf16-autocast teacher (run with --teacher-autocast bf16)"
        )
    return ratios, targets


def _fmt(x, spec=".1f") -> str:
    return "-" if x is None else format(x, spec)


def format_table(timing: dict[str, dict], memory: dict[str, dict] | None) -> str:
    """Markdown table: variant, median/min/max ms, peak memory MiB."""
    lines = [
        "| variant | median ms | min ms | max ms | peak memory MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, t in timing.items():
        mem = memory.get(name, {}).get("peak_bytes") if memory else None
        lines.append(
            f"| {name} | {t['median_ms']:.1f} | {t['min_ms']:.1f} | {t['max_ms']:.1f} | "
            f"{_fmt(None if mem is None else mem / MIB)} |"
        )
    return "\n".join(lines)


def format_targets(ratios: dict[str, float], targets: dict[str, dict]) -> str:
    """Ratios, then one line per target with MET / NOT MET / not measured."""
    lines = ["ratios (medians): " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items())]
    for key, t in targets.items():
        state = {True: "MET", False: "NOT MET", None: "not measured"}[t["met"]]
        lines.append(
            f"  [{state}] {key}: {t['what']}: value {_fmt(t['value'], '.3f')}, "
            f"threshold {_fmt(t['threshold'], '.3f')}"
        )
    return "\n".join(lines)


def format_scaling(rows: list[dict]) -> str:
    """Markdown table of a scaling sweep."""
    lines = [
        "| images | ROIs/image | sampled ROIs | student ms | teacher ms | luminet ms | "
        "luminet/(student+teacher) | luminet peak MiB | student peak MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['images']} | {r['rois']} | {r['sampled_rois']} | {r['student_ms']:.1f} | "
            f"{r['teacher_ms']:.1f} | {r['luminet_ms']:.1f} | {r['ratio_floor']:.3f} | "
            f"{_fmt(r.get('luminet_peak_mib'))} | {_fmt(r.get('student_peak_mib'))} |"
        )
    return "\n".join(lines)
