"""scikit-learn's handwritten digits (1,797 real 8x8 scans, 10 classes): an offline dataset.

The images are resized (bilinear) to ``DATASET.IMAGE_SIZE``, scaled to [0, 1] and standardised
with the training split's mean and std. The train/val split is stratified and fixed by
``DATASET.SPLIT_SEED`` (it does not change with ``SEED``). Training augmentation is a random
shift of up to ``IMAGE_SIZE // 8`` pixels (zero padding + random crop); no flips (digits are not
mirror-symmetric).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from fvcore.common.config import CfgNode
from torch.utils.data import Dataset

from .build import DatasetSplits, register_dataset

__all__ = ["DigitsDataset", "load_digits_tensors", "build_digits"]

logger = logging.getLogger(__name__)


def load_digits_tensors(
    image_size: int = 16, val_fraction: float = 0.2, split_seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Resized, standardised digits as ``(x_train, y_train, x_val, y_val)``.

    Args:
        image_size: output side length (>= 8).
        val_fraction: fraction of each class held out, in (0, 1).
        split_seed: seed of the stratified split.

    Returns:
        float32 images of shape (N, 1, S, S) and int64 labels of shape (N,).
    """
    if int(image_size) < 8:
        raise ValueError(f"DATASET.IMAGE_SIZE must be >= 8 for the 8x8 digits, got {image_size}")
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"DATASET.VAL_FRACTION must lie in (0, 1), got {val_fraction}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the digits dataset needs scikit-learn (pip install scikit-learn)") from e
    data = load_digits()
    images = torch.from_numpy(data.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(data.target.astype(np.int64))
    if image_size != 8:
        images = F.interpolate(images, size=(image_size, image_size), mode="bilinear",
                               align_corners=False)  # fmt: skip

    rng = np.random.default_rng(int(split_seed))
    val_idx = []
    for c in range(10):
        idx = np.flatnonzero(data.target == c)
        rng.shuffle(idx)
        val_idx.extend(idx[: int(round(len(idx) * float(val_fraction)))].tolist())
    is_val = np.zeros(len(labels), dtype=bool)
    is_val[val_idx] = True
    tr, va = torch.from_numpy(~is_val), torch.from_numpy(is_val)

    mean, std = images[tr].mean(), images[tr].std()
    images = (images - mean) / std
    return images[tr], labels[tr], images[va], labels[va]


class DigitsDataset(Dataset):
    """In-memory image tensors with an optional random-shift augmentation.

    Args:
        images: (N, C, S, S) float tensor.
        labels: (N,) int64 tensor.
        max_shift: pixels of random translation (0 = no augmentation).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, max_shift: int = 0):
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.images, self.labels, self.max_shift = images, labels, int(max_shift)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i]
        p = self.max_shift
        if p:
            size = x.shape[-1]
            padded = F.pad(x, (p, p, p, p))
            dy, dx = torch.randint(0, 2 * p + 1, (2,)).tolist()
            x = padded[:, dy : dy + size, dx : dx + size]
        return x, int(self.labels[i])


@register_dataset("digits")
def build_digits(cfg: CfgNode) -> DatasetSplits:
    """The digits splits for ``cfg.DATASET`` (IMAGE_SIZE, VAL_FRACTION, SPLIT_SEED)."""
    size = int(cfg.DATASET.IMAGE_SIZE)
    xt, yt, xv, yv = load_digits_tensors(size, cfg.DATASET.VAL_FRACTION, cfg.DATASET.SPLIT_SEED)
    train = DigitsDataset(xt, yt, max_shift=max(1, size // 8))
    val = DigitsDataset(xv, yv, max_shift=0)
    logger.info("digits: %d train / %d val images of %dx%d", len(train), len(val), size, size)
    return DatasetSplits(train, val, num_classes=10, in_channels=1, image_size=size)
