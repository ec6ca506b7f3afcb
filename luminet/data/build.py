"""Datasets by name, and the train/val loaders with reproducible, resumable data order."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import numpy as np
import torch
from fvcore.common.config import CfgNode
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from luminet.registry import NamedRegistry

__all__ = [
    "DatasetSplits",
    "DATASET_REGISTRY",
    "register_dataset",
    "available_datasets",
    "build_datasets",
    "build_train_loader",
    "build_val_loader",
    "set_loader_epoch",
    "ShardSampler",
]

logger = logging.getLogger(__name__)


@dataclass
class DatasetSplits:
    """What a dataset builder returns.

    Attributes:
        train: training split, with training augmentation.
        val: validation split, with the deterministic test transform.
        num_classes: number of classes.
        in_channels: image channels (3 for RGB, 1 for the digits).
        image_size: side of the square network input.
        test: a held-out test split with the deterministic test transform, for data sets that
            have one (never used by the trainer).
    """

    train: Dataset
    val: Dataset
    num_classes: int
    in_channels: int
    image_size: int
    test: Dataset | None = None


#: The registry behind :func:`register_dataset` (fvcore ``Registry`` form, case-insensitive).
DATASET_REGISTRY = NamedRegistry("dataset")


def register_dataset(name: str, *, override: bool = False):
    """Decorator: register ``fn(cfg) -> DatasetSplits`` under ``name`` (case-insensitive).

    Raises:
        ValueError: if the name is taken (unless ``override=True``).
    """
    return DATASET_REGISTRY.register_as(name, override=override)


def available_datasets() -> list[str]:
    """Registered dataset names, sorted."""
    return DATASET_REGISTRY.names()


def build_datasets(cfg: CfgNode) -> DatasetSplits:
    """Build the train/val splits named by ``cfg.DATASET.TYPE``.

    Raises:
        KeyError: for an unknown dataset name.
    """
    try:
        builder = DATASET_REGISTRY.get(cfg.DATASET.TYPE)
    except KeyError:
        raise KeyError(
            f"unknown DATASET.TYPE {cfg.DATASET.TYPE!r}; known: {', '.join(available_datasets())}"
        ) from None
    return builder(cfg)


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; derive numpy/random from it.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_train_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    seed: int,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """Shuffled training loader whose order depends only on ``(seed, epoch)``.

    Call ``loader.sampler.set_epoch(epoch)`` and ``loader.generator.manual_seed(...)`` (see
    :func:`set_loader_epoch`) before every epoch: the data order and the worker seeds of epoch
    ``e`` are then the same in an uninterrupted run and in one resumed at epoch ``e``.

    Args:
        dataset: the training split.
        batch_size: total batch size over all ``world_size`` processes.
        seed: experiment seed.
        num_workers: loader worker processes.
        rank, world_size: this process's place in a distributed run.
    """
    if batch_size % world_size:
        raise ValueError(
            f"SOLVER.BATCH_SIZE {batch_size} is not divisible by the {world_size} processes"
        )
    sampler = DistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False
    )
    return DataLoader(
        dataset,
        batch_size=batch_size // world_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=False,
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
    )


def set_loader_epoch(loader: DataLoader, epoch: int, seed: int, rank: int = 0) -> None:
    """Fix the shuffling and the worker seeds of ``loader`` for ``epoch``."""
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    if loader.generator is not None:
        loader.generator.manual_seed(int(seed) * 1_000_003 + epoch * 7919 + rank)


class ShardSampler(Sampler[int]):
    """Every ``world_size``-th index starting at ``rank``, in order, with no padding.

    Distributed evaluation then counts each sample exactly once (unlike ``DistributedSampler``,
    which repeats samples to make the shards equal).
    """

    def __init__(self, size: int, rank: int = 0, world_size: int = 1):
        self.indices = list(range(rank, size, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_val_loader(
    dataset: Dataset, batch_size: int, *, num_workers: int = 0, rank: int = 0, world_size: int = 1
) -> DataLoader:
    """Deterministic validation loader; each process sees a disjoint shard."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=ShardSampler(len(dataset), rank, world_size),
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=False,
        generator=torch.Generator().manual_seed(0),
    )
