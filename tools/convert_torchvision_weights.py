#!/usr/bin/env python
"""Convert torchvision ImageNet weights to a detectron2 backbone checkpoint (.pkl).

Example:
    python tools/convert_torchvision_weights.py --model resnet50 \
        --input resnet50-0676ba61.pth --output R-50-torchvision.pkl

Without --input, the file torchvision itself would have cached for --weights is used if it exists
(under ``torch.hub.get_dir()/checkpoints``); nothing is ever downloaded. The output keys are
already detectron2 names under --prefix and carry ``matching_heuristics: False``. Configs loading
ResNet weights made this way need MODEL.RESNETS.STRIDE_IN_1X1 False, INPUT.FORMAT RGB and the
torchvision PIXEL_MEAN/PIXEL_STD (see docs/backbones.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import sys

from luminet.atomic_io import atomic_write
from luminet_det.backbones.torchvision_conversion import (
    SUPPORTED_MODELS,
    convert_torchvision_state_dict,
    load_torchvision_state_dict,
    make_detectron2_checkpoint,
    torchvision_cache_path,
    verify_against_detectron2,
)

logger = logging.getLogger("convert_torchvision_weights")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, choices=SUPPORTED_MODELS)
    parser.add_argument(
        "--input",
        default=None,
        help="torchvision .pth state_dict; default: torchvision's cached file for --weights",
    )
    parser.add_argument("--output", required=True, help="output checkpoint, must end in .pkl")
    parser.add_argument(
        "--weights",
        default="DEFAULT",
        help="torchvision weights name used to find the cached file (e.g. IMAGENET1K_V1)",
    )
    parser.add_argument(
        "--prefix",
        default="backbone.bottom_up.",
        help="key prefix: 'backbone.bottom_up.' (FPN models), 'backbone.' (no FPN) or ''",
    )
    parser.add_argument(
        "--width-mult", type=float, default=1.0, help="MobileNetV2 width multiplier of the input"
    )
    parser.add_argument(
        "--no-last-conv",
        action="store_true",
        help="MobileNetV2: drop features[18] (for MODEL.MOBILENETV2.LAST_CONV False)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the conversion.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The checkpoint dict that was written.
    """
    args = parse_args(argv)
    if not args.output.endswith(".pkl"):
        raise ValueError(
            f"--output {args.output!r} must end in .pkl (detectron2 reads .pkl checkpoints "
            "as pickled dicts of numpy arrays)"
        )
    if args.model != "mobilenet_v2" and (args.no_last_conv or args.width_mult != 1.0):
        raise ValueError(f"--no-last-conv / --width-mult apply to mobilenet_v2, not {args.model}")
    path = args.input
    if path is None:
        path = torchvision_cache_path(args.model, args.weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"No --input given and torchvision's cached {args.model} {args.weights} weights "
                f"are not at {path!r}; download them on a machine with internet (see "
                "docs/backbones.md) and pass --input"
            )
        logger.info("Using torchvision's cached weights %s", path)
    state_dict = load_torchvision_state_dict(path)
    last_conv = not args.no_last_conv
    weights = convert_torchvision_state_dict(
        args.model, state_dict, prefix=args.prefix, last_conv=last_conv
    )
    verify_against_detectron2(
        args.model, weights, prefix=args.prefix, width_mult=args.width_mult, last_conv=last_conv
    )
    checkpoint = make_detectron2_checkpoint(
        weights, author=f"torchvision {args.model} ({os.path.basename(path)})"
    )
    with atomic_write(args.output, "wb") as f:  # never a truncated weights file
        pickle.dump(checkpoint, f)
    logger.info("Wrote %d tensors to %s", len(weights), args.output)
    return checkpoint


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main(sys.argv[1:])
