"""Hinton KD on the ROI class logits (T 1), R101 -> R18: ``r101_r18_kd.yaml``."""

from .base_r101_r18 import dataloader, lr_multiplier, model, optimizer, train

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]

model.loss = "kd"
model.loss_args = {"temperature": 1.0}
train.output_dir = "output/coco/lazy_r101_r18_kd"
