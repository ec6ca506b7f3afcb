#!/usr/bin/env python
"""Top-1 / top-5 accuracy of a trained student (or of the config's teachers) on the val split.

Examples::

    python tools/eval_cls.py --config-file configs/cifar100/luminet/res32x4_res8x4.yaml \\
        --weights output/cifar100/luminet/res32x4_res8x4/student_best.pth
    python tools/eval_cls.py --config-file configs/cifar100/luminet/res32x4_res8x4.yaml --teacher
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from luminet.config import load_config
from luminet.data import build_datasets, build_val_loader
from luminet.distillers import build_teacher, model_kwargs
from luminet.engine import evaluate, init_distributed, select_device, setup_logging
from luminet.models import build_model, load_checkpoint


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--config-file", default=None, metavar="FILE", help="YAML config")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--weights", metavar="FILE", help="student checkpoint to evaluate")
    which.add_argument(
        "--teacher", action="store_true", help="evaluate DISTILLER.TEACHER(S) with their weights"
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg = load_config(args.config_file, args.opts)
    setup_logging(None)
    device = select_device(cfg.DEVICE)
    init_distributed(device)
    splits = build_datasets(cfg)
    loader = build_val_loader(
        splits.val, int(cfg.DATASET.TEST.BATCH_SIZE), num_workers=int(cfg.DATASET.NUM_WORKERS)
    )
    if args.teacher:
        model = build_teacher(cfg, splits.num_classes, splits.in_channels, load_weights=True)
        if model is None:
            raise ValueError("--teacher given but the config has no DISTILLER.TEACHER(S)")
        name = "+".join(m.model_name for m in model.members)
    else:
        name = cfg.DISTILLER.STUDENT
        model = build_model(name, splits.num_classes, **model_kwargs(splits.in_channels))
        ckpt = torch.load(args.weights, map_location="cpu", weights_only=False)
        arch = ckpt.get("arch") if isinstance(ckpt, dict) else None
        if arch is not None and arch != name:
            raise ValueError(
                f"{args.weights} holds a {arch!r} student but DISTILLER.STUDENT is {name!r}"
            )
        load_checkpoint(model, ckpt, strict=True)
    model.to(device)
    result = evaluate(model, loader, device)
    result["model"] = name
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    try:
        main()
    except (KeyError, ValueError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)
