#!/usr/bin/env python
"""A fair, pre-registered comparison of KD, DKD and LumiNet, with confidence intervals.

Executes the protocol of docs/study_protocol.md (luminet_det/study/protocol.py) for detection
(digit scenes with train/val/test splits, the demo's R34-FPN teacher and R18-FPN students) and
classification (digit crops, resnet20 -> resnet8): the same number of settings per method tuned
on val, the chosen settings trained with 5 seeds and evaluated once on test, paired differences
with two-level (test items x seeds) bootstrap intervals. Writes docs/study.md, docs/study/*.png
and docs/study/results.json.

Every finished run is cached under --output by a hash of its full config: an interrupted study
continues where it stopped, and a finished one rewrites the report from the cache in seconds.

Usage::

    python tools/study.py                       # everything (about 2-3 h on 2 idle cores)
    python tools/study.py --phase tune          # tuning runs and the selection only
    python tools/study.py --tasks classification
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from luminet_det.study.runner import TASKS, StudyOptions, run_study


def parse_args(argv: list[str] | None = None) -> StudyOptions:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--output", default="output/study", help="caches and runs (default %(default)s)")
    p.add_argument(
        "--report-dir", default="docs", help="study.md and figures (default %(default)s)"
    )
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--phase", default="all", choices=("tune", "all"), help="stop after tuning?")
    p.add_argument("--jobs", type=int, default=2, help="runs trained at once (default 2)")
    p.add_argument(
        "--det-threads", type=int, default=1, help="torch threads per detection run (default 1)"
    )
    p.add_argument("--quick", action="store_true", help="tiny data and schedules (pipeline check)")
    a = p.parse_args(argv)
    try:
        return StudyOptions(
            output=Path(a.output), report_dir=Path(a.report_dir), tasks=tuple(a.tasks),
            phase=a.phase, jobs=a.jobs, det_threads=a.det_threads, quick=a.quick,
        ).validate()  # fmt: skip
    except ValueError as e:
        p.error(str(e))


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s]: %(message)s")
    for name, level in (("detectron2", logging.WARNING), ("fvcore", logging.WARNING),
                        ("detectron2.data.datasets.coco", logging.ERROR)):  # fmt: skip
        logging.getLogger(name).setLevel(level)


def main(argv: list[str] | None = None) -> dict:
    opts = parse_args(argv)
    _setup_logging()
    t0 = time.perf_counter()
    results = run_study(opts)
    logging.getLogger("luminet_det.study").info(
        "study done in %.0f s (this invocation)", time.perf_counter() - t0
    )
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
