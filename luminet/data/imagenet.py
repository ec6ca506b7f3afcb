"""ImageNet-1k in ImageFolder layout (``ROOT/train/<wnid>/*.JPEG``, ``ROOT/val/<wnid>/*``)."""

from __future__ import annotations

import logging
import os

from fvcore.common.config import CfgNode
from torchvision import datasets
from torchvision import transforms as T

from .build import DatasetSplits, register_dataset

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "imagenet_transforms", "build_imagenet"]

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_transforms(train: bool) -> T.Compose:
    """RandomResizedCrop 224 + flip for training; resize 256 + centre crop 224 for validation."""
    norm = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train:
        return T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), *norm])
    return T.Compose([T.Resize(256), T.CenterCrop(224), *norm])


@register_dataset("imagenet")
def build_imagenet(cfg: CfgNode) -> DatasetSplits:
    """``ImageFolder`` datasets from ``DATASET.ROOT/train`` and ``DATASET.ROOT/val``.

    Raises:
        FileNotFoundError: when either folder is missing.
        ValueError: when the two folders do not hold the same classes.
    """
    root = cfg.DATASET.ROOT
    dirs = {split: os.path.join(root, split) for split in ("train", "val")}
    for split, path in dirs.items():
        if not os.path.isdir(path):
            raise FileNotFoundError(
                f"ImageNet {split} folder {path!r} not found; expected the ImageFolder layout "
                f"{root}/train/<class>/*.JPEG and {root}/val/<class>/*.JPEG"
            )
    train = datasets.ImageFolder(dirs["train"], transform=imagenet_transforms(True))
    val = datasets.ImageFolder(dirs["val"], transform=imagenet_transforms(False))
    if train.classes != val.classes:
        raise ValueError(
            f"train and val class folders differ under {root!r}: {len(train.classes)} vs "
            f"{len(val.classes)} classes"
        )
    return DatasetSplits(train, val, num_classes=len(train.classes), in_channels=3, image_size=224)
