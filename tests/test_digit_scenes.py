"""Digit scenes: a tiny build checked with pycocotools, determinism, caching, registration."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from luminet_det.demo import DigitScenesSpec, build_digit_scenes, register_digit_scenes
from luminet_det.demo.digit_scenes import (
    CLASS_NAMES,
    TEST_BACKGROUNDS,
    TRAIN_BACKGROUNDS,
    VAL_BACKGROUNDS,
    digit_scenes_dir,
    load_digit_scans,
    split_digit_indices,
)

TINY = DigitScenesSpec(seed=3, image_size=64, num_train=24, num_val=16, max_object_size=28)


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    return root, build_digit_scenes(root, TINY)


@pytest.mark.parametrize("split", ["train", "val"])
def test_coco_files_are_valid(tiny_build, split):
    _, build = tiny_build
    coco = COCO(str(build / "annotations" / f"instances_{split}.json"))
    n_images = TINY.num_train if split == "train" else TINY.num_val
    assert len(coco.getImgIds()) == n_images
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASS_NAMES)
    used = set()
    for img in coco.loadImgs(coco.getImgIds()):
        with Image.open(build / split / img["file_name"]) as im:
            assert im.size == (img["width"], img["height"]) == (TINY.image_size,) * 2
            assert im.mode == "RGB"
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
        assert 1 <= len(anns) <= TINY.max_objects
        for a in anns:
            x, y, w, h = a["bbox"]
            assert w > 0 and h > 0
            assert x >= 0 and y >= 0
            assert x + w <= img["width"] and y + h <= img["height"]
            assert a["area"] == pytest.approx(w * h)
            assert a["iscrowd"] == 0
            used.add(a["category_id"])
    assert used == set(range(len(CLASS_NAMES))), f"unused classes in {split}"


def test_splits_share_no_source_image(tiny_build):
    _, build = tiny_build
    sources = {}
    for split in ("train", "val"):
        coco = json.loads((build / "annotations" / f"instances_{split}.json").read_text())
        sources[split] = {a["source_index"] for a in coco["annotations"]}
    assert sources["train"] and sources["val"]
    assert not sources["train"] & sources["val"]
    assert not set(TRAIN_BACKGROUNDS) & set(VAL_BACKGROUNDS)


def test_digit_split_is_disjoint_stratified_and_seeded():
    _, labels = load_digit_scans()
    a = split_digit_indices(labels, seed=0, val_fraction=0.2)
    b = split_digit_indices(labels, seed=0, val_fraction=0.2)
    c = split_digit_indices(labels, seed=1, val_fraction=0.2)
    assert not set(a["train"]) & set(a["val"])
    assert len(a["train"]) + len(a["val"]) == len(labels) == 1797
    assert set(np.unique(labels[a["val"]])) == set(range(10))
    assert np.array_equal(a["val"], b["val"])
    assert not np.array_equal(a["val"], c["val"])


def test_build_is_deterministic_and_cached(tiny_build, tmp_path):
    root, build = tiny_build
    again = build_digit_scenes(tmp_path, TINY)
    for rel in ("annotations/instances_train.json", "annotations/instances_val.json"):
        assert (build / rel).read_bytes() == (again / rel).read_bytes()
    assert (build / "val" / "000003.png").read_bytes() == (
        again / "val" / "000003.png"
    ).read_bytes()
    # A second call with the same spec reuses the files; another spec gets another directory.
    stamp = (build / "spec.json").stat().st_mtime_ns
    assert build_digit_scenes(root, TINY) == build
    assert (build / "spec.json").stat().st_mtime_ns == stamp
    other = DigitScenesSpec(seed=4, image_size=64, num_train=24, num_val=16, max_object_size=28)
    assert digit_scenes_dir(root, other) != build


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 16}, "image_size"),
        ({"num_val": 0}, "num_val"),
        ({"min_objects": 4, "max_objects": 2}, "min_objects"),
        ({"max_object_size": 100}, "max_object_size"),
        ({"val_fraction": 1.0}, "val_fraction"),
    ],
)
def test_bad_spec_is_refused(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        build_digit_scenes(tmp_path, DigitScenesSpec(**kwargs))
    assert not any(tmp_path.iterdir())


def test_registration_is_lazy_and_complete(tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    names = register_digit_scenes("test_digits_lazy", TINY, root=tmp_path)
    assert names == {"train": "test_digits_lazy_train", "val": "test_digits_lazy_val"}
    assert not any(tmp_path.iterdir()), "registration must not build anything"
    dicts = DatasetCatalog.get(names["val"])
    assert len(dicts) == TINY.num_val
    meta = MetadataCatalog.get(names["val"])
    assert meta.thing_classes == list(CLASS_NAMES)
    with open(meta.json_file) as f:
        assert len(json.load(f)["images"]) == TINY.num_val
    assert {a["category_id"] for d in dicts for a in d["annotations"]} <= set(range(10))
    with pytest.raises(ValueError, match="test_digits_lazy_train"):
        register_digit_scenes("test_digits_lazy", TINY, root=tmp_path)


def test_importing_the_library_registers_no_demo_dataset():
    """``import luminet_det`` registers its model components only; the demo registers its data on
    use (checked in a fresh interpreter: this process's catalog is shared by all tests)."""
    code = (
        "from detectron2.data import DatasetCatalog; import luminet_det; "
        "import luminet_det.demo; "  # the demo package registers nothing at import either
        "names = [n for n in DatasetCatalog.list() if n.startswith('digit_scenes')]; "
        "assert not names, names; "
        "from luminet_det.demo import ensure_digit_scenes; "
        "names = ensure_digit_scenes(); "
        "assert names == {'train': 'digit_scenes_train', 'val': 'digit_scenes_val'}, names; "
        "assert ensure_digit_scenes()['val'] == 'digit_scenes_val'; "
        "from detectron2.data import MetadataCatalog; "
        "assert MetadataCatalog.get('digit_scenes_val').evaluator_type == 'coco'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_default_build_keeps_its_hash_and_spec_record():
    # The two-split default must keep the hash (cache directory) and spec.json it had before the
    # optional test split existed, so existing builds and the demo's numbers stay valid.
    spec = DigitScenesSpec()
    assert spec.splits() == ("train", "val")
    assert spec.key() == "f5ed2ba8a9"
    assert "num_test" not in spec.record() and "test_fraction" not in spec.record()
    a = split_digit_indices(load_digit_scans()[1], seed=0, val_fraction=0.2)
    b = split_digit_indices(load_digit_scans()[1], seed=0, val_fraction=0.2, test_fraction=0.0)
    assert set(a) == set(b) == {"train", "val"}
    assert all(np.array_equal(a[k], b[k]) for k in a)


THREE = DigitScenesSpec(
    seed=3, image_size=64, num_train=20, num_val=10, num_test=12, test_fraction=0.2,
    max_object_size=28,
)  # fmt: skip


def test_three_split_build_is_disjoint(tmp_path):
    build = build_digit_scenes(tmp_path, THREE)
    assert THREE.splits() == ("train", "val", "test")
    assert THREE.key() != DigitScenesSpec(**{**THREE.record(), "num_test": 0,
                                             "test_fraction": 0.0}).key()  # fmt: skip
    sources = {}
    for split, n in (("train", 20), ("val", 10), ("test", 12)):
        coco = json.loads((build / "annotations" / f"instances_{split}.json").read_text())
        assert len(coco["images"]) == n == len(list((build / split).iterdir()))
        sources[split] = {a["source_index"] for a in coco["annotations"]}
    assert all(sources.values())
    assert not sources["train"] & sources["test"] and not sources["val"] & sources["test"]
    assert not set(TEST_BACKGROUNDS) & (set(TRAIN_BACKGROUNDS) | set(VAL_BACKGROUNDS))
    assert json.loads((build / "spec.json").read_text())["num_test"] == 12
    # Adding a test split leaves the per-class val scans as they were.
    labels = load_digit_scans()[1]
    two = split_digit_indices(labels, seed=3, val_fraction=0.2)
    three = split_digit_indices(labels, seed=3, val_fraction=0.2, test_fraction=0.2)
    assert np.array_equal(two["val"], three["val"])
    assert set(three["train"]) | set(three["test"]) == set(two["train"])
    assert set(np.unique(labels[three["test"]])) == set(range(10))


def test_three_split_registration(tmp_path):
    names = register_digit_scenes("test_digits_three", THREE, root=tmp_path)
    assert set(names) == {"train", "val", "test"}
    from detectron2.data import DatasetCatalog

    assert len(DatasetCatalog.get(names["test"])) == THREE.num_test


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_test": 5}, "num_test and test_fraction"),
        ({"test_fraction": 0.2}, "num_test and test_fraction"),
        ({"num_test": -1}, "num_test"),
        ({"num_test": 5, "test_fraction": 0.8}, "test_fraction"),
    ],
)
def test_bad_test_split_is_refused(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        build_digit_scenes(tmp_path, DigitScenesSpec(**kwargs))
