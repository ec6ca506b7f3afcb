"""Digit crops: classification of real handwritten digits cut out of cluttered photographs.

Each sample is what a detector's box classifier sees in the digit scenes of ``luminet_det``: one
of scikit-learn's 1,797 real digit scans (8x8, up-sampled to 14-44 px, aspect ratio 0.8-1.25),
inked dark on bright or bright on dark onto a piece of one of scikit-image's sample photographs,
with up to three other digits around it (often cut by the crop border), Gaussian noise, and a
square crop around it of 1.15-1.6 times its size with a random shift (scale jitter), resized to
``DATASET.IMAGE_SIZE``. Ten classes. It needs numpy, Pillow, scikit-learn and scikit-image only.

Train, val and test share no source image: the digit scans are split per class by
``DATASET.SPLIT_SEED`` (``VAL_FRACTION`` and ``DIGIT_CROPS.TEST_FRACTION`` of each class), and
each split draws its backgrounds from its own photographs (the same lists as the digit scenes).
The rendered crops are cached as one ``.npz`` under ``DATASET.ROOT`` whose name hashes the spec,
written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from fvcore.common.config import CfgNode
from PIL import Image

from .build import DatasetSplits, register_dataset
from .digits import DigitsDataset

__all__ = [
    "DIGIT_CROPS_VERSION",
    "CROP_BACKGROUNDS",
    "DigitCropsSpec",
    "build_digit_crops",
    "load_digit_crops",
    "render_digit_crops",
]

logger = logging.getLogger(__name__)

# Bump whenever the rendered crops would change for the same spec.
DIGIT_CROPS_VERSION = 1

# scikit-image sample photographs (bundled in its wheel), disjoint per split; the same lists as
# luminet_det's digit scenes.
CROP_BACKGROUNDS: dict[str, tuple[str, ...]] = {
    "train": (
        "astronaut", "camera", "coffee", "grass", "gravel", "rocket", "immunohistochemistry",
        "hubble_deep_field",
    ),
    "val": ("chelsea", "coins", "moon", "brick"),
    "test": ("retina", "cell", "clock", "page"),
}  # fmt: skip
_SPLIT_STREAM = {"train": 1, "val": 2, "test": 3}


@dataclass(frozen=True)
class DigitCropsSpec:
    """Everything that determines the rendered crops.

    Args:
        seed: seed of the scan split and of the rendering.
        image_size: side of the square crops, in pixels.
        num_train, num_val, num_test: crops per split.
        val_fraction, test_fraction: fraction of each class's scans reserved for val / test.
        min_digit_size, max_digit_size: digit side before cropping, in scene pixels (the digit
            scenes' range).
        max_neighbours: most other digits drawn around the target.
    """

    seed: int = 0
    image_size: int = 16
    num_train: int = 4000
    num_val: int = 1000
    num_test: int = 2000
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    min_digit_size: int = 14
    max_digit_size: int = 44
    max_neighbours: int = 3

    def validate(self) -> DigitCropsSpec:
        """Raise ``ValueError`` naming the config key of the first bad field; return ``self``."""
        if self.image_size < 8:
            raise ValueError(
                f"DATASET.IMAGE_SIZE must be >= 8 for digit crops; got {self.image_size}"
            )
        for key, n in (("NUM_TRAIN", self.num_train), ("NUM_VAL", self.num_val),
                       ("NUM_TEST", self.num_test)):  # fmt: skip
            if n < 1:
                raise ValueError(f"DATASET.DIGIT_CROPS.{key} must be >= 1; got {n}")
        if not (0 < self.val_fraction and 0 < self.test_fraction
                and self.val_fraction + self.test_fraction < 1):  # fmt: skip
            raise ValueError(
                "DATASET.VAL_FRACTION and DATASET.DIGIT_CROPS.TEST_FRACTION must be > 0 with a "
                f"sum < 1; got {self.val_fraction}, {self.test_fraction}"
            )
        if not 8 <= self.min_digit_size <= self.max_digit_size:
            raise ValueError(
                f"need 8 <= min_digit_size <= max_digit_size; got {self.min_digit_size}, "
                f"{self.max_digit_size}"
            )
        if self.max_neighbours < 0:
            raise ValueError(f"max_neighbours must be >= 0; got {self.max_neighbours}")
        return self

    def key(self) -> str:
        """Short hash of the spec and :data:`DIGIT_CROPS_VERSION` (the cache file name)."""
        payload = {"spec": dataclasses.asdict(self), "version": DIGIT_CROPS_VERSION}
        return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]


def _split_scans(labels: np.ndarray, spec: DigitCropsSpec) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(spec.seed)
    out: dict[str, list] = {"train": [], "val": [], "test": []}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_val = max(1, int(round(spec.val_fraction * len(idx))))
        n_test = max(1, int(round(spec.test_fraction * len(idx))))
        out["val"].append(idx[:n_val])
        out["test"].append(idx[n_val : n_val + n_test])
        out["train"].append(idx[n_val + n_test :])
    return {k: np.sort(np.concatenate(v)) for k, v in out.items()}


def _photos(names: tuple[str, ...]) -> list[np.ndarray]:
    import skimage.data

    photos = []
    for name in names:
        img = np.asarray(getattr(skimage.data, name)())
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        photos.append(np.ascontiguousarray(img[:, :, :3]).astype(np.uint8))
    return photos


def _digit_box(rng: np.random.Generator, spec: DigitCropsSpec) -> tuple[int, int]:
    side = np.exp(rng.uniform(np.log(spec.min_digit_size), np.log(spec.max_digit_size)))
    return max(8, int(round(side * rng.uniform(0.8, 1.25)))), int(round(side))


def _paste(rng, canvas: np.ndarray, scan: np.ndarray, x0: int, y0: int, w: int, h: int) -> None:
    """Ink ``scan`` (8x8 in [0, 1]) resized to w x h at (x0, y0); clipped at the canvas edge."""
    ink = Image.fromarray((scan * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    alpha = np.clip(np.asarray(ink, dtype=np.float32) / 255.0, 0.0, 1.0)
    size = canvas.shape[0]
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(size, x0 + w), min(size, y0 + h)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    a = alpha[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0, None] * rng.uniform(0.85, 1.0)
    region = canvas[cy0:cy1, cx0:cx1]
    # As in the digit scenes: dark ink on bright background, bright ink on dark.
    color = rng.uniform(0, 70, size=3) if region.mean() > 110 else rng.uniform(185, 255, size=3)
    canvas[cy0:cy1, cx0:cx1] = region * (1 - a) + color[None, None, :] * a


def _overlap(a: tuple, b: tuple) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _render_one(rng, spec, photos, scans, labels, pool, target: int) -> np.ndarray:
    w, h = _digit_box(rng, spec)
    crop = max(w, h) * rng.uniform(1.15, 1.6)
    size = int(np.ceil(crop))
    # Background: a piece of a 128 px scene made from a random-scale square of a photograph.
    photo = photos[int(rng.integers(len(photos)))]
    ph, pw = photo.shape[:2]
    scene = rng.integers(min(ph, pw) // 3, min(ph, pw) + 1)  # photo pixels per 128 scene pixels
    side = max(2, int(round(scene * size / 128)))
    py, px = int(rng.integers(0, ph - side + 1)), int(rng.integers(0, pw - side + 1))
    bg = Image.fromarray(photo[py : py + side, px : px + side]).resize((size, size), Image.BILINEAR)
    if rng.random() < 0.5:
        bg = bg.transpose(Image.FLIP_LEFT_RIGHT)
    canvas = np.asarray(bg, dtype=np.float32).copy()
    # The target, centred with a shift of up to 7.5% of the crop each way.
    cx = size / 2 + (rng.random() - 0.5) * 0.15 * crop
    cy = size / 2 + (rng.random() - 0.5) * 0.15 * crop
    box = (int(round(cx - w / 2)), int(round(cy - h / 2)))
    box = (*box, box[0] + w, box[1] + h)
    placed = [box]
    for _ in range(int(rng.integers(0, spec.max_neighbours + 1))):
        nw, nh = _digit_box(rng, spec)
        nx, ny = int(rng.integers(-nw + 2, size - 1)), int(rng.integers(-nh + 2, size - 1))
        nbox = (nx, ny, nx + nw, ny + nh)
        if any(_overlap(nbox, other) > 0.05 for other in placed):
            continue
        placed.append(nbox)
        _paste(rng, canvas, scans[int(pool[int(rng.integers(len(pool)))])], nx, ny, nw, nh)
    _paste(rng, canvas, scans[target], box[0], box[1], w, h)
    canvas += rng.normal(0.0, rng.uniform(0.0, 6.0), size=canvas.shape)
    out = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    return np.asarray(out.resize((spec.image_size, spec.image_size), Image.BILINEAR))


def render_digit_crops(spec: DigitCropsSpec) -> dict[str, np.ndarray]:
    """Render every split of ``spec``.

    Returns:
        ``{"x_<split>": uint8 (N, S, S, 3), "y_<split>": int64 (N,), "scans_<split>": int64
        (N,) index of each crop's source scan}`` for train, val and test; classes are
        balanced within one crop per split.
    """
    from sklearn.datasets import load_digits

    spec = spec.validate()
    digits = load_digits()
    scans = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    pools = _split_scans(labels, spec)
    out = {}
    for split, num in (("train", spec.num_train), ("val", spec.num_val), ("test", spec.num_test)):
        rng = np.random.default_rng([spec.seed, _SPLIT_STREAM[split]])
        photos = _photos(CROP_BACKGROUNDS[split])
        pool = pools[split]
        # Balanced classes: class i % 10, a random scan of that class from the split's pool.
        ys = np.arange(num) % 10
        rng.shuffle(ys)
        by_class = {c: pool[labels[pool] == c] for c in range(10)}
        targets = np.array([by_class[int(c)][int(rng.integers(len(by_class[int(c)])))] for c in ys])
        images = [_render_one(rng, spec, photos, scans, labels, pool, int(t)) for t in targets]
        out[f"x_{split}"] = np.stack(images)
        out[f"y_{split}"] = labels[targets]
        out[f"scans_{split}"] = targets.astype(np.int64)
    return out


def build_digit_crops(root: str | os.PathLike, spec: DigitCropsSpec) -> Path:
    """Render ``spec`` into ``<root>/digit_crops_<key>.npz`` unless it exists; return the path.

    The file is written to a temporary name and renamed, so an interrupted build leaves no
    partial file and concurrent builders are safe.
    """
    spec = spec.validate()
    path = Path(root) / f"digit_crops_{spec.key()}.npz"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = render_digit_crops(spec)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, spec=json.dumps(dataclasses.asdict(spec)), **arrays)
    os.replace(tmp, path)
    logger.info("Built digit crops in %s", path)
    return path


def spec_from_config(cfg: CfgNode) -> DigitCropsSpec:
    """The :class:`DigitCropsSpec` of ``cfg.DATASET``."""
    d = cfg.DATASET
    return DigitCropsSpec(
        seed=int(d.SPLIT_SEED),
        image_size=int(d.IMAGE_SIZE),
        num_train=int(d.DIGIT_CROPS.NUM_TRAIN),
        num_val=int(d.DIGIT_CROPS.NUM_VAL),
        num_test=int(d.DIGIT_CROPS.NUM_TEST),
        val_fraction=float(d.VAL_FRACTION),
        test_fraction=float(d.DIGIT_CROPS.TEST_FRACTION),
    )


def load_digit_crops(cfg: CfgNode) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Standardised crops per split: ``{split: (images (N, 3, S, S) float, labels (N,))}``.

    Every channel is standardised with the mean and std of the train split.
    """
    path = build_digit_crops(cfg.DATASET.ROOT, spec_from_config(cfg))
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    x = {s: torch.from_numpy(arrays[f"x_{s}"]).permute(0, 3, 1, 2).float() / 255.0
         for s in ("train", "val", "test")}  # fmt: skip
    mean = x["train"].mean(dim=(0, 2, 3), keepdim=True)
    std = x["train"].std(dim=(0, 2, 3), keepdim=True)
    return {s: ((x[s] - mean) / std, torch.from_numpy(arrays[f"y_{s}"])) for s in x}


@register_dataset("digit_crops")
def build_digit_crops_splits(cfg: CfgNode) -> DatasetSplits:
    """Train/val/test splits of the digit crops for ``cfg.DATASET`` (train: the first
    ``DIGIT_CROPS.TRAIN_SUBSET`` crops if set, random shift of up to ``IMAGE_SIZE // 8`` pixels).

    Raises:
        ValueError: on a ``TRAIN_SUBSET`` outside ``[0, NUM_TRAIN]``.
    """
    size = int(cfg.DATASET.IMAGE_SIZE)
    subset = int(cfg.DATASET.DIGIT_CROPS.TRAIN_SUBSET)
    num_train = int(cfg.DATASET.DIGIT_CROPS.NUM_TRAIN)
    if not 0 <= subset <= num_train:
        raise ValueError(
            f"DATASET.DIGIT_CROPS.TRAIN_SUBSET must be in [0, NUM_TRAIN={num_train}]; got {subset}"
        )
    data = load_digit_crops(cfg)
    x, y = data["train"]
    if subset:
        x, y = x[:subset], y[:subset]
    train = DigitsDataset(x, y, max_shift=max(1, size // 8))
    val = DigitsDataset(*data["val"], max_shift=0)
    test = DigitsDataset(*data["test"], max_shift=0)
    logger.info(
        "digit crops: %d train / %d val / %d test crops of %dx%d",
        len(train), len(val), len(test), size, size,
    )  # fmt: skip
    return DatasetSplits(train, val, num_classes=10, in_channels=3, image_size=size, test=test)
