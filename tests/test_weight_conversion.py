"""torchvision -> detectron2 weight conversion: exact key coverage and identical features."""

import os
import pickle

import numpy as np
import pytest
import torch
import torchvision
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.backbone.resnet import build_resnet_backbone
from tool_scripts import load_tool
from torch import nn

from luminet_det.backbones import MobileNetV2, convert_torchvision_state_dict
from luminet_det.backbones.torchvision_conversion import (
    TORCHVISION_PIXEL_MEAN,
    TORCHVISION_PIXEL_STD,
    detectron2_backbone_config,
    torchvision_cache_path,
    verify_against_detectron2,
)

STAGES = ["res2", "res3", "res4", "res5"]
# torchvision MobileNetV2 features[i] whose output equals each stage's output.
MOBILENET_STAGE_INDEX = {"res2": 3, "res3": 6, "res4": 13, "res5": 18}
ATOL = 1e-4


def _randomize_norms(model: nn.Module) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine terms, so a swapped or missing
    norm tensor changes the features (default init would hide it)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
    return model.eval()


def _tensors(weights):
    return {k: torch.from_numpy(v) for k, v in weights.items()}


def _resnet_stage_outputs(tv: nn.Module, x: torch.Tensor) -> dict:
    x = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
    out = {}
    for i, layer in enumerate([tv.layer1, tv.layer2, tv.layer3, tv.layer4]):
        x = layer(x)
        out[f"res{i + 2}"] = x
    return out


@pytest.mark.parametrize("name, norm", [("resnet18", "FrozenBN"), ("resnet18", "BN")])
def test_resnet18_features_match_torchvision(name, norm):
    tv = _randomize_norms(getattr(torchvision.models, name)())
    weights = convert_torchvision_state_dict(name, tv.state_dict(), prefix="")
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in weights.values())
    assert "stem.conv1.norm.running_var" in weights and "res3.0.shortcut.norm.bias" in weights
    assert not any(k.startswith("fc") or "num_batches_tracked" in k for k in weights)

    cfg = detectron2_backbone_config(name)
    cfg.MODEL.RESNETS.NORM = norm
    backbone = build_resnet_backbone(cfg, ShapeSpec(channels=3)).eval()
    missing, unexpected = backbone.load_state_dict(_tensors(weights), strict=False)
    assert unexpected == []
    # Only BN step counters (not used at inference) may be missing: detectron2 after 0.6 keeps
    # them in the FrozenBatchNorm2d of frozen stages converted from BN.
    assert all(k.endswith(".num_batches_tracked") for k in missing), missing

    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ours, ref = backbone(x), _resnet_stage_outputs(tv, x)
    for stage in STAGES:
        assert ours[stage].shape == ref[stage].shape
        torch.testing.assert_close(ours[stage], ref[stage], atol=ATOL, rtol=1e-4)


def test_resnet50_features_match_only_with_stride_in_3x3():
    tv = _randomize_norms(torchvision.models.resnet50())
    weights = _tensors(convert_torchvision_state_dict("resnet50", tv.state_dict(), prefix=""))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = _resnet_stage_outputs(tv, x)
    cfg = detectron2_backbone_config("resnet50")
    assert cfg.MODEL.RESNETS.STRIDE_IN_1X1 is False
    backbone = build_resnet_backbone(cfg, ShapeSpec(channels=3)).eval()
    backbone.load_state_dict(weights, strict=True)
    with torch.no_grad():
        out = backbone(x)
    torch.testing.assert_close(out["res5"], ref["res5"], atol=ATOL, rtol=1e-4)

    # detectron2's default (MSRA-style stride in the 1x1 conv) loads but computes something else.
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = True
    wrong = build_resnet_backbone(cfg, ShapeSpec(channels=3)).eval()
    wrong.load_state_dict(weights, strict=True)
    with torch.no_grad():
        assert (wrong(x)["res3"] - ref["res3"]).abs().max() > 1e-2


@pytest.mark.parametrize("name", ["resnet34", "resnet101"])
def test_deeper_resnets_cover_detectron2_backbone(name):
    tv = getattr(torchvision.models, name)()
    weights = convert_torchvision_state_dict(name, tv.state_dict())
    verify_against_detectron2(name, weights)  # raises on any missing/unexpected/mis-shaped key


@pytest.mark.parametrize("width_mult, last_conv", [(1.0, True), (1.0, False), (0.5, True)])
def test_mobilenet_v2_features_match_torchvision(width_mult, last_conv):
    tv = _randomize_norms(torchvision.models.mobilenet_v2(width_mult=width_mult))
    weights = convert_torchvision_state_dict(
        "mobilenet_v2", tv.state_dict(), prefix="", last_conv=last_conv
    )
    model = MobileNetV2(norm="FrozenBN", width_mult=width_mult, last_conv=last_conv).eval()
    model.load_state_dict(_tensors(weights), strict=True)

    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ours = model(x)
        acts, feat = [], x
        for layer in tv.features:
            feat = layer(feat)
            acts.append(feat)
    for stage, index in MOBILENET_STAGE_INDEX.items():
        if stage == "res5" and not last_conv:
            index = 17
        torch.testing.assert_close(ours[stage], acts[index], atol=ATOL, rtol=1e-4)


def test_mobilenet_v2_every_feature_tensor_is_used():
    sd = torchvision.models.mobilenet_v2().state_dict()
    weights = convert_torchvision_state_dict("mobilenet_v2", sd, prefix="")
    kept = [k for k in sd if k.startswith("features.") and not k.endswith("num_batches_tracked")]
    assert len(weights) == len(kept)
    assert set(weights) == set(MobileNetV2(norm="FrozenBN").state_dict())


def test_unknown_keys_raise_with_their_name():
    sd = torchvision.models.resnet18().state_dict()
    sd["layer1.0.se.fc.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="layer1.0.se.fc.weight"):
        convert_torchvision_state_dict("resnet18", sd)
    sd = torchvision.models.mobilenet_v2().state_dict()
    sd["features.19.0.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="features.19.0.weight"):
        convert_torchvision_state_dict("mobilenet_v2", sd)
    with pytest.raises(ValueError, match="'vgg16'"):
        convert_torchvision_state_dict("vgg16", sd)


def test_wrong_architecture_fails_verification():
    weights = convert_torchvision_state_dict("resnet18", torchvision.models.resnet18().state_dict())
    with pytest.raises(ValueError, match=r"do not match.*missing"):
        verify_against_detectron2("resnet34", weights)


def _fpn_rcnn_cfg(model: str):
    cfg = detectron2_backbone_config(model)
    cfg.MODEL.BACKBONE.NAME = (
        "build_mobilenetv2_fpn_backbone" if model == "mobilenet_v2" else "build_resnet_fpn_backbone"
    )
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 1
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
    return cfg


@pytest.mark.parametrize("model_name", ["resnet18", "mobilenet_v2"])
def test_tool_output_loads_into_fpn_rcnn(tmp_path, model_name):
    tv = _randomize_norms(getattr(torchvision.models, model_name)())
    src, dst = tmp_path / "tv.pth", tmp_path / "converted.pkl"
    torch.save(tv.state_dict(), src)
    convert = load_tool("convert_torchvision_weights")
    convert.main(["--model", model_name, "--input", str(src), "--output", str(dst)])

    with open(dst, "rb") as f:
        ckpt = pickle.load(f)
    assert ckpt["matching_heuristics"] is False
    assert model_name in ckpt["__author__"]
    assert all(k.startswith("backbone.bottom_up.") for k in ckpt["model"])
    assert all(isinstance(v, np.ndarray) for v in ckpt["model"].values())

    cfg = _fpn_rcnn_cfg(model_name)
    assert cfg.INPUT.FORMAT == "RGB"
    assert cfg.MODEL.PIXEL_MEAN == TORCHVISION_PIXEL_MEAN
    assert cfg.MODEL.PIXEL_STD == TORCHVISION_PIXEL_STD
    model = build_model(cfg)
    checkpointer = DetectionCheckpointer(model)
    incompatible = checkpointer._load_model(checkpointer._load_file(str(dst)))
    assert not [k for k in incompatible.missing_keys if k.startswith("backbone.bottom_up.")]
    assert incompatible.unexpected_keys == []
    assert incompatible.incorrect_shapes == []
    # Everything else (FPN, RPN, ROI heads) stays at its initialisation.
    assert incompatible.missing_keys and all(
        not k.startswith("backbone.bottom_up.") for k in incompatible.missing_keys
    )

    # The public load path gives the same weights, value for value.
    fresh = build_model(cfg)
    DetectionCheckpointer(fresh).load(str(dst))
    state = fresh.state_dict()
    for key, value in ckpt["model"].items():
        assert torch.equal(state[key], torch.from_numpy(value)), key
    bottom_up = {k for k in state if k.startswith("backbone.bottom_up.")}
    assert bottom_up == set(ckpt["model"])


def test_tool_uses_torchvision_cache_and_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    tool = load_tool("convert_torchvision_weights")
    out = tmp_path / "r18.pkl"
    cached = torchvision_cache_path("resnet18", "IMAGENET1K_V1")
    assert cached.startswith(str(tmp_path)) and cached.endswith("resnet18-f37072fd.pth")
    with pytest.raises(FileNotFoundError, match="resnet18-f37072fd.pth"):
        tool.main(["--model", "resnet18", "--weights", "IMAGENET1K_V1", "--output", str(out)])
    assert not out.exists()

    os.makedirs(os.path.dirname(cached))
    torch.save(torchvision.models.resnet18().state_dict(), cached)
    ckpt = tool.main(["--model", "resnet18", "--output", str(out), "--prefix", "backbone."])
    assert out.exists() and "resnet18-f37072fd.pth" in ckpt["__author__"]
    assert "backbone.res5.1.conv2.norm.running_mean" in ckpt["model"]


def test_tool_rejects_bad_arguments(tmp_path):
    tool = load_tool("convert_torchvision_weights")
    src = tmp_path / "tv.pth"
    torch.save(torchvision.models.resnet18().state_dict(), src)
    with pytest.raises(ValueError, match="must end in .pkl"):
        tool.main(["--model", "resnet18", "--input", str(src), "--output", str(tmp_path / "a.pth")])
    with pytest.raises(ValueError, match="apply to mobilenet_v2"):
        tool.main(
            ["--model", "resnet18", "--input", str(src), "--output", "b.pkl", "--no-last-conv"]
        )
    with pytest.raises(KeyError, match="IMAGENET9K"):
        torchvision_cache_path("resnet18", "IMAGENET9K")
    with pytest.raises(SystemExit):
        tool.main(["--model", "vgg16", "--input", str(src), "--output", "c.pkl"])
    # resnet18 weights declared as resnet50 fail verification and write nothing.
    with pytest.raises(ValueError, match="do not match"):
        tool.main(["--model", "resnet50", "--input", str(src), "--output", str(tmp_path / "d.pkl")])
    assert not (tmp_path / "d.pkl").exists()
