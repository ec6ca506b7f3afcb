"""DKD on the ROI class logits (alpha 1, beta 0.25, T 1), R101 -> R18: ``r101_r18_dkd.yaml``."""

from .base_r101_r18 import dataloader, lr_multiplier, model, optimizer, train

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]

model.loss = "dkd"
model.loss_args = {"alpha": 1.0, "beta": 0.25, "temperature": 1.0}
train.output_dir = "output/coco/lazy_r101_r18_dkd"
