"""Classification datasets (CIFAR-100, ImageNet, scikit-learn digits, digit crops) and loaders."""

from . import cifar, digit_crops, digits, imagenet  # noqa: F401  (registration)
from .build import (
    DATASET_REGISTRY,
    DatasetSplits,
    ShardSampler,
    available_datasets,
    build_datasets,
    build_train_loader,
    build_val_loader,
    register_dataset,
    set_loader_epoch,
)

__all__ = [
    "DATASET_REGISTRY",
    "DatasetSplits",
    "ShardSampler",
    "available_datasets",
    "build_datasets",
    "build_train_loader",
    "build_val_loader",
    "register_dataset",
    "set_loader_epoch",
]
