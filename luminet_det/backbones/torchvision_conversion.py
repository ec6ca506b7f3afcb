"""Convert torchvision ImageNet classifiers (ResNet, MobileNetV2) to detectron2 backbone weights.

The converted keys are final detectron2 names (``stem.conv1.norm.running_mean``,
``res3.0.shortcut.weight``, ...) under a prefix (``backbone.bottom_up.`` for an FPN model), so
``DetectionCheckpointer`` loads them with ``matching_heuristics`` off. Every torchvision key is
either mapped or explicitly dropped (classifier head, ``num_batches_tracked``); anything else
raises, and :func:`verify_against_detectron2` checks the result against a freshly built
detectron2 backbone key by key and shape by shape.

Configs that load converted ResNet weights need ``MODEL.RESNETS.STRIDE_IN_1X1 False`` (torchvision
strides the 3x3 conv), ``INPUT.FORMAT "RGB"`` and the torchvision pixel statistics
:data:`TORCHVISION_PIXEL_MEAN` / :data:`TORCHVISION_PIXEL_STD`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping

import numpy as np
import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.resnet import build_resnet_backbone

from .config import add_mobilenetv2_config
from .mobilenetv2 import MOBILENETV2_STAGE_SETTINGS, build_mobilenetv2_backbone

__all__ = [
    "SUPPORTED_MODELS",
    "RESNET_DEPTHS",
    "TORCHVISION_PIXEL_MEAN",
    "TORCHVISION_PIXEL_STD",
    "convert_resnet",
    "convert_mobilenet_v2",
    "convert_torchvision_state_dict",
    "make_detectron2_checkpoint",
    "load_torchvision_state_dict",
    "torchvision_cache_path",
    "detectron2_backbone_config",
    "verify_against_detectron2",
]

logger = logging.getLogger(__name__)

RESNET_DEPTHS = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101}
SUPPORTED_MODELS = tuple(RESNET_DEPTHS) + ("mobilenet_v2",)
# ImageNet statistics used by every torchvision classifier, in 0-255 RGB units.
TORCHVISION_PIXEL_MEAN = [123.675, 116.28, 103.53]
TORCHVISION_PIXEL_STD = [58.395, 57.12, 57.375]

_NORM_FIELDS = "weight|bias|running_mean|running_var"
_RESNET_RULES = (
    (re.compile(r"^conv1\.weight$"), lambda m: "stem.conv1.weight"),
    (re.compile(rf"^bn1\.({_NORM_FIELDS})$"), lambda m: f"stem.conv1.norm.{m[1]}"),
    (
        re.compile(r"^layer([1-4])\.(\d+)\.conv([1-3])\.weight$"),
        lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.weight",
    ),
    (
        re.compile(rf"^layer([1-4])\.(\d+)\.bn([1-3])\.({_NORM_FIELDS})$"),
        lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.norm.{m[4]}",
    ),
    (
        re.compile(r"^layer([1-4])\.(\d+)\.downsample\.0\.weight$"),
        lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut.weight",
    ),
    (
        re.compile(rf"^layer([1-4])\.(\d+)\.downsample\.1\.({_NORM_FIELDS})$"),
        lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut.norm.{m[3]}",
    ),
)
# torchvision keys that have no counterpart in a detection backbone.
_DROPPED = re.compile(r"(^fc\.|^classifier\.|\.num_batches_tracked$)")


def _check_state_dict(state_dict: Mapping[str, torch.Tensor]) -> None:
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise ValueError("Expected a non-empty state_dict (a mapping of names to tensors)")
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"state_dict entry {key!r} is a {type(value).__name__}, not a tensor")


def _log_dropped(dropped: list[str]) -> None:
    if dropped:
        heads = sorted({k for k in dropped if not k.endswith("num_batches_tracked")})
        logger.info(
            "Dropped %d torchvision entries with no detection counterpart: classifier %s and "
            "%d num_batches_tracked counters",
            len(dropped),
            heads,
            len(dropped) - len(heads),
        )


def convert_resnet(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision ResNet state_dict to detectron2 ``ResNet`` names (no prefix).

    Args:
        state_dict: ``torchvision.models.resnet{18,34,50,101}().state_dict()`` or weights of
            the same layout.

    Returns:
        Tensors keyed by detectron2 names (``stem.conv1.weight``, ``res2.0.conv1.norm.bias``,
        ``res3.0.shortcut.weight``, ...). The ``fc`` head and ``num_batches_tracked`` are dropped.

    Raises:
        KeyError: for a key that is neither mapped nor a known dropped entry.
    """
    _check_state_dict(state_dict)
    out, dropped = {}, []
    for key, value in state_dict.items():
        if _DROPPED.search(key):
            dropped.append(key)
            continue
        for pattern, rename in _RESNET_RULES:
            match = pattern.match(key)
            if match:
                out[rename(match)] = value
                break
        else:
            raise KeyError(f"Unexpected key {key!r} in a torchvision ResNet state_dict")
    _log_dropped(dropped)
    return out


def _mobilenet_v2_block_names() -> list[tuple[str, int | None]]:
    """detectron2 module name and expand ratio for each torchvision ``features[i]``.

    The expand ratio is None for the plain convs (``features[0]`` and ``features[-1]``).
    """
    names: list[tuple[str, int | None]] = [("stem.conv1", None)]
    for stage, settings in MOBILENETV2_STAGE_SETTINGS:
        index = 0
        for expand_ratio, _, repeats, _ in settings:
            for _ in range(repeats):
                names.append(
                    ("stem.block" if stage == "stem" else f"{stage}.{index}", expand_ratio)
                )
                index += 1
    names.append((f"res5.{index}.conv", None))
    return names


def _mobilenet_v2_submodule(inner: str, expand_ratio: int | None) -> str | None:
    """Map a module path inside torchvision ``features[i]`` to our block's module path."""
    if expand_ratio is None:
        return {"0": "", "1": "norm"}.get(inner)
    if expand_ratio == 1:
        table = {
            "conv.0.0": "depthwise",
            "conv.0.1": "depthwise.norm",
            "conv.1": "project",
            "conv.2": "project.norm",
        }
    else:
        table = {
            "conv.0.0": "expand",
            "conv.0.1": "expand.norm",
            "conv.1.0": "depthwise",
            "conv.1.1": "depthwise.norm",
            "conv.2": "project",
            "conv.3": "project.norm",
        }
    return table.get(inner)


def convert_mobilenet_v2(
    state_dict: Mapping[str, torch.Tensor], *, last_conv: bool = True
) -> dict[str, torch.Tensor]:
    """Rename a torchvision MobileNetV2 state_dict to :class:`MobileNetV2` names (no prefix).

    Args:
        state_dict: ``torchvision.models.mobilenet_v2(width_mult=...).state_dict()``.
        last_conv: keep ``features[18]`` (the 1x1 conv to 1280 channels) as ``res5.4.conv``;
            set False for a backbone built with ``MODEL.MOBILENETV2.LAST_CONV False`` (the
            dropped tensors are logged).

    Returns:
        Tensors keyed by backbone names (``stem.conv1.weight``, ``res2.0.expand.norm.bias``, ...).
        The classifier and ``num_batches_tracked`` are dropped.

    Raises:
        KeyError: for a key that is neither mapped nor a known dropped entry.
    """
    _check_state_dict(state_dict)
    blocks = _mobilenet_v2_block_names()
    key_re = re.compile(rf"^features\.(\d+)\.(.+)\.(weight|{_NORM_FIELDS})$")
    out, dropped, skipped_last = {}, [], []
    for key, value in state_dict.items():
        if _DROPPED.search(key):
            dropped.append(key)
            continue
        match = key_re.match(key)
        if match is None or int(match[1]) >= len(blocks):
            raise KeyError(f"Unexpected key {key!r} in a torchvision MobileNetV2 state_dict")
        index = int(match[1])
        name, expand_ratio = blocks[index]
        inner = _mobilenet_v2_submodule(match[2], expand_ratio)
        if inner is None:
            raise KeyError(
                f"Unexpected key {key!r} in a torchvision MobileNetV2 state_dict "
                f"(features[{index}] maps to {name})"
            )
        if index == len(blocks) - 1 and not last_conv:
            skipped_last.append(key)
            continue
        out[".".join(p for p in (name, inner, match[3]) if p)] = value
    _log_dropped(dropped)
    if skipped_last:
        logger.info("last_conv=False: dropped %d features[18] tensors", len(skipped_last))
    return out


def convert_torchvision_state_dict(
    model: str,
    state_dict: Mapping[str, torch.Tensor],
    *,
    prefix: str = "backbone.bottom_up.",
    last_conv: bool = True,
) -> dict[str, np.ndarray]:
    """Convert a torchvision classifier state_dict to prefixed detectron2 names as numpy arrays.

    Args:
        model: one of :data:`SUPPORTED_MODELS`.
        state_dict: the torchvision weights.
        prefix: prepended to every key; ``backbone.bottom_up.`` for FPN models,
            ``backbone.`` for a plain backbone, ``""`` for the bare backbone module.
        last_conv: MobileNetV2 only, see :func:`convert_mobilenet_v2`.

    Returns:
        ``{prefix + name: float32 numpy array}``.
    """
    if model in RESNET_DEPTHS:
        converted = convert_resnet(state_dict)
    elif model == "mobilenet_v2":
        converted = convert_mobilenet_v2(state_dict, last_conv=last_conv)
    else:
        raise ValueError(f"Unsupported model {model!r}; choose one of {SUPPORTED_MODELS}")
    return {
        prefix + k: v.detach().cpu().to(torch.float32).numpy().copy() for k, v in converted.items()
    }


def make_detectron2_checkpoint(weights: dict[str, np.ndarray], author: str) -> dict:
    """Wrap converted weights in the dict that ``DetectionCheckpointer`` reads from a ``.pkl``.

    Args:
        weights: output of :func:`convert_torchvision_state_dict`.
        author: provenance string, logged by detectron2 when loading.

    Returns:
        ``{"model": weights, "__author__": author, "matching_heuristics": False}``.
    """
    return {"model": weights, "__author__": author, "matching_heuristics": False}


def torchvision_cache_path(model: str, weights: str = "DEFAULT") -> str:
    """Where ``torchvision.models`` caches the given ImageNet weights (nothing is downloaded).

    Args:
        model: one of :data:`SUPPORTED_MODELS`.
        weights: a weights enum member name such as ``IMAGENET1K_V1``, or ``DEFAULT``.

    Returns:
        The path under ``torch.hub.get_dir()/checkpoints`` (it may not exist).
    """
    from torchvision.models import get_model_weights

    if model not in SUPPORTED_MODELS:
        raise ValueError(f"Unsupported model {model!r}; choose one of {SUPPORTED_MODELS}")
    enum = get_model_weights(model)
    try:
        member = enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except KeyError:
        raise KeyError(
            f"Unknown weights {weights!r} for {model}; available: {[w.name for w in enum]}"
        ) from None
    filename = os.path.basename(member.url)
    return os.path.join(torch.hub.get_dir(), "checkpoints", filename)


def load_torchvision_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Load a torchvision ``.pth`` (a state_dict, or a dict holding one under
    ``state_dict``/``model``) onto the CPU without executing pickled code.

    Args:
        path: file path.

    Returns:
        The state_dict.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No torchvision weights file at {path!r}")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(data, Mapping):
        for key in ("state_dict", "model"):
            if key in data and isinstance(data[key], Mapping):
                data = data[key]
                break
    _check_state_dict(data)
    return dict(data)


def detectron2_backbone_config(
    model: str, *, width_mult: float = 1.0, last_conv: bool = True
) -> CfgNode:
    """A detectron2 config whose bottom-up backbone matches converted torchvision weights.

    Sets the keys torchvision weights need: ``MODEL.RESNETS.STRIDE_IN_1X1 False``,
    ``INPUT.FORMAT "RGB"``, torchvision ``PIXEL_MEAN``/``PIXEL_STD``, ``DEPTH`` and (R18/R34)
    ``RES2_OUT_CHANNELS 64``; or the MobileNetV2 keys. Norm is FrozenBN, device CPU.

    Args:
        model: one of :data:`SUPPORTED_MODELS`.
        width_mult: MobileNetV2 width multiplier.
        last_conv: MobileNetV2 ``LAST_CONV``.

    Returns:
        A new config (``MODEL.BACKBONE.NAME`` is the bottom-up builder, without FPN).
    """
    cfg = get_cfg()
    add_mobilenetv2_config(cfg)
    cfg.MODEL.DEVICE = "cpu"
    cfg.INPUT.FORMAT = "RGB"
    cfg.MODEL.PIXEL_MEAN = list(TORCHVISION_PIXEL_MEAN)
    cfg.MODEL.PIXEL_STD = list(TORCHVISION_PIXEL_STD)
    if model in RESNET_DEPTHS:
        depth = RESNET_DEPTHS[model]
        cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
        cfg.MODEL.RESNETS.DEPTH = depth
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64 if depth in (18, 34) else 256
        cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
        cfg.MODEL.RESNETS.NORM = "FrozenBN"
        cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    elif model == "mobilenet_v2":
        cfg.MODEL.BACKBONE.NAME = "build_mobilenetv2_backbone"
        cfg.MODEL.MOBILENETV2.WIDTH_MULT = width_mult
        cfg.MODEL.MOBILENETV2.LAST_CONV = last_conv
        cfg.MODEL.MOBILENETV2.NORM = "FrozenBN"
    else:
        raise ValueError(f"Unsupported model {model!r}; choose one of {SUPPORTED_MODELS}")
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    return cfg


def verify_against_detectron2(
    model: str,
    weights: Mapping[str, np.ndarray],
    *,
    prefix: str = "backbone.bottom_up.",
    width_mult: float = 1.0,
    last_conv: bool = True,
) -> None:
    """Check converted weights cover a detectron2 bottom-up backbone exactly (names and shapes).

    Args:
        model: one of :data:`SUPPORTED_MODELS`.
        weights: output of :func:`convert_torchvision_state_dict`.
        prefix: the prefix used in the conversion.
        width_mult: MobileNetV2 width multiplier of the weights.
        last_conv: MobileNetV2 ``LAST_CONV`` used in the conversion.

    Raises:
        ValueError: listing missing, unexpected and wrongly shaped keys.
    """
    cfg = detectron2_backbone_config(model, width_mult=width_mult, last_conv=last_conv)
    shape = ShapeSpec(channels=3)
    if model in RESNET_DEPTHS:
        backbone = build_resnet_backbone(cfg, shape)
    else:
        backbone = build_mobilenetv2_backbone(cfg, shape)
    expected = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
    stripped = {}
    unexpected = []
    for key, value in weights.items():
        if key.startswith(prefix):
            stripped[key[len(prefix) :]] = tuple(value.shape)
        else:
            unexpected.append(key)
    missing = sorted(set(expected) - set(stripped))
    unexpected += sorted(set(stripped) - set(expected))
    wrong = [
        f"{k}: {stripped[k]} vs {expected[k]}"
        for k in sorted(set(stripped) & set(expected))
        if stripped[k] != expected[k]
    ]
    if missing or unexpected or wrong:
        raise ValueError(
            f"Converted {model} weights do not match detectron2's backbone: "
            f"missing {missing[:10]} ({len(missing)}), unexpected {unexpected[:10]} "
            f"({len(unexpected)}), wrong shapes {wrong[:10]} ({len(wrong)})"
        )
    logger.info("Verified %d tensors against detectron2's %s backbone", len(expected), model)
