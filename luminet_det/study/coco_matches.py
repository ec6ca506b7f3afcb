"""COCO box AP of any multiset of test images, from one pass of pycocotools' matching.

A bootstrap over test images needs the AP of thousands of resampled image sets. Running
``COCOeval`` for each is far too slow, but its per-image matching (which detection matches which
ground truth at each IoU threshold) does not depend on the other images. :func:`coco_matches`
runs that matching once and keeps, per detection, its score and its match flags;
:func:`ap_of_weighted_images` then gives AP, AP50 and AP75 for image multiplicities ``w``
(a bootstrap resample), with the same arithmetic as ``COCOeval.accumulate``: per category, the
detections of all images sorted by score (stably, in image order), cumulative true and false
positives, precision made monotone, sampled at the 101 recall thresholds, averaged over IoU
thresholds and over the categories that have ground truth. With all weights 1 it reproduces
``COCOeval``'s AP/AP50/AP75 exactly (tested).
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["CocoMatches", "coco_matches", "ap_of_weighted_images"]

_MAX_DETS = 100  # COCO's AP, AP50 and AP75 use at most 100 detections per image


@dataclass
class CocoMatches:
    """Per-detection matches of one model on one data set (area range "all", 100 detections).

    Attributes:
        image_ids: (I,) COCO image ids, in ``COCOeval`` order (sorted).
        category_ids: (K,) COCO category ids, sorted.
        iou_thresholds: (T,) IoU thresholds (0.50:0.05:0.95).
        recall_thresholds: (R,) recall thresholds (0:0.01:1).
        det_category: (D,) index into ``category_ids`` of each detection.
        det_image: (D,) index into ``image_ids`` of each detection.
        det_score: (D,) detection scores.
        det_tp: (T, D) bool, matched to a ground truth and not ignored.
        det_fp: (T, D) bool, unmatched and not ignored.
        num_gt: (K, I) non-ignored ground-truth boxes per category and image.

    Detections are grouped by category and, within a category, in the order ``COCOeval``
    accumulates them for the full image set (descending score, ties in image order).
    """

    image_ids: np.ndarray
    category_ids: np.ndarray
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    det_category: np.ndarray
    det_image: np.ndarray
    det_score: np.ndarray
    det_tp: np.ndarray
    det_fp: np.ndarray
    num_gt: np.ndarray

    def to_npz_dict(self) -> dict[str, np.ndarray]:
        """The fields as a dict of arrays (for ``np.savez``)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_npz_dict(cls, arrays) -> CocoMatches:
        """Inverse of :meth:`to_npz_dict` (accepts an opened ``np.load`` file)."""
        return cls(**{k: np.asarray(arrays[k]) for k in cls.__dataclass_fields__})


def coco_matches(coco_gt, results: list[dict]) -> CocoMatches:
    """Run pycocotools' per-image box matching once and keep what AP needs.

    Args:
        coco_gt: a ``pycocotools.coco.COCO`` of the ground truth.
        results: detections in COCO result format (``image_id``, ``category_id``, ``bbox`` XYWH,
            ``score``); may be empty.

    Returns:
        The matches (no detections at all gives empty detection arrays).
    """
    from pycocotools.cocoeval import COCOeval, Params

    image_ids = np.array(sorted(coco_gt.getImgIds()), dtype=np.int64)
    category_ids = np.array(sorted(coco_gt.getCatIds()), dtype=np.int64)
    params = Params(iouType="bbox")
    num_i, num_k, num_t = len(image_ids), len(category_ids), len(params.iouThrs)
    num_gt = np.zeros((num_k, num_i), dtype=np.int64)
    if not results:
        for k, cat in enumerate(category_ids):
            for i, img in enumerate(image_ids):
                anns = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=[int(img)], catIds=[int(cat)]))
                num_gt[k, i] = sum(1 for a in anns if not a.get("iscrowd", 0))
        empty = np.zeros(0, dtype=np.int64)
        return CocoMatches(
            image_ids, category_ids, params.iouThrs.copy(), params.recThrs.copy(),
            empty, empty, np.zeros(0), np.zeros((num_t, 0), bool), np.zeros((num_t, 0), bool),
            num_gt,
        )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.imgIds = [int(i) for i in image_ids]
        ev.evaluate()
    params = ev.params
    if list(params.catIds) != category_ids.tolist() or list(params.imgIds) != image_ids.tolist():
        raise RuntimeError("COCOeval reordered categories or images; cannot index its results")
    area_all = 0  # evalImgs is laid out [category][area range][image]; "all" comes first
    cats, imgs, scores, tps, fps = [], [], [], [], []
    for k in range(num_k):
        per_image = []
        for i in range(num_i):
            e = ev.evalImgs[k * len(params.areaRng) * num_i + area_all * num_i + i]
            if e is None:
                continue
            num_gt[k, i] = int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0))
            s = np.asarray(e["dtScores"][:_MAX_DETS], dtype=np.float64)
            if len(s):
                matched = np.asarray(e["dtMatches"])[:, :_MAX_DETS] > 0
                ignored = np.asarray(e["dtIgnore"])[:, :_MAX_DETS].astype(bool)
                per_image.append((i, s, matched & ~ignored, ~matched & ~ignored))
        if not per_image:
            continue
        s = np.concatenate([p[1] for p in per_image])
        order = np.argsort(-s, kind="mergesort")  # COCOeval's stable order
        cats.append(np.full(len(s), k, dtype=np.int64))
        imgs.append(np.concatenate([np.full(len(p[1]), p[0]) for p in per_image])[order])
        scores.append(s[order])
        tps.append(np.concatenate([p[2] for p in per_image], axis=1)[:, order])
        fps.append(np.concatenate([p[3] for p in per_image], axis=1)[:, order])
    return CocoMatches(
        image_ids=image_ids,
        category_ids=category_ids,
        iou_thresholds=params.iouThrs.copy(),
        recall_thresholds=params.recThrs.copy(),
        det_category=np.concatenate(cats) if cats else np.zeros(0, np.int64),
        det_image=np.concatenate(imgs).astype(np.int64) if imgs else np.zeros(0, np.int64),
        det_score=np.concatenate(scores) if scores else np.zeros(0),
        det_tp=np.concatenate(tps, axis=1) if tps else np.zeros((num_t, 0), bool),
        det_fp=np.concatenate(fps, axis=1) if fps else np.zeros((num_t, 0), bool),
        num_gt=num_gt,
    )


def _interpolated_precision(
    tp_cum: np.ndarray, fp_cum: np.ndarray, num_gt: np.ndarray, recall_thresholds: np.ndarray
) -> np.ndarray:
    """COCO's interpolated precision at each recall threshold.

    Args:
        tp_cum, fp_cum: (B, T, D) cumulative true/false positives in score order.
        num_gt: (B,) ground-truth count (> 0).
        recall_thresholds: (R,).

    Returns:
        (B, T, R): at each threshold r, the highest precision reached at a recall >= r (0 if the
        recall never reaches r); equal to ``COCOeval.accumulate``'s monotone envelope sampled
        with ``searchsorted(recall, r, "left")``.
    """
    b, t, d = tp_cum.shape
    r = len(recall_thresholds)
    recall = tp_cum / num_gt[:, None, None]
    precision = tp_cum / (fp_cum + tp_cum + np.spacing(1))
    # Monotone envelope: the best precision at this point or any later one (higher recall).
    envelope = np.maximum.accumulate(precision[..., ::-1], axis=-1)[..., ::-1].reshape(b * t, d)
    envelope = np.concatenate([envelope, np.zeros((b * t, 1))], axis=1)  # "never reached": 0
    # Recall is non-decreasing along a row, so the first point with recall >= threshold i is
    # the number of points that serve fewer than i + 1 thresholds (those with recall < r_i).
    served = np.searchsorted(recall_thresholds, recall.reshape(b * t, d), side="right")
    flat = (np.arange(b * t)[:, None] * (r + 1) + served).ravel()
    counts = np.bincount(flat, minlength=b * t * (r + 1)).reshape(b * t, r + 1)
    first = np.cumsum(counts, axis=1)[:, :r]  # points with recall < r_i, i.e. first index
    return np.take_along_axis(envelope, first, axis=1).reshape(b, t, r)


def ap_of_weighted_images(matches: CocoMatches, weights: np.ndarray, chunk: int = 64) -> np.ndarray:
    """COCO AP, AP50 and AP75 (percent) for image multiplicities ``weights``.

    Args:
        matches: from :func:`coco_matches`.
        weights: (I,) or (B, I) non-negative multiplicity of each image (a bootstrap resample
            draws them from a multinomial; all ones is the data set itself).
        chunk: replicates processed at once (memory: about ``chunk * 10 * D`` floats).

    Returns:
        (3,) or (B, 3): AP, AP50, AP75 per row of ``weights``; NaN where no category has
        ground truth.

    Raises:
        ValueError: on a weight array of the wrong shape or with negative entries.
    """
    w = np.asarray(weights, dtype=np.float64)
    single = w.ndim == 1
    w = np.atleast_2d(w)
    num_i = len(matches.image_ids)
    if w.ndim != 2 or w.shape[1] != num_i:
        raise ValueError(f"weights must have shape (I,) or (B, I) with I={num_i}; got {w.shape}")
    if (w < 0).any():
        raise ValueError("weights must be non-negative")
    thr = matches.iou_thresholds
    i50 = int(np.flatnonzero(np.isclose(thr, 0.5))[0])
    i75 = int(np.flatnonzero(np.isclose(thr, 0.75))[0])
    out = np.empty((w.shape[0], 3))
    for start in range(0, w.shape[0], chunk):
        wb = w[start : start + chunk]
        sums = np.zeros((len(wb), len(thr)))  # per IoU threshold, sum over valid categories
        valid = np.zeros(len(wb))
        for k in range(len(matches.category_ids)):
            gt = wb @ matches.num_gt[k].astype(np.float64)  # (b,)
            has_gt = gt > 0
            if not has_gt.any():
                continue
            sel = matches.det_category == k
            q = np.zeros((len(wb), len(thr), len(matches.recall_thresholds)))
            if sel.any():
                dw = wb[:, matches.det_image[sel]]  # (b, Dk)
                tp = np.cumsum(dw[:, None, :] * matches.det_tp[:, sel][None], axis=2)
                fp = np.cumsum(dw[:, None, :] * matches.det_fp[:, sel][None], axis=2)
                g = np.where(has_gt, gt, 1.0)
                q = _interpolated_precision(tp, fp, g, matches.recall_thresholds)
            sums += np.where(has_gt[:, None], q.mean(axis=2), 0.0)
            valid += has_gt
        with np.errstate(invalid="ignore", divide="ignore"):
            per_thr = sums / valid[:, None]
        out[start : start + len(wb)] = 100.0 * np.stack(
            [per_thr.mean(axis=1), per_thr[:, i50], per_thr[:, i75]], axis=1
        )
    return out[0] if single else out
