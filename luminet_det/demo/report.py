"""The demo's report: the results table and the perception figure of one validation ROI."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from .stages import STUDENT_NAME, TEACHER_NAME
from .visualize import plot_perception, sample_std

logger = logging.getLogger(__name__)

__all__ = ["mean_std", "markdown_table", "perception_figure"]


def mean_std(runs: list[dict], key: str) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1) of ``run[key]`` over ``runs``."""
    vals = [r[key] for r in runs]
    return float(np.mean(vals)), sample_std(vals)


def markdown_table(results: dict) -> str:
    """The results table (teacher row, then one row per student loss; mean ± std over seeds)."""
    t = results["teacher"]
    n_seeds = results["settings"]["seeds"]
    lines = [
        "| model | distillation | AP | AP50 | AP75 | iterations | train s |",
        "|---|---|---|---|---|---|---|",
        f"| teacher {TEACHER_NAME} | - | {t['AP']:.2f} | {t['AP50']:.2f} | {t['AP75']:.2f} "
        f"| {t['iterations']} | {t['seconds']:.0f}{' (cached)' if t.get('cached') else ''} |",
    ]
    for loss, entry in results["students"].items():
        runs = entry["runs"]
        cells = []
        for m in ("AP", "AP50", "AP75"):
            mean, std = mean_std(runs, m)
            cells.append(f"{mean:.2f} ± {std:.2f}" if n_seeds > 1 else f"{mean:.2f}")
        secs = np.mean([r["seconds"] for r in runs])
        lines.append(
            f"| student {STUDENT_NAME} | {loss} | {' | '.join(cells)} | {runs[0]['iterations']} "
            f"| {secs:.0f} |"
        )
    if n_seeds > 1:
        lines.append(f"\nStudents: mean ± sample std (n - 1) over seeds 0..{n_seeds - 1}.")
    return "\n".join(lines)


def perception_figure(
    teacher_cfg_file: str, teacher_weights: str, val_name: str, out: Path
) -> dict:
    """perception.png: the teacher's logits for one real validation ROI, softened two ways."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
    from detectron2.modeling import build_model
    from detectron2.structures import Boxes, BoxMode, pairwise_iou
    from PIL import Image

    from luminet_det import add_distill_config

    cfg = get_cfg()
    add_distill_config(cfg)
    cfg.merge_from_file(teacher_cfg_file)
    model = build_model(cfg)
    DetectionCheckpointer(model).load(teacher_weights)
    model.eval()
    dicts = DatasetCatalog.get(val_name)[:4]
    mapper = DatasetMapper(cfg, is_train=False)
    inputs = [mapper(d) for d in dicts]
    with torch.no_grad():
        images = model.preprocess_image(inputs)
        features = model.backbone(images.tensor)
        proposals, _ = model.proposal_generator(images, features, None)
        proposals = [p[:64] for p in proposals]
        heads = model.roi_heads
        boxes = [p.proposal_boxes for p in proposals]
        x = heads.box_pooler([features[f] for f in heads.box_in_features], boxes)
        logits = heads.box_predictor(heads.box_head(x))[0]
    # The ROI: among proposals that overlap a ground-truth digit (IoU >= 0.5) and that the
    # teacher classifies correctly, the one it is most confident about (a clear example, as in
    # the paper's Fig. 2); if there is none, the proposal that best overlaps any digit.
    best = None  # (score, image index, ROI index in the batch, ROI index in the image, IoU, ann)
    offset = 0
    probs = logits.softmax(dim=1)
    for i, d in enumerate(dicts):
        anns = d["annotations"]
        n = len(boxes[i])
        if anns and n:
            gt = Boxes(
                torch.tensor(
                    [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns],
                    dtype=torch.float32,
                )
            )
            iou_all = pairwise_iou(boxes[i], gt)
            iou_max, which = iou_all.max(dim=1)
            for r in range(n):
                ann = anns[int(which[r])]
                p_gt = float(probs[offset + r, ann["category_id"]])
                correct = int(probs[offset + r].argmax()) == ann["category_id"]
                ok = bool(iou_max[r] >= 0.5 and correct)
                score = (1.0 if ok else 0.0, p_gt if ok else float(iou_max[r]))
                if best is None or score > best[0]:
                    best = (score, i, offset + r, r, float(iou_max[r]), ann)
        offset += n
    if best is None:
        raise RuntimeError("no validation proposal overlaps a ground-truth digit")
    _, img_i, idx, local, iou_val, ann = best
    bx = boxes[img_i].tensor[local].round().int().tolist()
    img = np.asarray(Image.open(dicts[img_i]["file_name"]).convert("RGB"))
    crop = img[max(0, bx[1]) : bx[3], max(0, bx[0]) : bx[2]]
    names = [*MetadataCatalog.get(val_name).thing_classes, "bg"]
    rows = plot_perception(
        logits,
        idx,
        names,
        out,
        temperature=4.0,
        crop=crop,
        caption=f"teacher {TEACHER_NAME}, val image {Path(dicts[img_i]['file_name']).name}, "
        f"ROI IoU {iou_val:.2f} with a ground-truth '{names[ann['category_id']]}' "
        "(bg = background)",
    )
    return {
        "roi_index": idx,
        "iou_with_gt": iou_val,
        "gt_class": names[ann["category_id"]],
        "num_rois": int(logits.shape[0]),
        **{k: [round(float(v), 4) for v in row] for k, row in rows.items()},
    }
