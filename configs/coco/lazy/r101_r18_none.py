"""The same student and pipeline without distillation (no teacher is built):
``r101_r18_none.yaml``."""

from .base_r101_r18 import dataloader, lr_multiplier, model, optimizer, train

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]

model.loss = "none"
model.loss_args = {}
model.teacher = None
train.output_dir = "output/coco/lazy_r101_r18_none"
