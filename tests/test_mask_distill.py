"""Mask R-CNN with DistillRCNN: box-logit distillation, the mask head training as usual, and
mixed Faster/Mask/Cascade pairs (tiny R18-FPN models, CPU; detectron2 0.6 and upstream main)."""

from pathlib import Path

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import GeneralizedRCNN, build_model
from detectron2.utils.events import EventStorage
from tool_scripts import load_tool

import luminet_det  # noqa: F401  (registers DistillRCNN)
from luminet.losses import luminet_loss
from luminet_det import add_distill_config, load_teacher_config
from luminet_det.testing import (
    TINY_CASCADE_OPTS,
    TINY_MASK_OPTS,
    random_batch,
    tiny_distill_cfg,
    tiny_rcnn_cfg,
    write_teacher,
)

REPO = Path(__file__).resolve().parent.parent
FROZEN_BN = {"MODEL.RESNETS.NORM": "FrozenBN"}
STUDENT_KEYS = {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}


@pytest.fixture(scope="module")
def mask_teacher(tmp_path_factory):
    config, weights, _ = write_teacher(
        str(tmp_path_factory.mktemp("mask_teacher")), seed=1, **TINY_MASK_OPTS
    )
    return config, weights


@pytest.fixture(scope="module")
def faster_teacher(tmp_path_factory):
    config, weights, _ = write_teacher(str(tmp_path_factory.mktemp("faster_teacher")), seed=1)
    return config, weights


def _build(cfg, seed=0):
    torch.manual_seed(seed)
    return build_model(cfg).train()


def _step(model, batch, it=0):
    with EventStorage(it):
        return model(batch)


def _train(model, masks, steps=2):
    """A few steps: finite positive distillation loss, teacher frozen and in eval, gradient
    only in the student; returns the last step's losses."""
    teacher = model.teacher
    assert not teacher.training and not teacher.model.training and model.training
    assert all(not p.requires_grad for p in teacher.parameters())
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for it in range(steps):
        losses = _step(model, random_batch(2, seed=it, masks=masks), it)
        assert torch.isfinite(losses["loss_luminet"]) and losses["loss_luminet"] > 0
        assert all(torch.isfinite(v) for v in losses.values())
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        model.train()
        assert not any(m.training for m in teacher.modules())
    assert all(p.grad is None for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), f"teacher tensor {k} changed"
    assert not {id(p) for p in teacher.parameters()} & {id(p) for p in model.parameters()}
    return losses


def test_mask_pair_distils_box_logits_and_trains_the_mask_head(mask_teacher):
    model = _build(tiny_distill_cfg(*mask_teacher, **TINY_MASK_OPTS))
    assert model.roi_heads.mask_on
    losses = _train(model, masks=True)
    assert set(losses) == {*STUDENT_KEYS, "loss_mask", "loss_luminet"}
    # the mask head is trained by its own loss; the distillation term does not reach it
    model.zero_grad()
    losses = _step(model, random_batch(2, seed=5, masks=True))
    losses["loss_luminet"].backward()
    assert all(p.grad is None for p in model.roi_heads.mask_head.parameters())
    assert model.roi_heads.box_predictor.cls_score.weight.grad.abs().sum() > 0
    model.zero_grad()
    losses = _step(model, random_batch(2, seed=5, masks=True))
    losses["loss_mask"].backward()
    assert all(p.grad is not None for p in model.roi_heads.mask_head.parameters())


def test_mask_copies_give_exactly_zero(tmp_path):
    config, weights, teacher_model = write_teacher(
        str(tmp_path), seed=2, **TINY_MASK_OPTS, **FROZEN_BN
    )
    cfg = tiny_distill_cfg(config, weights, **TINY_MASK_OPTS, **FROZEN_BN)
    cfg.INPUT.FORMAT = "BGR"
    model = _build(cfg)
    model.load_state_dict(teacher_model.state_dict(), strict=True)
    batch = random_batch(2, seed=3, masks=True)
    with EventStorage(0):
        features = model.backbone(model.preprocess_image(batch).tensor)
        boxes = [b["instances"].gt_boxes for b in batch]
        s = model.student_roi_logits(features, boxes)
        t = model.teacher.roi_logits(batch, boxes)
    assert torch.equal(s, t) and luminet_loss(s, t).item() == 0.0
    losses = _step(model, batch)
    assert losses["loss_luminet"].item() == 0.0 and losses["loss_mask"] > 0
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.mul_(-1.5)
    assert _step(model, batch)["loss_luminet"].item() > 0


def test_mask_teacher_for_a_faster_student(mask_teacher):
    model = _build(tiny_distill_cfg(*mask_teacher))
    assert not model.roi_heads.mask_on and model.teacher.model.roi_heads.mask_on
    losses = _train(model, masks=False)
    assert set(losses) == {*STUDENT_KEYS, "loss_luminet"}


def test_faster_teacher_for_a_mask_student(faster_teacher):
    model = _build(tiny_distill_cfg(*faster_teacher, **TINY_MASK_OPTS))
    assert model.roi_heads.mask_on and not model.teacher.model.roi_heads.mask_on
    losses = _train(model, masks=True)
    assert set(losses) == {*STUDENT_KEYS, "loss_mask", "loss_luminet"}


def test_cascade_mask_teacher_for_a_mask_student(tmp_path):
    """The model-zoo Cascade teachers are Cascade *Mask* R-CNNs: their box stages score the ROIs
    of a Mask R-CNN student (teacher stage chosen by CASCADE_TEACHER_STAGE)."""
    config, weights, _ = write_teacher(str(tmp_path), seed=4, **TINY_CASCADE_OPTS, **TINY_MASK_OPTS)
    model = _build(
        tiny_distill_cfg(
            config, weights, **TINY_MASK_OPTS, **{"MODEL.DISTILL.CASCADE_TEACHER_STAGE": 0}
        )
    )
    assert model.teacher_stages == (0,)
    _train(model, masks=True)


def test_mask_student_checkpoint_loads_strictly_into_a_stock_mask_rcnn(mask_teacher, tmp_path):
    model = _build(tiny_distill_cfg(*mask_teacher, **TINY_MASK_OPTS))
    _step(model, random_batch(2, masks=True))
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("model_final")
    stock_cfg = tiny_rcnn_cfg(**TINY_MASK_OPTS)
    stock = build_model(stock_cfg)
    assert type(stock) is GeneralizedRCNN and stock.roi_heads.mask_on
    saved = torch.load(tmp_path / "model_final.pth", weights_only=False)["model"]
    assert any(k.startswith("roi_heads.mask_head.") for k in saved)
    stock.load_state_dict(saved, strict=True)
    config_file = tmp_path / "student.yaml"
    config_file.write_text(stock_cfg.dump())
    extract = load_tool("extract_student")
    src, out = str(tmp_path / "model_final.pth"), str(tmp_path / "student.pth")
    assert extract.main([src, out, "--config-file", str(config_file)]) == 0
    stock.eval()
    with torch.no_grad():
        result = stock([{"image": random_batch(1)[0]["image"]}])[0]["instances"]
    assert result.has("pred_masks") or len(result) == 0


def test_shipped_mask_config_resolves_and_builds():
    train_net = load_tool("train_net")
    cfg = get_cfg()
    add_distill_config(cfg)
    cfg.merge_from_file(str(REPO / "configs" / "coco" / "mask_r101_r18_luminet.yaml"))
    assert cfg.MODEL.META_ARCHITECTURE == "DistillRCNN" and cfg.MODEL.MASK_ON
    assert cfg.MODEL.ROI_HEADS.NAME == "StandardROIHeads"
    teacher_cfg = load_teacher_config(cfg)  # zoo:// config, resolved without a download
    assert teacher_cfg.MODEL.MASK_ON and teacher_cfg.MODEL.RESNETS.DEPTH == 101
    assert teacher_cfg.MODEL.ROI_HEADS.NUM_CLASSES == cfg.MODEL.ROI_HEADS.NUM_CLASSES == 80
    assert "mask_rcnn_R_101_FPN_3x/138205316" in cfg.MODEL.DISTILL.TEACHER_WEIGHTS
    cfg = train_net.student_only_cfg(cfg).clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    student = build_model(cfg)
    assert student.roi_heads.mask_on and student.teacher is None
    assert student.backbone.bottom_up.stem.conv1.weight.shape[0] == 64  # R18
