#!/usr/bin/env python
"""Check detection datasets before training: every image, size, box and category id.

Examples::

    python tools/check_dataset.py coco_2017_train                  # decode every image
    python tools/check_dataset.py coco_2017_train --mode headers   # file headers only (fast)
    python tools/check_dataset.py mine --coco-dataset mine ann.json images/ --num-classes 10

Every problem is printed with its file name (see ``luminet_det.dataset_check`` for the list).
Exit status 0 when every dataset can be trained on, 1 when one has an error (a missing, damaged
or mis-sized image, a NaN box, a category id out of range, or no usable box at all).
``tools/train_net.py`` runs the same check before step 0 (``DATALOADER.CHECK.*``).
"""

from __future__ import annotations

import argparse
import logging
import sys

from detectron2.data import DatasetCatalog, MetadataCatalog

import luminet_det  # noqa: F401  (registers the project's components)
from luminet_det.dataset_check import check_detection_dataset
from luminet_det.engine import register_coco_datasets

logger = logging.getLogger("luminet_det.check_dataset")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", nargs="+", metavar="DATASET_NAME", help="registered names")
    parser.add_argument(
        "--coco-dataset",
        nargs=3,
        action="append",
        metavar=("NAME", "JSON", "IMAGE_DIR"),
        help="register a COCO-format dataset under NAME first (repeatable)",
    )
    parser.add_argument(
        "--mode",
        choices=("full", "headers"),
        default="full",
        help="full: decode every image completely; headers: open file headers only",
    )
    parser.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="valid category ids are [0, N); default: the dataset's thing_classes",
    )
    parser.add_argument("--threads", type=int, default=2, help="images checked in parallel")
    parser.add_argument("--report", help="also write every problem to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    register_coco_datasets(args.coco_dataset)
    reports = []
    for name in args.datasets:
        if name not in DatasetCatalog.list():
            raise ValueError(
                f"dataset {name!r} is not registered; register it with --coco-dataset {name} "
                "JSON IMAGE_DIR"
            )
        dicts = DatasetCatalog.get(name)
        num_classes = args.num_classes
        if num_classes is None:
            classes = MetadataCatalog.get(name).get("thing_classes")
            num_classes = len(classes) if classes else None
        report = check_detection_dataset(
            dicts, name, mode=args.mode, num_classes=num_classes, threads=args.threads
        )
        for problem in report.problems:
            print(problem)
        print(report.summary())
        reports.append(report)
    if args.report:
        with open(args.report, "w") as f:
            for r in reports:
                f.write(r.summary() + "\n")
                f.writelines(f"{p}\n" for p in r.problems)
    failed = [r.name for r in reports if not r.trainable]
    if failed:
        print(f"NOT TRAINABLE: {', '.join(failed)} (see the errors above)")
        return 1
    print(f"ok: {', '.join(r.name for r in reports)} can be trained on")
    return 0


if __name__ == "__main__":
    sys.exit(main())
