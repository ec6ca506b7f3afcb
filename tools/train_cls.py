#!/usr/bin/env python
"""Train a classification student, with or without distillation.

Examples::

    python tools/train_cls.py --config-file configs/cifar100/luminet/res32x4_res8x4.yaml
    python tools/train_cls.py --config-file configs/digits/luminet.yaml SOLVER.EPOCHS 5
    python tools/train_cls.py --config-file ... --resume          # continue an interrupted run
    torchrun --nproc_per_node 4 tools/train_cls.py --config-file ...   # several GPUs (DDP)

Everything after the options is a list of ``KEY VALUE`` config overrides.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from luminet.config import load_config
from luminet.engine import ClsTrainer, setup_logging


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--config-file", default=None, metavar="FILE", help="YAML config")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUTPUT_DIR/resume.pth if present (required when it exists)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg = load_config(args.config_file, args.opts)
    rank = int(os.environ.get("RANK", 0))
    setup_logging(cfg.OUTPUT_DIR, rank)
    trainer = ClsTrainer(cfg, resume=args.resume)
    try:
        result = trainer.train()
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if rank == 0:
        print(json.dumps({"best_top1": result["best_top1"], "best_epoch": result["best_epoch"],
                          "last": result["last"]}))  # fmt: skip
    return result


if __name__ == "__main__":
    try:
        main()
    except (KeyError, ValueError, FileNotFoundError, FileExistsError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)
