#!/usr/bin/env python
"""Offline classification demo on the digit crops (CPU, a few minutes).

Digit crops (``configs/digit_crops/``): real handwritten digit scans on photographs, cut out with
scale jitter, 16x16 RGB. Trains a resnet20 teacher once on all 8,000 train crops (cached under
OUTPUT/teacher_resnet20), then a resnet8 student on the first 2,000 with each distiller (none,
kd, dkd, luminet) from the same seed and schedule, for every seed given, and prints a Markdown
table of validation accuracy (also written to OUTPUT/demo_cls.json).

Examples::

    python tools/demo_cls.py
    python tools/demo_cls.py --seeds 0 1 2 --output output/digit_crops
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import time

import torch

from luminet.config import load_config
from luminet.engine import LAST_FILE, RESUME_FILE, ClsTrainer, setup_logging


def _progress(msg: str, *args) -> None:
    """One line per run on stderr, whatever the log level."""
    print(msg % args, file=sys.stderr, flush=True)


CONFIG_DIR = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "configs", "digit_crops"
)
DISTILLERS = ("none", "kd", "dkd", "luminet")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--output", default="output/digit_crops", help="folder for all runs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="student seeds")
    parser.add_argument(
        "--distillers", nargs="+", default=list(DISTILLERS), choices=DISTILLERS, metavar="NAME"
    )
    parser.add_argument("--retrain-teacher", action="store_true", help="ignore a cached teacher")
    parser.add_argument("--verbose", action="store_true", help="log every epoch")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides (all runs)")
    return parser.parse_args(argv)


def _teacher_done(out: str, epochs: int) -> bool:
    path = os.path.join(out, RESUME_FILE)
    if not (os.path.exists(path) and os.path.exists(os.path.join(out, LAST_FILE))):
        return False
    return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"]) >= epochs


def train_teacher(args: argparse.Namespace) -> tuple[str, dict]:
    out = os.path.join(args.output, "teacher_resnet20")
    cfg = load_config(os.path.join(CONFIG_DIR, "teacher.yaml"), ["OUTPUT_DIR", out, *args.opts])
    if args.retrain_teacher and os.path.isdir(out):
        shutil.rmtree(out)
    cached = _teacher_done(out, int(cfg.SOLVER.EPOCHS))
    if not cached and os.path.isdir(out):
        shutil.rmtree(out)  # an unfinished or foreign run: start clean
    t0 = time.perf_counter()
    result = ClsTrainer(cfg, resume=True).train()
    _progress(
        "teacher %s: val top-1 %.2f (%s, %.0fs)", cfg.DISTILLER.STUDENT, result["last"]["val.top1"],
        "cached" if cached else "trained", time.perf_counter() - t0,
    )  # fmt: skip
    return os.path.join(out, LAST_FILE), result["last"]


def train_student(args: argparse.Namespace, kind: str, seed: int, teacher_path: str) -> dict:
    out = os.path.join(args.output, f"{kind}_seed{seed}")
    if os.path.isdir(out):
        shutil.rmtree(out)
    opts = ["OUTPUT_DIR", out, "SEED", str(seed)]
    if kind != "none":
        opts += ["DISTILLER.TEACHER_WEIGHTS", f"['{teacher_path}']"]
    cfg = load_config(os.path.join(CONFIG_DIR, f"{kind}.yaml"), [*opts, *args.opts])
    t0 = time.perf_counter()
    result = ClsTrainer(cfg, resume=False).train()
    last = result["last"]
    row = {
        "distiller": kind,
        "seed": seed,
        "top1": last["val.top1"],
        "top5": last["val.top5"],
        "best_top1": result["best_top1"],
        "time_s": time.perf_counter() - t0,
    }
    _progress("%-8s seed %d: val top-1 %.2f (best %.2f), %.0fs", kind, seed, row["top1"],
                   row["best_top1"], row["time_s"])  # fmt: skip
    return row


def _fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def markdown_table(rows: list[dict], teacher: dict, n_val: int | None = None) -> str:
    lines = [
        "| model | distiller | val top-1 (last epoch) | best val top-1 | val top-5 | seeds |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| resnet20 (teacher) | none | {teacher['val.top1']:.2f} | | "
        f"{teacher['val.top5']:.2f} | |",
    ]
    for kind in DISTILLERS:
        sel = [r for r in rows if r["distiller"] == kind]
        if not sel:
            continue
        lines.append(
            f"| resnet8 | {kind} | {_fmt([r['top1'] for r in sel])} | "
            f"{_fmt([r['best_top1'] for r in sel])} | {_fmt([r['top5'] for r in sel])} | "
            f"{','.join(str(r['seed']) for r in sel)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    log = setup_logging(None)
    if not args.verbose:
        log.setLevel(logging.WARNING)
    t0 = time.perf_counter()
    teacher_path, teacher = train_teacher(args)
    rows = [
        train_student(args, kind, seed, teacher_path)
        for seed in args.seeds
        for kind in args.distillers
    ]
    table = markdown_table(rows, teacher)
    report = {
        "teacher": {"model": "resnet20", "checkpoint": teacher_path, **teacher},
        "students": rows,
        "table_markdown": table,
        "total_time_s": time.perf_counter() - t0,
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
    }
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "demo_cls.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(table)
    print(f"\n({len(rows)} student runs, {report['total_time_s']:.0f}s in all; "
          f"json: {os.path.join(args.output, 'demo_cls.json')})")  # fmt: skip
    return report


if __name__ == "__main__":
    main()
