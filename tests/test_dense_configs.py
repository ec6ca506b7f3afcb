"""The shipped COCO RetinaNet configs (R101 teacher -> R18 student) resolve and build (CPU)."""

from pathlib import Path

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.modeling.meta_arch.retinanet import RetinaNet
from detectron2.utils.events import EventStorage

from luminet_det import (
    DistillRetinaNet,
    Teacher,
    add_distill_config,
    build_distill_loss_from_cfg,
    load_teacher_config,
)
from luminet_det.testing import random_batch

REPO = Path(__file__).resolve().parents[1]
LOSSES = ("luminet_sigmoid", "kd_sigmoid", "none")


def _leaf(loss):
    path = REPO / "configs" / "coco" / f"retinanet_r101_r18_{loss}.yaml"
    cfg = get_cfg()
    add_distill_config(cfg)
    cfg.merge_from_file(str(path))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


@pytest.fixture(scope="module")
def zoo_teacher():
    """The model-zoo R101 RetinaNet of the configs, random init (the weights are not read)."""
    torch.manual_seed(1)
    return Teacher(build_model(load_teacher_config(_leaf("luminet_sigmoid"))), image_format="RGB")


@pytest.mark.parametrize("loss", LOSSES)
def test_coco_retinanet_leaves_resolve(loss):
    cfg = _leaf(loss)
    assert cfg.MODEL.META_ARCHITECTURE == "DistillRetinaNet"
    assert cfg.MODEL.DISTILL.LOSS == loss
    assert cfg.MODEL.DISTILL.WARMUP_ITERS == cfg.SOLVER.WARMUP_ITERS == 1000
    assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER) == (16, 0.01, 90000)
    assert cfg.MODEL.RESNETS.DEPTH == 18 and cfg.INPUT.FORMAT == "RGB"
    teacher_cfg = load_teacher_config(cfg)  # zoo:// config, resolved without a download
    assert teacher_cfg.MODEL.META_ARCHITECTURE == "RetinaNet"
    assert teacher_cfg.MODEL.RESNETS.DEPTH == 101 and teacher_cfg.INPUT.FORMAT == "BGR"
    assert teacher_cfg.MODEL.RETINANET.NUM_CLASSES == cfg.MODEL.RETINANET.NUM_CLASSES == 80
    assert cfg.MODEL.DISTILL.TEACHER_WEIGHTS.startswith("detectron2://COCO-Detection/retinanet_")
    loss_module = build_distill_loss_from_cfg(cfg)
    assert (loss_module is None) == (loss == "none")


@pytest.mark.parametrize("loss", ["luminet_sigmoid", "kd_sigmoid"])
def test_coco_retinanet_student_builds_against_the_zoo_teacher_and_steps(zoo_teacher, loss):
    """The base's anchors, levels and classes pass the layout check against the model-zoo
    teacher's, and one training step runs (both models random init, one 128 px image)."""
    cfg = _leaf(loss)
    torch.manual_seed(0)
    args = RetinaNet.from_config(cfg)
    model = DistillRetinaNet(
        teacher=zoo_teacher, distill_loss=build_distill_loss_from_cfg(cfg), loss_name=loss, **args
    )
    assert type(model.backbone.bottom_up).__name__ == "ResNet"
    assert model.anchor_generator.num_cell_anchors == [9] * 5
    model.train()
    with EventStorage(1000):
        losses = model(random_batch(1, size=(128, 128), num_classes=80, seed=0))
    assert torch.isfinite(losses[f"loss_{loss}"]) and losses[f"loss_{loss}"] > 0


def test_coco_retinanet_none_builds_the_student_alone():
    model = build_model(_leaf("none"))
    assert isinstance(model, DistillRetinaNet) and model.teacher is None
