"""AP of weighted image sets from one COCOeval matching: equal to pycocotools, resamples too."""

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from luminet_det.study.coco_matches import CocoMatches, ap_of_weighted_images, coco_matches


def _scene(seed: int, num_images: int = 14, num_cats: int = 4):
    """Random ground truth and detections: jittered true boxes, duplicates and false positives.

    Category ``num_cats - 1`` has detections but no ground truth (COCO skips it); image 0 has no
    detections; scores are continuous (no ties between images)."""
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "width": 100, "height": 100} for i in range(num_images)]
    anns, results = [], []
    for img in images:
        for _ in range(rng.integers(0, 5)):
            x, y = rng.uniform(0, 70, size=2)
            w, h = rng.uniform(8, 30, size=2)
            cat = int(rng.integers(0, num_cats - 1))
            anns.append(
                {"id": len(anns) + 1, "image_id": img["id"], "category_id": cat,
                 "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0}
            )  # fmt: skip
            if img["id"] == 1:
                continue
            for _ in range(rng.integers(0, 3)):  # detections of this object, some poor
                j = rng.normal(0, rng.uniform(0.5, 6), size=4)
                results.append(
                    {"image_id": img["id"], "category_id": cat if rng.random() < 0.85 else
                     int(rng.integers(0, num_cats)), "bbox": [x + j[0], y + j[1],
                     max(1.0, w + j[2]), max(1.0, h + j[3])], "score": float(rng.random())}
                )  # fmt: skip
        if img["id"] != 1:
            for _ in range(rng.integers(0, 3)):  # background false positives
                x, y = rng.uniform(0, 80, size=2)
                results.append(
                    {"image_id": img["id"], "category_id": int(rng.integers(0, num_cats)),
                     "bbox": [x, y, 12.0, 15.0], "score": float(rng.random())}
                )  # fmt: skip
    cats = [{"id": c, "name": str(c)} for c in range(num_cats)]
    return {"images": images, "annotations": anns, "categories": cats}, results


def _coco(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _pycocotools_ap(dataset: dict, results: list[dict]) -> np.ndarray:
    gt = _coco(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return 100.0 * ev.stats[:3]


def _replicate(dataset: dict, results: list[dict], counts: np.ndarray):
    """The data set with image i repeated counts[i] times (new ids), and its detections."""
    images, anns, res = [], [], []
    by_id = {img["id"]: i for i, img in enumerate(dataset["images"])}
    for img in dataset["images"]:
        for _ in range(int(counts[by_id[img["id"]]])):
            new_id = len(images) + 1
            images.append({**img, "id": new_id})
            for a in dataset["annotations"]:
                if a["image_id"] == img["id"]:
                    anns.append({**a, "id": len(anns) + 1, "image_id": new_id})
            res += [{**r, "image_id": new_id} for r in results if r["image_id"] == img["id"]]
    return {**dataset, "images": images, "annotations": anns}, res


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_all_ones_reproduces_cocoeval(seed):
    dataset, results = _scene(seed)
    matches = coco_matches(_coco(dataset), results)
    ours = ap_of_weighted_images(matches, np.ones(len(dataset["images"])))
    np.testing.assert_allclose(ours, _pycocotools_ap(dataset, results), rtol=0, atol=1e-10)


@pytest.mark.parametrize("seed", [3, 4])
def test_resample_equals_cocoeval_on_repeated_images(seed):
    dataset, results = _scene(seed)
    matches = coco_matches(_coco(dataset), results)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(dataset["images"]), np.full(len(dataset["images"]), 1 / 14))
    expected = _pycocotools_ap(*_replicate(dataset, results, counts))
    # A batch of weight rows gives the same answer row by row.
    batch = ap_of_weighted_images(matches, np.stack([np.ones(14), counts]), chunk=1)
    np.testing.assert_allclose(batch[1], expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(batch[0], ap_of_weighted_images(matches, np.ones(14)))


def test_no_detections_gives_zero_ap_and_roundtrips():
    dataset, _ = _scene(5)
    matches = coco_matches(_coco(dataset), [])
    np.testing.assert_array_equal(ap_of_weighted_images(matches, np.ones(14)), [0.0, 0.0, 0.0])
    again = CocoMatches.from_npz_dict(matches.to_npz_dict())
    np.testing.assert_array_equal(again.num_gt, matches.num_gt)


def test_bad_weights_are_refused():
    dataset, results = _scene(6)
    matches = coco_matches(_coco(dataset), results)
    with pytest.raises(ValueError, match="shape"):
        ap_of_weighted_images(matches, np.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        ap_of_weighted_images(matches, -np.ones(14))
