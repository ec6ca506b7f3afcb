#!/usr/bin/env python
"""The demo: distil a Faster R-CNN on real digit scenes, on CPU, in minutes.

Stages (each prints progress with an ETA; the code is in ``luminet_det.demo``):

1. build the digit scenes (cached under ``datasets/generated``);
2. pretrain the R18 and R34 backbones as digit-crop classifiers (train split only; cached);
3. train the R34-FPN teacher (cached: the key hashes its config, the data, the pretrained
   backbone, the demo recipe version and the library versions; any change retrains);
4. train R18-FPN students with MODEL.DISTILL.LOSS none / kd / dkd / luminet: same config, same
   initial weights, same data order, per seed;
5. COCO AP/AP50/AP75 of every model on the val split; ``results.json``, a Markdown table,
   ``ap.png`` and ``perception.png`` under ``--output-dir``.

Usage::

    python tools/demo.py --seeds 1            # the default run (make demo)
    python tools/demo.py --seeds 3            # students repeated over seeds 0, 1, 2
    python tools/demo.py --quick              # a tiny end-to-end smoke run (tests)
"""

from __future__ import annotations

import argparse
import sys

from luminet_det.demo import LOSSES, DemoSettings, run_demo


def parse_args(argv: list[str] | None = None) -> DemoSettings:
    """The command line as :class:`~luminet_det.demo.DemoSettings` (exits on bad arguments)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, default=1, help="student seeds 0..N-1 (default 1)")
    p.add_argument("--output-dir", default="output/demo", help="results, plots and caches")
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny data and a few iterations per model: checks the pipeline, not the method",
    )
    p.add_argument(
        "--losses",
        default=",".join(LOSSES),
        help=f"comma-separated distillation losses of the students (default {','.join(LOSSES)})",
    )
    p.add_argument("--student-iters", type=int, default=None, help="override students' MAX_ITER")
    p.add_argument("--teacher-iters", type=int, default=None, help="override teacher's MAX_ITER")
    p.add_argument("--retrain-teacher", action="store_true", help="ignore the cached teacher")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--log-period", type=int, default=25, help="iterations between progress lines")
    p.add_argument(
        "--student-opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="KEY VALUE pairs merged into every student config (last argument), e.g. "
        "--student-opts MODEL.DISTILL.TEMPERATURE 2.0",
    )
    args = p.parse_args(argv)
    args.losses = [x.strip().lower() for x in args.losses.split(",") if x.strip()]
    try:
        return DemoSettings(**vars(args)).validate()
    except ValueError as e:
        p.error(str(e))


def main(argv: list[str] | None = None) -> dict:
    return run_demo(parse_args(argv))


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
