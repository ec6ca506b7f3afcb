"""Tiny models, configs and data for tests, smoke runs and benchmarks (CPU, seconds).

Nothing here downloads anything: teachers are random-init models saved with detectron2's
checkpointer, datasets are random-noise images with filled rectangles in COCO format.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances, PolygonMasks

from .config import add_distill_config

logger = logging.getLogger(__name__)

__all__ = [
    "TINY_RCNN_OPTS",
    "TINY_CASCADE_OPTS",
    "TINY_MASK_OPTS",
    "tiny_rcnn_cfg",
    "write_teacher",
    "tiny_distill_cfg",
    "random_batch",
    "write_tiny_coco",
]

#: A small R18-FPN Faster R-CNN with BatchNorm (trainable from random init), for CPU tests.
TINY_RCNN_OPTS = {
    "MODEL.META_ARCHITECTURE": "GeneralizedRCNN",
    "MODEL.DEVICE": "cpu",
    "MODEL.WEIGHTS": "",
    "MODEL.BACKBONE.NAME": "build_resnet_fpn_backbone",
    "MODEL.BACKBONE.FREEZE_AT": 0,
    "MODEL.RESNETS.DEPTH": 18,
    "MODEL.RESNETS.RES2_OUT_CHANNELS": 64,
    "MODEL.RESNETS.NORM": "BN",
    "MODEL.RESNETS.OUT_FEATURES": ["res2", "res3", "res4", "res5"],
    "MODEL.FPN.IN_FEATURES": ["res2", "res3", "res4", "res5"],
    "MODEL.FPN.OUT_CHANNELS": 64,
    "MODEL.ANCHOR_GENERATOR.SIZES": [[16], [32], [64], [128], [256]],
    "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": [[0.5, 1.0, 2.0]],
    "MODEL.PROPOSAL_GENERATOR.NAME": "RPN",
    "MODEL.RPN.IN_FEATURES": ["p2", "p3", "p4", "p5", "p6"],
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN": 300,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN": 100,
    "MODEL.RPN.PRE_NMS_TOPK_TEST": 300,
    "MODEL.RPN.POST_NMS_TOPK_TEST": 100,
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE": 64,
    "MODEL.ROI_HEADS.NAME": "StandardROIHeads",
    "MODEL.ROI_HEADS.IN_FEATURES": ["p2", "p3", "p4", "p5"],
    "MODEL.ROI_HEADS.NUM_CLASSES": 3,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": 32,
    "MODEL.ROI_BOX_HEAD.NAME": "FastRCNNConvFCHead",
    "MODEL.ROI_BOX_HEAD.NUM_FC": 2,
    "MODEL.ROI_BOX_HEAD.FC_DIM": 64,
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": 7,
    "INPUT.MIN_SIZE_TRAIN": (128,),
    "INPUT.MAX_SIZE_TRAIN": 160,
    "INPUT.MIN_SIZE_TEST": 128,
    "INPUT.MAX_SIZE_TEST": 160,
    "DATALOADER.NUM_WORKERS": 0,
}


#: Overrides that make the tiny model a Cascade R-CNN (3 stages, class-agnostic boxes).
TINY_CASCADE_OPTS = {
    "MODEL.ROI_HEADS.NAME": "CascadeROIHeads",
    "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG": True,
}

#: Overrides that make the tiny model a Mask R-CNN (small mask head).
TINY_MASK_OPTS = {
    "MODEL.MASK_ON": True,
    "MODEL.ROI_MASK_HEAD.NAME": "MaskRCNNConvUpsampleHead",
    "MODEL.ROI_MASK_HEAD.NUM_CONV": 1,
    "MODEL.ROI_MASK_HEAD.CONV_DIM": 32,
    "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION": 7,
}


def tiny_rcnn_cfg(**overrides) -> CfgNode:
    """A config of the tiny R18-FPN model; ``overrides`` use ``MODEL__RESNETS__DEPTH`` style
    names or dotted names through ``merge_from_list`` (see :func:`_merge`)."""
    cfg = get_cfg()
    add_distill_config(cfg)
    _merge(cfg, TINY_RCNN_OPTS)
    _merge(cfg, overrides)
    return cfg


def _merge(cfg: CfgNode, opts: dict) -> None:
    for key, value in opts.items():
        node = cfg
        parts = key.replace("__", ".").split(".")
        for p in parts[:-1]:
            node = node[p]
        if parts[-1] not in node:
            raise KeyError(f"unknown config key {key!r}")
        node[parts[-1]] = value


def write_teacher(directory: str, seed: int = 1, **overrides) -> tuple[str, str, torch.nn.Module]:
    """Save a random-init tiny teacher's config (yaml) and weights (``.pth``) into ``directory``.

    Returns:
        ``(config_path, weights_path, teacher_model)``.
    """
    os.makedirs(directory, exist_ok=True)
    cfg = tiny_rcnn_cfg(**overrides)
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    config_path = os.path.join(directory, "teacher.yaml")
    with open(config_path, "w") as f:
        f.write(cfg.dump())
    DetectionCheckpointer(model, save_dir=directory).save("teacher")
    return config_path, os.path.join(directory, "teacher.pth"), model


def tiny_distill_cfg(
    teacher_config: str, teacher_weights: str, loss: str = "luminet", **overrides
) -> CfgNode:
    """The tiny model as a DistillRCNN student of the given teacher."""
    cfg = tiny_rcnn_cfg(**{"MODEL.META_ARCHITECTURE": "DistillRCNN"})
    cfg.MODEL.DISTILL.TEACHER_CONFIG = teacher_config
    cfg.MODEL.DISTILL.TEACHER_WEIGHTS = teacher_weights
    cfg.MODEL.DISTILL.LOSS = loss
    _merge(cfg, overrides)
    return cfg


def random_batch(
    n_images: int = 2, size: tuple[int, int] = (128, 160), num_classes: int = 3, seed: int = 0,
    boxes_per_image: int = 2, masks: bool = False,
) -> list[dict]:  # fmt: skip
    """DatasetMapper-like training inputs: uint8 (3, H, W) noise images with random gt boxes.

    ``boxes_per_image=0`` gives images without annotations; ``masks=True`` adds ``gt_masks``
    (each box as a rectangular polygon), for Mask R-CNN.
    """
    g = torch.Generator().manual_seed(seed)
    h, w = size
    batch = []
    for _ in range(n_images):
        image = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
        xy = torch.rand(boxes_per_image, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
        wh = 16 + torch.rand(boxes_per_image, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3])
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
        inst.gt_classes = torch.randint(0, num_classes, (boxes_per_image,), generator=g)
        if masks:
            inst.gt_masks = PolygonMasks(
                [
                    [[x0, y0, x1, y0, x1, y1, x0, y1]]
                    for x0, y0, x1, y1 in inst.gt_boxes.tensor.tolist()
                ]
            )
        batch.append({"image": image, "instances": inst, "height": h, "width": w})
    return batch


def write_tiny_coco(
    directory: str,
    n_images: int = 8,
    size: int = 128,
    num_classes: int = 3,
    seed: int = 0,
    shapes: list[tuple[int, int]] | None = None,
    masks: bool = False,
) -> tuple[str, str]:
    """Write a COCO-format dataset of noise images with filled rectangles (one colour per class).

    Args:
        shapes: ``(width, height)`` of the images, cycled (e.g. landscape and portrait images for
            aspect-ratio grouping); default: ``size`` x ``size``.
        masks: also write each rectangle as a polygon ``segmentation`` (for Mask R-CNN).

    Returns:
        ``(json_path, image_root)``.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    image_root = os.path.join(directory, "images")
    os.makedirs(image_root, exist_ok=True)
    colours = rng.integers(0, 256, (num_classes, 3))
    images, annotations = [], []
    for i in range(n_images):
        width, height = shapes[i % len(shapes)] if shapes else (size, size)
        img = rng.integers(0, 80, (height, width, 3), dtype=np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            c = int(rng.integers(0, num_classes))
            if shapes:
                bw = int(rng.integers(width // 6, width // 2))
                bh = int(rng.integers(height // 6, height // 2))
            else:
                bw, bh = (int(v) for v in rng.integers(size // 6, size // 2, 2))
            x0, y0 = int(rng.integers(0, width - bw)), int(rng.integers(0, height - bh))
            img[y0 : y0 + bh, x0 : x0 + bw] = colours[c]
            annotation = {
                "id": len(annotations) + 1,
                "image_id": i + 1,
                "category_id": c + 1,
                "bbox": [x0, y0, bw, bh],
                "area": bw * bh,
                "iscrowd": 0,
            }
            if masks:
                x1, y1 = x0 + bw, y0 + bh
                annotation["segmentation"] = [[x0, y0, x1, y0, x1, y1, x0, y1]]
            annotations.append(annotation)
        name = f"{i:04d}.png"
        Image.fromarray(img).save(os.path.join(image_root, name))
        images.append({"id": i + 1, "file_name": name, "height": height, "width": width})
    categories = [{"id": c + 1, "name": f"class{c}"} for c in range(num_classes)]
    json_path = os.path.join(directory, "instances.json")
    with open(json_path, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return json_path, image_root
