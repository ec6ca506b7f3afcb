#!/usr/bin/env python
"""Build (or find the cached) digit-scene detection set and print where it is.

    python datasets/build_digit_scenes.py                     # the default set (demo)
    python datasets/build_digit_scenes.py --num-train 2000 --image-size 192 --seed 1

Files go under ``$DETECTRON2_DATASETS/generated`` (default ``datasets/generated``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

from luminet_det.demo import DigitScenesSpec, build_digit_scenes, generated_root


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--root", default=None, help="parent directory (default: generated_root())")
    for field in dataclasses.fields(DigitScenesSpec):
        p.add_argument(
            "--" + field.name.replace("_", "-"),
            type=type(field.default),
            default=field.default,
            help=f"default {field.default}",
        )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    spec = DigitScenesSpec(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(DigitScenesSpec)}
    )
    out = build_digit_scenes(args.root or generated_root(), spec)
    print(out)


if __name__ == "__main__":
    main()
