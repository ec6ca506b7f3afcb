"""Digit crops (classification): splits, determinism, cache, config keys, subset, errors."""

import dataclasses

import numpy as np
import pytest

from luminet.config import load_config
from luminet.data import build_datasets
from luminet.data.digit_crops import (
    CROP_BACKGROUNDS,
    DigitCropsSpec,
    build_digit_crops,
    render_digit_crops,
)

TINY = DigitCropsSpec(num_train=40, num_val=20, num_test=30)


@pytest.fixture(scope="module")
def tiny():
    return render_digit_crops(TINY)


def test_shapes_classes_and_disjoint_sources(tiny):
    for split, n in (("train", 40), ("val", 20), ("test", 30)):
        x, y = tiny[f"x_{split}"], tiny[f"y_{split}"]
        assert x.shape == (n, 16, 16, 3) and x.dtype == np.uint8
        assert np.bincount(y, minlength=10).max() - np.bincount(y, minlength=10).min() <= 1
        assert x.std() > 10  # photographs and ink, not blank images
    scans = {s: set(tiny[f"scans_{s}"].tolist()) for s in ("train", "val", "test")}
    assert not scans["train"] & scans["val"]
    assert not scans["train"] & scans["test"]
    assert not scans["val"] & scans["test"]
    photos = [set(v) for v in CROP_BACKGROUNDS.values()]
    assert not (photos[0] & photos[1] or photos[0] & photos[2] or photos[1] & photos[2])


def test_the_source_scan_is_the_label(tiny):
    from sklearn.datasets import load_digits

    labels = load_digits().target
    for split in ("train", "val", "test"):
        assert np.array_equal(labels[tiny[f"scans_{split}"]], tiny[f"y_{split}"])


def test_same_photographs_per_split_as_the_digit_scenes():
    from luminet_det.demo.digit_scenes import TEST_BACKGROUNDS, TRAIN_BACKGROUNDS, VAL_BACKGROUNDS

    assert CROP_BACKGROUNDS == {
        "train": TRAIN_BACKGROUNDS,
        "val": VAL_BACKGROUNDS,
        "test": TEST_BACKGROUNDS,
    }


def test_render_is_deterministic_and_cached(tmp_path, tiny):
    path = build_digit_crops(tmp_path, TINY)
    with np.load(path) as f:
        for k, v in tiny.items():
            np.testing.assert_array_equal(f[k], v)
    stamp = path.stat().st_mtime_ns
    assert build_digit_crops(tmp_path, TINY) == path
    assert path.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    other = dataclasses.replace(TINY, seed=1)
    assert other.key() != TINY.key()


def _cfg(tmp_path, *opts):
    return load_config(
        "configs/digit_crops/none.yaml",
        [
            "DATASET.ROOT", str(tmp_path), "DATASET.DIGIT_CROPS.NUM_TRAIN", "40",
            "DATASET.DIGIT_CROPS.NUM_VAL", "20", "DATASET.DIGIT_CROPS.NUM_TEST", "30",
            "DATASET.DIGIT_CROPS.TRAIN_SUBSET", "0", *opts,
        ],
    )  # fmt: skip


def test_dataset_from_config_with_train_subset(tmp_path):
    splits = build_datasets(_cfg(tmp_path))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (40, 20, 30)
    assert (splits.num_classes, splits.in_channels, splits.image_size) == (10, 3, 16)
    x, _ = splits.val[0]
    assert x.shape == (3, 16, 16)
    full_val = splits.val.images
    sub = build_datasets(_cfg(tmp_path, "DATASET.DIGIT_CROPS.TRAIN_SUBSET", "10"))
    assert len(sub.train) == 10
    assert np.array_equal(sub.train.images.numpy(), splits.train.images[:10].numpy())
    # Normalisation uses every train crop, so a subset does not change the val inputs.
    assert np.array_equal(sub.val.images.numpy(), full_val.numpy())


@pytest.mark.parametrize(
    "opts, match",
    [
        (["DATASET.DIGIT_CROPS.NUM_TEST", "0"], "DATASET.DIGIT_CROPS.NUM_TEST"),
        (["DATASET.DIGIT_CROPS.TEST_FRACTION", "0.9"], "TEST_FRACTION"),
        (["DATASET.IMAGE_SIZE", "4"], "DATASET.IMAGE_SIZE"),
        (["DATASET.DIGIT_CROPS.TRAIN_SUBSET", "41"], "DATASET.DIGIT_CROPS.TRAIN_SUBSET"),
    ],
)
def test_bad_values_name_the_config_key(tmp_path, opts, match):
    with pytest.raises(ValueError, match=match):
        build_datasets(_cfg(tmp_path, *opts))
    assert not list(tmp_path.glob("*.npz"))
