"""MobileNetV2 backbone: shapes, strides, options, config keys and FPN/R-CNN integration."""

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import build_backbone, build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from torch import nn
from torchvision.models._utils import _make_divisible as torchvision_make_divisible

from luminet_det.backbones import (
    MobileNetV2,
    add_mobilenetv2_config,
    build_mobilenetv2_backbone,
)
from luminet_det.backbones.mobilenetv2 import make_divisible

STAGES = ["res2", "res3", "res4", "res5"]


def _cfg(freeze_at: int = 2, **mobilenet):
    cfg = get_cfg()
    add_mobilenetv2_config(cfg)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.NAME = "build_mobilenetv2_fpn_backbone"
    cfg.MODEL.BACKBONE.FREEZE_AT = freeze_at
    cfg.MODEL.FPN.IN_FEATURES = list(STAGES)
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    for key, value in mobilenet.items():
        cfg.MODEL.MOBILENETV2[key] = value
    return cfg


def _norm_types(module: nn.Module) -> set:
    return {
        type(m)
        for m in module.modules()
        if isinstance(m, (nn.BatchNorm2d, nn.SyncBatchNorm, FrozenBatchNorm2d))
    }


def test_output_shapes_strides_and_channels():
    model = MobileNetV2(norm="BN", out_features=["stem"] + STAGES).eval()
    shapes = model.output_shape()
    assert [shapes[n].stride for n in ["stem"] + STAGES] == [2, 4, 8, 16, 32]
    assert [shapes[n].channels for n in ["stem"] + STAGES] == [16, 24, 32, 96, 1280]
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = model(x)
    assert list(out) == ["stem"] + STAGES
    for name, feat in out.items():
        stride, channels = shapes[name].stride, shapes[name].channels
        assert tuple(feat.shape) == (2, channels, 64 // stride, 96 // stride), name


def test_without_last_conv_res5_has_320_channels():
    model = MobileNetV2(norm="BN", last_conv=False).eval()
    assert model.output_shape()["res5"].channels == 320
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64))["res5"].shape[1] == 320


@pytest.mark.parametrize("width_mult", [0.35, 0.5, 0.75, 1.0, 1.4])
def test_make_divisible_matches_torchvision(width_mult):
    for channels in (16, 24, 32, 64, 96, 160, 320, 1280):
        assert make_divisible(channels * width_mult) == torchvision_make_divisible(
            channels * width_mult, 8
        )


def test_width_multiplier_scales_channels():
    half = MobileNetV2(norm="BN", width_mult=0.5).output_shape()
    assert [half[n].channels for n in STAGES] == [16, 16, 48, 1280]
    wide = MobileNetV2(norm="BN", width_mult=1.4).output_shape()
    # The last conv widens only for width_mult > 1 (1280 * 1.4 = 1792).
    assert [wide[n].channels for n in STAGES] == [32, 48, 136, 1792]
    assert sum(p.numel() for p in MobileNetV2(norm="BN", width_mult=0.5).parameters()) < sum(
        p.numel() for p in MobileNetV2(norm="BN").parameters()
    )


def test_out_features_prunes_later_stages():
    model = MobileNetV2(norm="BN", out_features=["res3"])
    names = {n for n, _ in model.named_children()}
    assert names == {"stem", "res2", "res3"}
    assert list(model(torch.randn(1, 3, 64, 64))) == ["res3"]


@pytest.mark.parametrize(
    "norm, expected",
    [("FrozenBN", FrozenBatchNorm2d), ("BN", nn.BatchNorm2d), ("SyncBN", nn.SyncBatchNorm)],
)
def test_norm_option(norm, expected):
    model = build_mobilenetv2_backbone(_cfg(NORM=norm, freeze_at=0), ShapeSpec(channels=3))
    assert _norm_types(model) == {expected}
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert torch.isfinite(out["res5"]).all()


@pytest.mark.parametrize("freeze_at", [0, 1, 2, 3, 5])
def test_freeze_at(freeze_at):
    model = MobileNetV2(norm="BN", freeze_at=freeze_at)
    parts = ["stem"] + STAGES
    for idx, name in enumerate(parts, start=1):
        part = getattr(model, name)
        frozen = idx <= freeze_at
        assert all(p.requires_grad != frozen for p in part.parameters()), name
        assert _norm_types(part) == ({FrozenBatchNorm2d} if frozen else {nn.BatchNorm2d}), name


@pytest.mark.parametrize("freeze_at", [0, 1, 3])
def test_the_frozen_stages_are_model_backbone_freeze_at(freeze_at):
    """One key: detectron2's MODEL.BACKBONE.FREEZE_AT (0 used to leave 9 stem tensors frozen)."""
    backbone = build_backbone(_cfg(freeze_at, NORM="BN")).bottom_up
    reference = MobileNetV2(norm="BN", freeze_at=freeze_at)
    assert [p.requires_grad for p in backbone.parameters()] == [
        p.requires_grad for p in reference.parameters()
    ]
    if freeze_at == 0:
        assert all(p.requires_grad for p in backbone.parameters())


def test_frozen_parts_get_no_gradient():
    model = MobileNetV2(norm="BN", freeze_at=2).train()
    out = model(torch.randn(2, 3, 64, 64))
    sum(f.mean() for f in out.values()).backward()
    assert all(p.grad is None for p in model.stem.parameters())
    assert all(p.grad is None for p in model.res2.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.res3.parameters())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"norm": "GN"}, "'GN'"),
        ({"norm": "BN", "out_features": ["res6"]}, "'res6'"),
        ({"norm": "BN", "out_features": []}, "must not be empty"),
        ({"norm": "BN", "freeze_at": 6}, "got 6"),
        ({"norm": "BN", "width_mult": 0.0}, "got 0.0"),
    ],
)
def test_invalid_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MobileNetV2(**kwargs)


def test_add_config_is_idempotent_and_keeps_user_values():
    cfg = get_cfg()
    add_mobilenetv2_config(cfg)
    assert cfg.MODEL.MOBILENETV2.NORM == "FrozenBN"
    assert cfg.MODEL.MOBILENETV2.OUT_FEATURES == STAGES
    cfg.merge_from_list(["MODEL.MOBILENETV2.WIDTH_MULT", 0.5, "MODEL.MOBILENETV2.LAST_CONV", False])
    add_mobilenetv2_config(cfg)
    assert cfg.MODEL.MOBILENETV2.WIDTH_MULT == 0.5
    assert cfg.MODEL.MOBILENETV2.LAST_CONV is False
    assert set(cfg.MODEL.MOBILENETV2) == {
        "WIDTH_MULT",
        "NORM",
        "OUT_FEATURES",
        "LAST_CONV",
    }
    cfg.freeze()
    with pytest.raises(ValueError, match="unfrozen"):
        add_mobilenetv2_config(cfg)


def test_builder_without_config_keys_raises():
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_mobilenetv2_backbone"
    with pytest.raises(KeyError, match="add_mobilenetv2_config"):
        build_backbone(cfg)


def test_fpn_backbone_outputs_p2_to_p6():
    backbone = build_backbone(_cfg(NORM="BN", freeze_at=0)).eval()
    shapes = backbone.output_shape()
    assert {k: v.stride for k, v in shapes.items()} == {
        "p2": 4,
        "p3": 8,
        "p4": 16,
        "p5": 32,
        "p6": 64,
    }
    assert {v.channels for v in shapes.values()} == {32}
    assert backbone.size_divisibility == 32
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 128, 192))
    for name, feat in out.items():
        assert tuple(feat.shape) == (1, 32, 128 // shapes[name].stride, 192 // shapes[name].stride)


def test_fpn_in_features_must_be_produced():
    cfg = _cfg(NORM="BN", OUT_FEATURES=["res3", "res4", "res5"])
    with pytest.raises(ValueError, match=r"\['res2'\]"):
        build_backbone(cfg)
    cfg.MODEL.FPN.IN_FEATURES = []
    with pytest.raises(ValueError, match="IN_FEATURES is empty"):
        build_backbone(cfg)


def test_faster_rcnn_with_mobilenetv2_fpn_trains_one_step():
    cfg = _cfg(NORM="BN", freeze_at=0)
    cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 1
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16], [32], [64], [128], [256]]
    model = build_model(cfg).train()
    inputs = []
    for _ in range(2):
        inst = Instances((128, 128))
        inst.gt_boxes = Boxes(torch.tensor([[10.0, 20.0, 60.0, 90.0], [70.0, 10.0, 120.0, 50.0]]))
        inst.gt_classes = torch.tensor([0, 2])
        inputs.append({"image": torch.rand(3, 128, 128) * 255, "instances": inst})
    with EventStorage(0):
        losses = model(inputs)
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.backbone.bottom_up.parameters()]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
