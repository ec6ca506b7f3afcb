"""Digit scenes: a small real-image detection set built locally, in COCO json format.

Objects are the 1,797 real handwritten digit scans (8x8, 17 grey levels) that ship with
scikit-learn, up-sampled to several scales and composited onto crops of the sample photographs
that ship with scikit-image. Ten classes ("0" ... "9").

Train and val never share a source image: the digit scans are split per class with the seed, and
the background photographs are split into two fixed, disjoint lists. A spec with ``num_test > 0``
adds a third split, ``test``, with its own scans (``test_fraction`` of each class) and its own
photographs; with ``num_test == 0`` (the default) the build, its files and its hash are exactly
those of a two-split build. The build is deterministic
given its :class:`DigitScenesSpec` and takes a few seconds; the result is cached in a directory
whose name is a hash of the spec and :data:`BUILDER_VERSION`, so a changed spec or builder
produces a new directory instead of silently reusing stale files.

Layout of one build::

    <root>/digit_scenes_<hash>/
        spec.json                          # the spec that produced it
        train/000000.png ...               # scene images
        val/000000.png ...
        test/000000.png ...                # only when num_test > 0
        annotations/instances_train.json   # COCO format (bbox is XYWH, absolute pixels)
        annotations/instances_val.json
        annotations/instances_test.json    # only when num_test > 0
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

__all__ = [
    "BUILDER_VERSION",
    "CLASS_NAMES",
    "SPLITS",
    "TEST_BACKGROUNDS",
    "TRAIN_BACKGROUNDS",
    "VAL_BACKGROUNDS",
    "DigitScenesSpec",
    "build_digit_scenes",
    "digit_scenes_dir",
    "split_digit_indices",
    "load_backgrounds",
    "load_digit_scans",
]

# Bump whenever the generated images or annotations would change for the same spec.
BUILDER_VERSION = 1

CLASS_NAMES: tuple[str, ...] = tuple(str(d) for d in range(10))
# The splits of every build; a spec with num_test > 0 adds "test" (DigitScenesSpec.splits()).
SPLITS: tuple[str, ...] = ("train", "val")
# Index of each split's random stream (train and val as in two-split builds).
_SPLIT_STREAM = {"train": 1, "val": 2, "test": 3}

# scikit-image sample photographs bundled in its wheel (no download). Disjoint per split.
TRAIN_BACKGROUNDS: tuple[str, ...] = (
    "astronaut",
    "camera",
    "coffee",
    "grass",
    "gravel",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
)
VAL_BACKGROUNDS: tuple[str, ...] = ("chelsea", "coins", "moon", "brick")
TEST_BACKGROUNDS: tuple[str, ...] = ("retina", "cell", "clock", "page")


@dataclass(frozen=True)
class DigitScenesSpec:
    """Everything that determines a build.

    Args:
        seed: seed of the digit split and of the scene layout.
        image_size: side of the square scene images, in pixels.
        num_train: number of train scenes.
        num_val: number of val scenes.
        min_objects: fewest digits per scene.
        max_objects: most digits per scene (fewer if they do not fit without overlap).
        min_object_size: smallest digit side after up-sampling, in pixels.
        max_object_size: largest digit side after up-sampling, in pixels.
        val_fraction: fraction of each class's digit scans reserved for val.
        max_overlap: largest allowed IoU between two digits of a scene.
        num_test: number of test scenes; 0 (default) builds train and val only.
        test_fraction: fraction of each class's digit scans reserved for test (taken after the
            val scans of the same per-class permutation); must be > 0 exactly when num_test is.
    """

    seed: int = 0
    image_size: int = 128
    num_train: int = 600
    num_val: int = 150
    min_objects: int = 2
    max_objects: int = 6
    min_object_size: int = 14
    max_object_size: int = 44
    val_fraction: float = 0.2
    max_overlap: float = 0.05
    num_test: int = 0
    test_fraction: float = 0.0

    def validate(self) -> DigitScenesSpec:
        """Raise ``ValueError`` naming the first inconsistent field; return ``self``."""
        if self.image_size < 32:
            raise ValueError(f"image_size must be >= 32; got {self.image_size}")
        if self.num_train < 1 or self.num_val < 1:
            raise ValueError(
                f"num_train and num_val must be >= 1; got {self.num_train}, {self.num_val}"
            )
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(
                f"need 1 <= min_objects <= max_objects; got {self.min_objects}, {self.max_objects}"
            )
        if not 8 <= self.min_object_size <= self.max_object_size <= self.image_size // 2:
            raise ValueError(
                "need 8 <= min_object_size <= max_object_size <= image_size // 2; got "
                f"{self.min_object_size}, {self.max_object_size}, image_size {self.image_size}"
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1); got {self.val_fraction}")
        if not 0.0 <= self.max_overlap < 1.0:
            raise ValueError(f"max_overlap must be in [0, 1); got {self.max_overlap}")
        if self.num_test < 0:
            raise ValueError(f"num_test must be >= 0; got {self.num_test}")
        if (self.num_test > 0) != (self.test_fraction > 0.0):
            raise ValueError(
                "num_test and test_fraction must both be 0 or both be > 0; got "
                f"{self.num_test}, {self.test_fraction}"
            )
        if not 0.0 <= self.test_fraction < 1.0 - self.val_fraction:
            raise ValueError(
                f"test_fraction must be in [0, 1 - val_fraction); got {self.test_fraction} "
                f"with val_fraction {self.val_fraction}"
            )
        return self

    def splits(self) -> tuple[str, ...]:
        """The splits of this build: ``("train", "val")``, plus ``"test"`` if ``num_test > 0``."""
        return (*SPLITS, "test") if self.num_test > 0 else SPLITS

    def record(self) -> dict:
        """The spec as stored in ``spec.json`` and hashed by :meth:`key`: every field, except
        that a two-split spec omits the test fields (so it keeps the hash of builds made before
        they existed)."""
        fields = dataclasses.asdict(self)
        if self.num_test == 0:
            del fields["num_test"], fields["test_fraction"]
        return fields

    def key(self) -> str:
        """Short hash of the spec and the builder version (the cache key)."""
        payload = json.dumps(
            {"spec": self.record(), "builder_version": BUILDER_VERSION}, sort_keys=True
        )
        return hashlib.sha1(payload.encode()).hexdigest()[:10]


def digit_scenes_dir(root: str | os.PathLike, spec: DigitScenesSpec) -> Path:
    """Directory a build of ``spec`` lives in under ``root``."""
    return Path(root) / f"digit_scenes_{spec.key()}"


def load_digit_scans() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digit scans as ``(images, labels)``: (N, 8, 8) ink in [0, 1], (N,)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)  # (1797, 8, 8) ink in [0, 1]
    return images, digits.target.astype(np.int64)


def split_digit_indices(
    labels: np.ndarray, seed: int, val_fraction: float, test_fraction: float = 0.0
) -> dict[str, np.ndarray]:
    """Split digit-scan indices per class into disjoint, sorted index arrays.

    Each class's scans are permuted with the seed; the first ``val_fraction`` go to val, the next
    ``test_fraction`` to test, the rest to train. With ``test_fraction`` 0 the result is the
    two-split result (same permutation, no test entry).

    Args:
        labels: (N,) class of each scan.
        seed: split seed.
        val_fraction: fraction of each class that goes to val (at least one scan per class).
        test_fraction: fraction of each class that goes to test (at least one scan per class
            when > 0; 0 for no test split).

    Returns:
        ``{"train": idx, "val": idx}``, plus ``"test": idx`` when ``test_fraction > 0``.
    """
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_val = max(1, int(round(val_fraction * len(idx))))
        n_test = max(1, int(round(test_fraction * len(idx)))) if test_fraction > 0 else 0
        val.append(idx[:n_val])
        test.append(idx[n_val : n_val + n_test])
        train.append(idx[n_val + n_test :])
    out = {"train": np.sort(np.concatenate(train)), "val": np.sort(np.concatenate(val))}
    if test_fraction > 0:
        out["test"] = np.sort(np.concatenate(test))
    return out


def load_backgrounds(names: tuple[str, ...]) -> list[np.ndarray]:
    """Load scikit-image sample photographs as uint8 RGB arrays.

    Raises:
        KeyError: if a name is not a bundled scikit-image sample.
    """
    import skimage.data

    out = []
    for name in names:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            raise KeyError(f"scikit-image has no sample image named {name!r}")
        img = np.asarray(loader())
        if img.dtype == bool:
            img = img.astype(np.uint8) * 255
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        out.append(np.ascontiguousarray(img[:, :, :3]).astype(np.uint8))
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _background_crop(rng: np.random.Generator, photo: np.ndarray, size: int) -> np.ndarray:
    """Random crop at a random scale of ``photo``, resized to ``size`` x ``size``."""
    h, w = photo.shape[:2]
    side = int(rng.integers(min(h, w) // 3, min(h, w) + 1))
    y0 = int(rng.integers(0, h - side + 1))
    x0 = int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(photo[y0 : y0 + side, x0 : x0 + side])
    crop = crop.resize((size, size), Image.BILINEAR)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(crop, dtype=np.float32)


def _render_scene(
    rng: np.random.Generator,
    spec: DigitScenesSpec,
    photos: list[np.ndarray],
    digit_images: np.ndarray,
    digit_labels: np.ndarray,
    pool: np.ndarray,
) -> tuple[np.ndarray, list[dict]]:
    """One scene: a background crop with up-sampled digits pasted at non-overlapping places."""
    size = spec.image_size
    canvas = _background_crop(rng, photos[int(rng.integers(len(photos)))], size)
    n_target = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    placed: list[np.ndarray] = []
    objects: list[dict] = []
    attempts = 0
    while len(objects) < n_target and attempts < 50 * n_target:
        attempts += 1
        side = int(
            round(np.exp(rng.uniform(np.log(spec.min_object_size), np.log(spec.max_object_size))))
        )
        aspect = rng.uniform(0.8, 1.25)
        w, h = max(8, int(round(side * aspect))), side
        if w > size or h > size:
            continue
        x0 = int(rng.integers(0, size - w + 1))
        y0 = int(rng.integers(0, size - h + 1))
        idx = int(pool[int(rng.integers(len(pool)))])
        ink = Image.fromarray((digit_images[idx] * 255).astype(np.uint8)).resize(
            (w, h), Image.BICUBIC
        )
        alpha = np.clip(np.asarray(ink, dtype=np.float32) / 255.0, 0.0, 1.0)
        ys, xs = np.nonzero(alpha > 0.25)
        if len(xs) == 0:
            continue
        box = np.array(
            [x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1], dtype=np.float64
        )
        if any(_iou(box, other) > spec.max_overlap for other in placed):
            continue
        region = canvas[y0 : y0 + h, x0 : x0 + w]
        # Ink contrasts with the local background: dark ink on bright, bright ink on dark.
        if region.mean() > 110:
            color = rng.uniform(0, 70, size=3)
        else:
            color = rng.uniform(185, 255, size=3)
        a = alpha[:, :, None] * rng.uniform(0.85, 1.0)
        canvas[y0 : y0 + h, x0 : x0 + w] = region * (1 - a) + color[None, None, :] * a
        placed.append(box)
        objects.append({"box": box, "category_id": int(digit_labels[idx]), "source_index": idx})
    noise = rng.normal(0.0, rng.uniform(0.0, 6.0), size=canvas.shape)
    image = np.clip(canvas + noise, 0, 255).astype(np.uint8)
    return image, objects


def _build_split(
    out_dir: Path,
    split: str,
    spec: DigitScenesSpec,
    digit_images: np.ndarray,
    digit_labels: np.ndarray,
    pool: np.ndarray,
) -> dict:
    backgrounds = {"train": TRAIN_BACKGROUNDS, "val": VAL_BACKGROUNDS, "test": TEST_BACKGROUNDS}
    photos = load_backgrounds(backgrounds[split])
    # Independent, reproducible streams per split.
    rng = np.random.default_rng([spec.seed, _SPLIT_STREAM[split]])
    num = {"train": spec.num_train, "val": spec.num_val, "test": spec.num_test}[split]
    (out_dir / split).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, num + 1):
        image, objects = _render_scene(rng, spec, photos, digit_images, digit_labels, pool)
        file_name = f"{image_id - 1:06d}.png"
        Image.fromarray(image).save(out_dir / split / file_name)
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "height": spec.image_size,
                "width": spec.image_size,
            }
        )
        for obj in objects:
            x0, y0, x1, y1 = (float(v) for v in obj["box"])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": obj["category_id"],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                    "source_index": obj["source_index"],
                }
            )
    return {
        "info": {
            "description": f"digit scenes ({split}): scikit-learn digits on scikit-image photos",
            "version": str(BUILDER_VERSION),
        },
        "licenses": [],
        "categories": [
            {"id": i, "name": n, "supercategory": "digit"} for i, n in enumerate(CLASS_NAMES)
        ],
        "images": images,
        "annotations": annotations,
    }


def build_digit_scenes(root: str | os.PathLike, spec: DigitScenesSpec | None = None) -> Path:
    """Build the digit scenes under ``root`` (or reuse a complete earlier build of the same spec).

    Concurrent callers are safe: each builds in a private temporary directory and the first to
    finish renames it into place.

    Args:
        root: parent directory of the build (created if missing).
        spec: the build parameters; defaults to ``DigitScenesSpec()``.

    Returns:
        The build directory (see the module docstring for its layout).
    """
    spec = (spec or DigitScenesSpec()).validate()
    final = digit_scenes_dir(root, spec)
    if (final / "spec.json").is_file():
        return final
    Path(root).mkdir(parents=True, exist_ok=True)
    digit_images, digit_labels = load_digit_scans()
    pools = split_digit_indices(digit_labels, spec.seed, spec.val_fraction, spec.test_fraction)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        (tmp / "annotations").mkdir()
        for split in spec.splits():
            coco = _build_split(tmp, split, spec, digit_images, digit_labels, pools[split])
            with open(tmp / "annotations" / f"instances_{split}.json", "w") as f:
                json.dump(coco, f)
        # spec.json is written last: its presence marks a complete build.
        with open(tmp / "spec.json", "w") as f:
            json.dump({**spec.record(), "builder_version": BUILDER_VERSION}, f, indent=1)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "spec.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("Built digit scenes in %s", final)
    return final
