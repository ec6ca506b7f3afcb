"""LumiNet on the ROI class logits (T 1, weight 1), R101 -> R18: ``r101_r18_luminet.yaml``."""

from .base_r101_r18 import dataloader, lr_multiplier, model, optimizer, train

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]

train.output_dir = "output/coco/lazy_r101_r18_luminet"
