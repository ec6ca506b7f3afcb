#!/usr/bin/env python
"""Write a student-only checkpoint that a stock detectron2 GeneralizedRCNN loads.

For checkpoints that contain a teacher (e.g. from other distillation code: ``student.*`` /
``teacher.*`` keys, or top-level student keys next to ``teacher.*`` and adapters). DistillRCNN's
own checkpoints are already student-only.

Example::

    python tools/extract_student.py other_kd/model_final.pth student.pth \\
        --config-file configs/coco/r101_r18_luminet.yaml   # verify: strict load into stock model

Then ``MODEL.META_ARCHITECTURE GeneralizedRCNN MODEL.WEIGHTS student.pth`` in any detectron2 tool.
"""

from __future__ import annotations

import argparse
import logging
import sys

from luminet.atomic_io import atomic_torch_save
from luminet_det.checkpoint import extract_student_state_dict, load_state_dict_file

logger = logging.getLogger("luminet_det.extract_student")


def verify_stock_load(state: dict, config_file: str, opts: list[str]) -> None:
    """Load ``state`` strictly into a stock GeneralizedRCNN built from ``config_file``.

    Raises:
        ValueError: listing missing/unexpected/mis-shaped keys.
    """
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from luminet_det import add_distill_config

    cfg = get_cfg()
    add_distill_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(opts)
    cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    expected = model.state_dict()
    wrong = [k for k in state if k in expected and expected[k].shape != state[k].shape]
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected or wrong:
        raise ValueError(
            f"the extracted student does not fit {config_file}: {len(missing)} missing "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
            f"{len(wrong)} with a wrong shape (e.g. {wrong[:3]})"
        )
    model.load_state_dict(state, strict=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="checkpoint with student (and teacher) weights")
    parser.add_argument("output", help="student-only .pth to write")
    parser.add_argument("--student-prefix", default="student.", help="prefix of student keys")
    parser.add_argument(
        "--config-file", help="verify: strict load into a stock model of this config"
    )
    parser.add_argument(
        "--opts", nargs="+", default=[], metavar="KEY VALUE", help="overrides for --config-file"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    state = load_state_dict_file(args.input)
    student, dropped = extract_student_state_dict(state, args.student_prefix)
    logger.info("kept %d student tensors; dropped %s", len(student), dropped or "nothing")
    if args.config_file:
        verify_stock_load(student, args.config_file, args.opts)
        logger.info("verified: loads strictly into a stock GeneralizedRCNN of %s", args.config_file)
    atomic_torch_save({"model": student, "__author__": "luminet_det extract_student"}, args.output)
    logger.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
