#!/usr/bin/env python
"""Benchmark a DistillRCNN training step against the student alone, the teacher's inference,
KD/DKD and the reference design of public Detectron2 KD code (student box head run twice);
with --family retinanet, a DistillRetinaNet step (kd_sigmoid, luminet_sigmoid) against the
student alone and the teacher's dense inference.

Examples::

    python tools/benchmark.py --preset cpu-small --json bench.json
    python tools/benchmark.py --preset paper --teacher-autocast bf16 --json paper.json  # GPU
    python tools/benchmark.py --preset cpu-small --scaling --images 1 2 4 8 --rois 128 256 512
    python tools/benchmark.py --preset cpu-small --profile luminet
    python tools/benchmark.py --family retinanet --preset cpu-small --json retinanet.json

Weights are random (nothing is downloaded): the numbers are step times and memory, not accuracy.
See docs/benchmark.md for what each variant and target means.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys

import luminet_det  # noqa: F401  (registers DistillRCNN)
from luminet.atomic_io import atomic_write
from luminet_det.benchmark import (
    ALL_VARIANTS,
    PRESETS,
    BenchSettings,
    format_scaling,
    format_table,
    format_targets,
    get_preset,
    profile_step,
    run_benchmark,
    run_scaling,
)
from luminet_det.benchmark.dense import dense_settings, run_dense_benchmark
from luminet_det.benchmark.dense_variants import ALL_DENSE_VARIANTS, DENSE_FAMILIES

logger = logging.getLogger("luminet_det.benchmark")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="cpu-small", choices=sorted(PRESETS))
    p.add_argument(
        "--family",
        default="rcnn",
        choices=("rcnn", *DENSE_FAMILIES),
        help="detector family: rcnn (DistillRCNN, default) or a dense one (DistillRetinaNet)",
    )
    p.add_argument("--config", help="student config (overrides the preset's)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="overrides the preset's device")
    p.add_argument("--images", type=int, nargs="+", help="images per batch (several: --scaling)")
    p.add_argument("--rois", type=int, nargs="+", help="ROIs per image (several: --scaling)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="image size")
    p.add_argument("--steps", type=int, help="measured steps per variant")
    p.add_argument("--warmup", type=int, help="warm-up steps per variant")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    p.add_argument(
        "--variants",
        nargs="+",
        choices=list(dict.fromkeys((*ALL_VARIANTS, *ALL_DENSE_VARIANTS))),
        help="subset of variants to time (of the chosen --family)",
    )
    p.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    p.add_argument(
        "--teacher-autocast",
        choices=("", "bf16"),
        default="",
        help="bf16: also time the teacher under bf16 autocast and check the loss change",
    )
    p.add_argument("--scaling", action="store_true", help="sweep --images x --rois")
    p.add_argument("--profile", metavar="VARIANT", choices=ALL_VARIANTS, help="profile one step")
    p.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="log everything at INFO")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    return p.parse_args(argv)


def settings_from_args(args: argparse.Namespace):
    s = get_preset(args.preset)
    if args.family != "rcnn":
        s = dense_settings(s, args.family)
    updates = {}
    if args.config:
        updates["config"] = args.config
    if args.device:
        updates["device"] = args.device
    if args.size:
        updates["height"], updates["width"] = args.size
    if args.steps is not None:
        updates["steps"] = args.steps
    if args.warmup is not None:
        updates["warmup"] = args.warmup
    if not args.scaling:
        for name in ("images", "rois"):
            values = getattr(args, name)
            if values:
                if len(values) != 1:
                    raise ValueError(f"--{name} takes one value unless --scaling is given")
                updates[name] = values[0]
    return dataclasses.replace(s, **updates).validate()


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    if not args.quiet:  # progress lines (one per timing round, one per memory child) on stderr
        logging.getLogger("luminet_det.benchmark").setLevel(logging.INFO)
    settings = settings_from_args(args)
    if args.family != "rcnn":
        return run_dense(args, settings)
    if args.profile:
        print(profile_step(settings, args.profile, args.threads))
        return {}
    if args.scaling:
        result = run_scaling(
            settings,
            images=args.images or [1, 2, 4, 8],
            rois=args.rois or [128, 256, 512],
            memory=not args.no_memory,
            threads=args.threads,
        )
        print(f"scaling sweep, preset {settings.name}, {result['environment']}")
        print(format_scaling(result["rows"]))
    else:
        result = run_benchmark(
            settings,
            variants=args.variants,
            memory=not args.no_memory,
            teacher_autocast=args.teacher_autocast,
            threads=args.threads,
        )
        print(
            f"preset {settings.name}: {settings.images} image(s) of {settings.height}x"
            f"{settings.width}, {result['sampled_rois']} sampled ROIs, "
            f"{result['num_classes']}+1 classes, {settings.steps} steps after "
            f"{settings.warmup} warm-up, device {settings.device}"
        )
        print(f"environment: {result['environment']}")
        print(format_table(result["timing"], result["memory"]))
        print(format_targets(result["ratios"], result["targets"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")
    return result


def run_dense(args: argparse.Namespace, settings: BenchSettings) -> dict:
    """The dense-family run of ``main`` (options that exist for R-CNN only are refused)."""
    for flag, given in (
        ("--scaling", args.scaling),
        ("--profile", args.profile),
        ("--teacher-autocast", args.teacher_autocast),
    ):
        if given:
            raise ValueError(f"{flag} is not available with --family {args.family}")
    result = run_dense_benchmark(
        settings,
        family=args.family,
        variants=args.variants,
        memory=not args.no_memory,
        threads=args.threads,
    )
    print(
        f"family {args.family}, preset {settings.name} ({settings.config}): {settings.images} "
        f"image(s) of {settings.height}x{settings.width}, {result['anchors']} anchors, "
        f"{result['num_classes']} classes, {settings.steps} steps after {settings.warmup} "
        f"warm-up, device {settings.device}"
    )
    print(f"environment: {result['environment']}")
    print(format_table(result["timing"], result["memory"]))
    print(format_targets(result["ratios"], result["targets"]))
    if args.json:
        write_json(args.json, result)
    return result


def write_json(path: str, result: dict) -> None:
    """Write ``result`` as JSON, atomically (the folder is created if needed)."""
    with atomic_write(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    try:
        main()
    except (KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
