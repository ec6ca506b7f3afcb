"""CIFAR-100 through torchvision, with the augmentation of the KD literature."""

from __future__ import annotations

import logging
import os

from fvcore.common.config import CfgNode
from torchvision import datasets
from torchvision import transforms as T

from .build import DatasetSplits, register_dataset

__all__ = ["CIFAR100_MEAN", "CIFAR100_STD", "cifar100_transforms", "build_cifar100"]

logger = logging.getLogger(__name__)

CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)


def cifar100_transforms(train: bool) -> T.Compose:
    """Random crop 32 (padding 4) + horizontal flip for training; normalisation for both."""
    norm = [T.ToTensor(), T.Normalize(CIFAR100_MEAN, CIFAR100_STD)]
    if train:
        return T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), *norm])
    return T.Compose(norm)


@register_dataset("cifar100")
def build_cifar100(cfg: CfgNode) -> DatasetSplits:
    """``torchvision.datasets.CIFAR100`` under ``DATASET.ROOT`` (50k train / 10k test = val).

    Raises:
        FileNotFoundError: when the data is missing and ``DATASET.DOWNLOAD`` is off.
    """
    root = cfg.DATASET.ROOT
    download = bool(cfg.DATASET.DOWNLOAD)
    if not download and not os.path.isdir(os.path.join(root, "cifar-100-python")):
        raise FileNotFoundError(
            f"CIFAR-100 not found under DATASET.ROOT={root!r} (expected {root}/cifar-100-python/); "
            "run once with DATASET.DOWNLOAD True on a machine with internet access"
        )
    train = datasets.CIFAR100(
        root, train=True, transform=cifar100_transforms(True), download=download
    )
    val = datasets.CIFAR100(
        root, train=False, transform=cifar100_transforms(False), download=download
    )
    return DatasetSplits(train, val, num_classes=100, in_channels=3, image_size=32)
