"""Classification model zoo: registry, pinned sizes and layouts, forward shapes, checkpoints."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys

import pytest
import torch

import luminet.models as M
from luminet.models import registry
from luminet.registry import NamedRegistry

CIFAR_CLASSES = 100
IMAGENET_CLASSES = 1000

# Exact parameter counts (num_classes=100 for CIFAR, 1000 for ImageNet). The published sizes, in
# millions, are given in docs/classification_models.md next to each model.
PARAM_COUNTS = {
    # CIFAR
    "resnet8": 83_892,
    "resnet14": 181_108,
    "resnet20": 278_324,
    "resnet32": 472_756,
    "resnet44": 667_188,
    "resnet56": 861_620,
    "resnet110": 1_736_564,
    "resnet8x4": 1_233_540,
    "resnet32x4": 7_433_860,
    "wrn_16_1": 180_916,
    "wrn_16_2": 703_284,
    "wrn_40_1": 569_780,
    "wrn_40_2": 2_255_156,
    "vgg8": 3_965_028,
    "vgg11": 9_277_284,
    "vgg13": 9_462_180,
    "vgg16": 14_774_436,
    "vgg19": 20_086_692,
    "ShuffleV1": 949_258,
    "ShuffleV2": 1_355_528,
    "MobileNetV2": 812_836,
    "ResNet50": 23_705_252,
    # ImageNet
    "ResNet18": 11_689_512,
    "ResNet34": 21_797_672,
    "ResNet50_imagenet": 25_557_032,
    "MobileNetV1": 4_231_976,
    "MobileNetV2_imagenet": 3_504_872,
}
IMAGENET = {"ResNet18", "ResNet34", "ResNet50_imagenet", "MobileNetV1", "MobileNetV2_imagenet"}
CIFAR = sorted(set(PARAM_COUNTS) - IMAGENET)

# (number of state-dict entries, sha256 prefix of the sorted "key:shape" lines). Pins parameter
# NAMES and shapes, which public checkpoints need for a strict load; a rename changes the hash.
STATE_LAYOUT = {
    "MobileNetV1": (164, "2c25d7608115018d"),
    "MobileNetV2": (320, "10e9036e17013c38"),
    "MobileNetV2_imagenet": (314, "8e46697c9016e576"),
    "ResNet18": (122, "1dcde4b21afa712c"),
    "ResNet34": (218, "c9e0bf87b4391ad8"),
    "ResNet50": (320, "d4a9e0738c8f8385"),
    "ResNet50_imagenet": (320, "ce6ad2593ee187ab"),
    "ShuffleV1": (296, "eb3bcbc847930cce"),
    "ShuffleV2": (338, "b7e2c3e764687767"),
    "resnet110": (668, "7f8e5ac1814e480a"),
    "resnet14": (92, "8525efa6fc491f19"),
    "resnet20": (128, "6db44f39e3bff21f"),
    "resnet32": (200, "325ee6108709f7b5"),
    "resnet32x4": (206, "610ad29043c56b33"),
    "resnet44": (272, "f1263f7b0ed71e1a"),
    "resnet56": (344, "3977b81559d8630f"),
    "resnet8": (56, "166d31a811b31c5f"),
    "resnet8x4": (62, "5d5871b403f3a649"),
    "vgg11": (58, "6592bd1869a5938f"),
    "vgg13": (72, "7bec65f1ca17a0bf"),
    "vgg16": (93, "b420ddff7e4306ec"),
    "vgg19": (114, "2d318270df30c723"),
    "vgg8": (37, "d9f8d7533423754e"),
    "wrn_16_1": (82, "f6cf46040022f13d"),
    "wrn_16_2": (83, "bdbc50a2b3205f84"),
    "wrn_40_1": (226, "deef22602ae7584b"),
    "wrn_40_2": (227, "bf5731c8e8e2b95f"),
}

# Readable spot checks of names/shapes from the public CIFAR definitions (CRD / DKD).
PUBLIC_KEYS = {
    "resnet32x4": {
        "conv1.weight": (32, 3, 3, 3),
        "layer1.0.downsample.0.weight": (64, 32, 1, 1),
        "layer3.4.bn2.running_var": (256,),
        "fc.weight": (100, 256),
    },
    "wrn_40_2": {
        "block1.layer.0.convShortcut.weight": (32, 16, 1, 1),
        "block3.layer.5.conv2.weight": (128, 128, 3, 3),
        "bn1.weight": (128,),
        "fc.weight": (100, 128),
    },
    "vgg13": {"block0.3.weight": (64, 64, 3, 3), "block4.4.bias": (512,)},
    "MobileNetV2": {
        "conv1.0.weight": (16, 3, 3, 3),
        "blocks.0.0.conv.0.weight": (16, 16, 1, 1),
        "blocks.6.0.conv.7.weight": (160,),
        "conv2.0.weight": (1280, 160, 1, 1),
        "classifier.0.weight": (100, 1280),
    },
    "ShuffleV1": {"layer1.0.conv1.weight": (54, 24, 1, 1), "linear.weight": (100, 960)},
    "ShuffleV2": {"layer1.0.conv5.weight": (58, 58, 1, 1), "conv2.weight": (1024, 464, 1, 1)},
    "ResNet50": {"layer1.0.shortcut.0.weight": (256, 64, 1, 1), "linear.weight": (100, 2048)},
    "MobileNetV1": {"model.13.3.weight": (1024, 1024, 1, 1), "fc.weight": (1000, 1024)},
}


def _classes(name: str) -> int:
    return IMAGENET_CLASSES if name in IMAGENET else CIFAR_CLASSES


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_available_models_is_exactly_the_zoo():
    assert M.available_models() == sorted(PARAM_COUNTS)


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_param_count_and_state_layout(name):
    model = M.build_model(name, _classes(name))
    assert _num_params(model) == PARAM_COUNTS[name]
    sd = model.state_dict()
    listing = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(sd.items()))
    digest = hashlib.sha256(listing.encode()).hexdigest()[:16]
    assert (len(sd), digest) == STATE_LAYOUT[name]
    assert model.model_name == name


def test_cifar10_resnets_match_he_et_al():
    """He et al. 2016 (Table 6) list CIFAR-10 ResNet sizes 0.27M, 0.46M, 0.66M, 0.85M, 1.7M.

    Those values are truncated, not rounded (e.g. resnet32 has 466,906 parameters).
    """
    published = {"resnet20": 27, "resnet32": 46, "resnet44": 66, "resnet56": 85, "resnet110": 173}
    for name, hundredths in published.items():
        n = _num_params(M.build_model(name, 10))
        assert n // 10_000 == hundredths, (name, n)


def test_imagenet_counts_match_torchvision_metadata():
    from torchvision import models as tvm

    published = {
        "ResNet18": tvm.ResNet18_Weights.IMAGENET1K_V1,
        "ResNet34": tvm.ResNet34_Weights.IMAGENET1K_V1,
        "ResNet50_imagenet": tvm.ResNet50_Weights.IMAGENET1K_V1,
        "MobileNetV2_imagenet": tvm.MobileNet_V2_Weights.IMAGENET1K_V1,
    }
    for name, weights in published.items():
        assert PARAM_COUNTS[name] == weights.meta["num_params"], name


def test_zoo_table_command(capsys, monkeypatch):
    import luminet.models.__main__ as cli

    monkeypatch.setattr(cli, "available_models", lambda: ["ResNet18", "resnet56"])  # keep it fast
    cli.main(["--cifar-classes", "10"])
    out = capsys.readouterr().out
    assert "| `resnet56` | CIFAR 32x32 | 10 | 855,770 (0.86M) |" in out
    assert "| `ResNet18` | ImageNet 224x224 | 1000 | 11,689,512 (11.69M) |" in out
    assert out.count("\n") == 4


@pytest.mark.parametrize("name", sorted(PUBLIC_KEYS))
def test_public_parameter_names(name):
    sd = M.build_model(name, _classes(name)).state_dict()
    for key, shape in PUBLIC_KEYS[name].items():
        assert key in sd, key
        assert tuple(sd[key].shape) == shape, key


@pytest.mark.parametrize("name", CIFAR)
def test_cifar_forward_shape(name):
    model = M.build_model(name, CIFAR_CLASSES).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_features(x)
    assert isinstance(logits, torch.Tensor)
    assert logits.shape == (2, CIFAR_CLASSES)
    assert torch.isfinite(logits).all()
    assert feats.shape == (2, model.num_features)


# one model per family: ``in_channels`` and adaptive pooling are implemented once per family
IN_CHANNELS_CASES = [
    "resnet8",
    "wrn_16_1",
    "vgg8",
    "ShuffleV1",
    "ShuffleV2",
    "MobileNetV2",
    "ResNet50",
]


@pytest.mark.parametrize("name", IN_CHANNELS_CASES)
def test_cifar_in_channels_and_small_inputs(name):
    model = M.build_model(name, 10, in_channels=1).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 1, 16, 16))
    assert logits.shape == (2, 10)
    # the stem really takes one channel: RGB input is rejected
    with pytest.raises(RuntimeError):
        model(torch.randn(2, 3, 16, 16))


def test_imagenet_forward_small_input():
    model = M.build_model("ResNet18", IMAGENET_CLASSES).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(x)
        head = model.fc(model.forward_features(x))
    assert logits.shape == (2, IMAGENET_CLASSES)
    torch.testing.assert_close(logits, head)
    mv1 = M.build_model("MobileNetV1", 7).eval()
    with torch.no_grad():
        assert mv1(torch.randn(1, 3, 64, 64)).shape == (1, 7)


def test_forward_is_classifier_of_features():
    model = M.build_model("wrn_16_1", 5).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.fc(model.forward_features(x)))


def test_unknown_name_lists_known_names():
    with pytest.raises(KeyError, match=r"unknown model 'resnet9'.*resnet8x4.*wrn_40_2"):
        M.build_model("resnet9", 10)


def test_names_are_case_insensitive_and_keep_their_spelling():
    assert M.build_model("RESNET8", 10).model_name == "resnet8"
    assert M.build_model("resnet50", 10).model_name == "ResNet50"
    with pytest.raises(KeyError, match="'RESNET9'"):
        M.build_model("RESNET9", 10)


@pytest.mark.parametrize("bad", [0, -3, 2.0, True, "10"])
def test_bad_num_classes(bad):
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        M.build_model("resnet8", bad)


def test_unknown_option_is_an_error():
    with pytest.raises(TypeError, match=r"'resnet8' does not take \['width'\]"):
        M.build_model("resnet8", 10, width=2)
    with pytest.raises(TypeError, match=r"'ResNet18' does not take \['in_channels'\]"):
        M.build_model("ResNet18", 10, in_channels=1)


def test_register_model(monkeypatch):
    fresh = NamedRegistry("model")
    for name, factory in registry.MODEL_REGISTRY:
        fresh.register_as(name, factory)
    monkeypatch.setattr(registry, "MODEL_REGISTRY", fresh)

    @M.register_model("tiny_linear")
    def tiny_linear(num_classes: int, in_features: int = 4) -> torch.nn.Module:
        return torch.nn.Linear(in_features, num_classes)

    assert "tiny_linear" in M.available_models()
    model = M.build_model("tiny_linear", 3, in_features=6)
    assert model(torch.randn(2, 6)).shape == (2, 3)
    with pytest.raises(ValueError, match="already registered"):
        M.register_model("tiny_linear", lambda num_classes: torch.nn.Identity())
    M.register_model("tiny_linear", tiny_linear)  # same object again: allowed
    with pytest.raises(ValueError, match="already registered.*case-insensitive"):
        M.register_model("Tiny_Linear", lambda num_classes: torch.nn.Identity())
    assert M.build_model("TINY_LINEAR", 3).model_name == "tiny_linear"
    with pytest.raises(ValueError, match="non-empty string"):
        M.register_model("", tiny_linear)
    M.register_model("not_a_module", lambda num_classes: "oops")
    with pytest.raises(TypeError, match="returned str, not nn.Module"):
        M.build_model("not_a_module", 2)


# ----------------------------------------------------------------------------- checkpoints


def _trained_like(name: str, num_classes: int = 10) -> torch.nn.Module:
    """A model whose BN statistics differ from a fresh one, so a load is observable."""
    model = M.build_model(name, num_classes)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32))
    return model.eval()


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], msg=k)


def test_checkpoint_round_trip_model_key(tmp_path):
    src = _trained_like("resnet8")
    path = tmp_path / "ckpt_epoch_240.pth"
    torch.save({"epoch": 240, "model": src.state_dict(), "accuracy": 71.5}, path)
    dst = M.build_model("resnet8", 10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(dst(x), src(x))
    result = M.load_checkpoint(dst, path)
    assert result == M.CheckpointLoadResult()
    _assert_same_state(src, dst)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x))


def test_checkpoint_state_dict_key_and_dataparallel_prefix():
    src = _trained_like("wrn_16_1")
    wrapped = torch.nn.DataParallel(src).state_dict()
    assert all(k.startswith("module.") for k in wrapped)
    dst = M.build_model("wrn_16_1", 10)
    M.load_checkpoint(dst, {"state_dict": wrapped, "optimizer": {}})
    _assert_same_state(src, dst)
    dst2 = M.build_model("wrn_16_1", 10)
    M.load_checkpoint(dst2, src.state_dict())  # plain state dict
    _assert_same_state(src, dst2)


def test_checkpoint_without_num_batches_tracked():
    """Checkpoints of old PyTorch versions lack BN's ``num_batches_tracked``."""
    src = _trained_like("resnet8")
    old = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    dst = M.build_model("resnet8", 10)
    M.load_checkpoint(dst, {"model": old})
    torch.testing.assert_close(dst.bn1.running_mean, src.bn1.running_mean)


def test_wrong_architecture_is_a_clear_error():
    src = M.build_model("resnet8", 100).state_dict()
    dst = M.build_model("resnet14", 100)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(ValueError) as err:
        M.load_checkpoint(dst, {"model": src})
    msg = str(err.value)
    assert "'resnet14'" in msg and "wrong architecture" in msg
    assert "missing keys (e.g. layer1.1.conv1.weight" in msg
    # the model is left untouched by a failed strict load
    for k, v in dst.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_shape_mismatch_and_unexpected_keys_are_reported():
    src = M.build_model("resnet8", 10).state_dict()
    src["extra.weight"] = torch.zeros(1)
    dst = M.build_model("resnet8", 100)
    with pytest.raises(ValueError) as err:
        M.load_checkpoint(dst, {"model": src})
    msg = str(err.value)
    assert "2 shape mismatches" in msg
    assert "fc.weight: checkpoint (10, 64) vs model (100, 64)" in msg
    assert "1 unexpected keys (e.g. extra.weight)" in msg
    assert "missing" not in msg


def test_non_strict_load_reports_what_it_skipped(caplog):
    src = _trained_like("resnet8", num_classes=10)
    dst = M.build_model("resnet8", 100)
    with caplog.at_level(logging.WARNING, logger="luminet.models.checkpoint"):
        result = M.load_checkpoint(dst, {"model": src.state_dict()}, strict=False)
    assert [m.split(":")[0] for m in result.mismatched_keys] == ["fc.weight", "fc.bias"]
    assert result.missing_keys == ["fc.weight", "fc.bias"]
    assert result.unexpected_keys == []
    assert "partial load into resnet8" in caplog.text
    torch.testing.assert_close(dst.layer3[0].conv1.weight, src.layer3[0].conv1.weight)


def test_unreadable_checkpoints(tmp_path):
    model = M.build_model("resnet8", 10)
    with pytest.raises(ValueError, match=r"holds no state dict.*\['accuracy', 'epoch'\]"):
        M.load_checkpoint(model, {"epoch": 3, "accuracy": 0.5})
    with pytest.raises(ValueError, match="could not load checkpoint"):
        M.load_checkpoint(model, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="must be a path or a mapping"):
        M.load_checkpoint(model, [1, 2])


def test_models_import_without_detectron2():
    code = (
        "import sys, luminet.models as m; m.build_model('resnet8', 10); "
        "assert 'detectron2' not in sys.modules, 'detectron2 imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
