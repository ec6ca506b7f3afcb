"""MobileNetV2 (Sandler et al., CVPR 2018) as a detectron2 backbone, with an FPN variant.

The layer layout follows ``torchvision.models.mobilenet_v2`` block for block, so ImageNet weights
from torchvision convert one-to-one (see :mod:`luminet_det.backbones.torchvision_conversion`).
Stages are named like detectron2's ResNet so that FPN configs written for ResNet work unchanged:

========  ======  ==========================  =======================  =====================
name      stride  torchvision ``features``    channels (width 1.0)     blocks
========  ======  ==========================  =======================  =====================
stem      2       ``[0:2]``                   16                       conv 3x3 + 1 IR (t=1)
res2      4       ``[2:4]``                   24                       2 IR
res3      8       ``[4:7]``                   32                       3 IR
res4      16      ``[7:14]``                  96                       4 IR (64) + 3 IR (96)
res5      32      ``[14:18]`` (+ ``[18]``)    320, or 1280 with        3 IR (160) + 1 IR (320)
                                              ``LAST_CONV``            (+ 1x1 conv to 1280)
========  ======  ==========================  =======================  =====================

IR = inverted residual block (1x1 expand, 3x3 depthwise, 1x1 linear projection).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.config import CfgNode
from detectron2.layers import CNNBlockBase, Conv2d, ShapeSpec, get_norm
from detectron2.modeling.backbone import BACKBONE_REGISTRY, FPN, Backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from torch import nn

__all__ = [
    "MOBILENETV2_STAGE_SETTINGS",
    "SUPPORTED_NORMS",
    "InvertedResidualBlock",
    "PointwiseConvBlock",
    "MobileNetV2Stem",
    "MobileNetV2",
    "make_divisible",
    "build_mobilenetv2_backbone",
    "build_mobilenetv2_fpn_backbone",
]

logger = logging.getLogger(__name__)

# (stage name, [(expand ratio t, output channels c, repeats n, first stride s), ...]) for the
# inverted residual blocks after the stem's first conv. Same (t, c, n, s) table as the paper and
# torchvision; grouped into detectron2-style stages by output stride.
MOBILENETV2_STAGE_SETTINGS: tuple[tuple[str, tuple[tuple[int, int, int, int], ...]], ...] = (
    ("stem", ((1, 16, 1, 1),)),
    ("res2", ((6, 24, 2, 2),)),
    ("res3", ((6, 32, 3, 2),)),
    ("res4", ((6, 64, 4, 2), (6, 96, 3, 1))),
    ("res5", ((6, 160, 3, 2), (6, 320, 1, 1))),
)
STEM_CHANNELS = 32
LAST_CONV_CHANNELS = 1280
STAGE_NAMES = ("res2", "res3", "res4", "res5")
SUPPORTED_NORMS = ("FrozenBN", "BN", "SyncBN")


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to the nearest multiple of ``divisor`` (MobileNet convention).

    The result never drops below ``divisor`` nor more than 10% below ``value``. This is the
    rounding used by the reference MobileNetV2, so width-multiplied models keep the same channel
    counts as torchvision's ``mobilenet_v2(width_mult=...)``.

    Args:
        value: unrounded channel count (e.g. ``32 * width_mult``).
        divisor: the channel count is a multiple of this.

    Returns:
        The rounded channel count.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _init_conv(conv: nn.Module) -> None:
    weight_init.c2_msra_fill(conv)


class InvertedResidualBlock(CNNBlockBase):
    """MobileNetV2 inverted residual: 1x1 expand (ReLU6), 3x3 depthwise (ReLU6), 1x1 projection.

    The expansion conv is omitted when ``expand_ratio`` is 1. The input is added to the output when
    the stride is 1 and the channel counts match. Submodules are named ``expand``, ``depthwise``
    and ``project``; each is a detectron2 ``Conv2d`` with its norm at ``<name>.norm``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, stride: int, expand_ratio: int, norm: str
    ):
        """
        Args:
            in_channels: input channels.
            out_channels: output channels.
            stride: stride of the depthwise conv, 1 or 2.
            expand_ratio: hidden channels = ``in_channels * expand_ratio``.
            norm: normalization for every conv, see :func:`detectron2.layers.get_norm`.
        """
        super().__init__(in_channels, out_channels, stride)
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidualBlock stride must be 1 or 2, got {stride}")
        if expand_ratio < 1:
            raise ValueError(f"InvertedResidualBlock expand_ratio must be >= 1, got {expand_ratio}")
        hidden = int(round(in_channels * expand_ratio))
        self.use_residual = stride == 1 and in_channels == out_channels
        if expand_ratio != 1:
            self.expand = Conv2d(
                in_channels, hidden, kernel_size=1, bias=False, norm=get_norm(norm, hidden)
            )
        else:
            self.expand = None
        self.depthwise = Conv2d(
            hidden,
            hidden,
            kernel_size=3,
            stride=stride,
            padding=1,
            groups=hidden,
            bias=False,
            norm=get_norm(norm, hidden),
        )
        self.project = Conv2d(
            hidden, out_channels, kernel_size=1, bias=False, norm=get_norm(norm, out_channels)
        )
        for layer in (self.expand, self.depthwise, self.project):
            if layer is not None:
                _init_conv(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.expand is not None:
            out = F.relu6(self.expand(out))
        out = F.relu6(self.depthwise(out))
        out = self.project(out)
        if self.use_residual:
            out = out + x
        return out


class PointwiseConvBlock(CNNBlockBase):
    """1x1 conv + norm + ReLU6: MobileNetV2's final feature conv (320 -> 1280 at width 1.0)."""

    def __init__(self, in_channels: int, out_channels: int, *, norm: str):
        """
        Args:
            in_channels: input channels.
            out_channels: output channels.
            norm: normalization, see :func:`detectron2.layers.get_norm`.
        """
        super().__init__(in_channels, out_channels, 1)
        self.conv = Conv2d(
            in_channels, out_channels, kernel_size=1, bias=False, norm=get_norm(norm, out_channels)
        )
        _init_conv(self.conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self.conv(x))


class MobileNetV2Stem(CNNBlockBase):
    """Stride-2 stem: 3x3 conv (ReLU6) followed by the first inverted residual block (t=1)."""

    def __init__(self, in_channels: int, stem_channels: int, out_channels: int, *, norm: str):
        """
        Args:
            in_channels: image channels.
            stem_channels: output channels of the first 3x3 conv.
            out_channels: output channels of the stem's inverted residual block.
            norm: normalization, see :func:`detectron2.layers.get_norm`.
        """
        super().__init__(in_channels, out_channels, 2)
        self.conv1 = Conv2d(
            in_channels,
            stem_channels,
            kernel_size=3,
            stride=2,
            padding=1,
            bias=False,
            norm=get_norm(norm, stem_channels),
        )
        _init_conv(self.conv1)
        self.block = InvertedResidualBlock(
            stem_channels, out_channels, stride=1, expand_ratio=1, norm=norm
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(F.relu6(self.conv1(x)))


class MobileNetV2(Backbone):
    """MobileNetV2 feature extractor with outputs ``stem``, ``res2`` .. ``res5`` (strides 2..32)."""

    def __init__(
        self,
        *,
        in_channels: int = 3,
        width_mult: float = 1.0,
        norm: str = "BN",
        out_features: Sequence[str] = STAGE_NAMES,
        freeze_at: int = 0,
        last_conv: bool = True,
    ):
        """
        Args:
            in_channels: image channels.
            width_mult: channel multiplier applied to every layer (torchvision's ``width_mult``).
            norm: "FrozenBN", "BN" or "SyncBN".
            out_features: names of the features returned by ``forward``, any of "stem", "res2",
                "res3", "res4", "res5". Stages after the last requested one are not built.
            freeze_at: 0 trains everything; 1 freezes the stem; k >= 2 freezes the stem and
                res2 .. res{k} (detectron2's ``MODEL.BACKBONE.FREEZE_AT`` convention). Frozen
                parts get ``requires_grad=False`` and FrozenBatchNorm2d.
            last_conv: append the final 1x1 conv (to ``1280 * max(1, width_mult)`` channels) to
                res5, as torchvision's ``features[18]``.
        """
        super().__init__()
        if norm not in SUPPORTED_NORMS:
            raise ValueError(f"MobileNetV2 norm must be one of {SUPPORTED_NORMS}, got {norm!r}")
        if width_mult <= 0:
            raise ValueError(f"MobileNetV2 width_mult must be > 0, got {width_mult}")
        all_names = ("stem",) + STAGE_NAMES
        out_features = list(out_features)
        if not out_features:
            raise ValueError("MobileNetV2 out_features must not be empty")
        for name in out_features:
            if name not in all_names:
                raise ValueError(
                    f"Unknown MobileNetV2 out feature {name!r}; available: {list(all_names)}"
                )
        if not 0 <= freeze_at <= len(all_names):
            raise ValueError(f"MobileNetV2 freeze_at must be in [0, 5], got {freeze_at}")

        self.width_mult = width_mult
        self.last_conv = last_conv
        self._out_features = out_features
        num_stages = max(all_names.index(f) for f in out_features)

        settings = dict(MOBILENETV2_STAGE_SETTINGS)
        stem_out = make_divisible(settings["stem"][0][1] * width_mult)
        self.stem = MobileNetV2Stem(
            in_channels, make_divisible(STEM_CHANNELS * width_mult), stem_out, norm=norm
        )
        self._out_feature_strides = {"stem": self.stem.stride}
        self._out_feature_channels = {"stem": stem_out}

        self.stage_names: list[str] = []
        self.stages: list[nn.Sequential] = []
        current_stride, channels = self.stem.stride, stem_out
        for name in STAGE_NAMES[:num_stages]:
            blocks: list[CNNBlockBase] = []
            for expand_ratio, c, repeats, first_stride in settings[name]:
                out_channels = make_divisible(c * width_mult)
                for i in range(repeats):
                    blocks.append(
                        InvertedResidualBlock(
                            channels,
                            out_channels,
                            stride=first_stride if i == 0 else 1,
                            expand_ratio=expand_ratio,
                            norm=norm,
                        )
                    )
                    channels = out_channels
            if name == "res5" and last_conv:
                out_channels = make_divisible(LAST_CONV_CHANNELS * max(1.0, width_mult))
                blocks.append(PointwiseConvBlock(channels, out_channels, norm=norm))
                channels = out_channels
            stage = nn.Sequential(*blocks)
            self.add_module(name, stage)
            self.stage_names.append(name)
            self.stages.append(stage)
            for block in blocks:
                current_stride *= block.stride
            self._out_feature_strides[name] = current_stride
            self._out_feature_channels[name] = channels
        self.freeze(freeze_at)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        Args:
            x: images of shape (N, C, H, W).

        Returns:
            The requested features by name.
        """
        if x.dim() != 4:
            raise ValueError(f"MobileNetV2 takes an (N, C, H, W) input, got shape {tuple(x.shape)}")
        outputs = {}
        x = self.stem(x)
        if "stem" in self._out_features:
            outputs["stem"] = x
        for name, stage in zip(self.stage_names, self.stages):
            x = stage(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }

    def freeze(self, freeze_at: int = 0) -> MobileNetV2:
        """Freeze the stem (``freeze_at >= 1``) and stages res2 .. res{freeze_at}.

        Args:
            freeze_at: number of leading parts to freeze, counting the stem as the first.

        Returns:
            This module.
        """
        if freeze_at >= 1:
            self.stem.freeze()
        for idx, stage in enumerate(self.stages, start=2):
            if freeze_at >= idx:
                for block in stage.children():
                    block.freeze()
        return self


@BACKBONE_REGISTRY.register()
def build_mobilenetv2_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> MobileNetV2:
    """Build a MobileNetV2 from ``cfg.MODEL.MOBILENETV2`` (see :func:`add_mobilenetv2_config`).

    Args:
        cfg: a detectron2 config with the MobileNetV2 keys added.
        input_shape: shape of the image input (only ``channels`` is used).

    Returns:
        The backbone; its outputs are ``cfg.MODEL.MOBILENETV2.OUT_FEATURES``.
    """
    if "MOBILENETV2" not in cfg.MODEL:
        raise KeyError(
            "cfg.MODEL.MOBILENETV2 is missing: call "
            "luminet_det.backbones.add_mobilenetv2_config(cfg) before building the backbone"
        )
    mcfg = cfg.MODEL.MOBILENETV2
    return MobileNetV2(
        in_channels=input_shape.channels,
        width_mult=mcfg.WIDTH_MULT,
        norm=mcfg.NORM,
        out_features=mcfg.OUT_FEATURES,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
        last_conv=mcfg.LAST_CONV,
    )


@BACKBONE_REGISTRY.register()
def build_mobilenetv2_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> FPN:
    """MobileNetV2 bottom-up + FPN (``cfg.MODEL.FPN``) + a max-pooled extra level (p6).

    Args:
        cfg: a detectron2 config with the MobileNetV2 keys added.
        input_shape: shape of the image input.

    Returns:
        An FPN backbone with outputs p2..p6 for IN_FEATURES res2..res5.
    """
    bottom_up = build_mobilenetv2_backbone(cfg, input_shape)
    in_features = list(cfg.MODEL.FPN.IN_FEATURES)
    available = list(bottom_up.output_shape())
    if not in_features:
        raise ValueError(
            "cfg.MODEL.FPN.IN_FEATURES is empty; set e.g. ['res2', 'res3', 'res4', 'res5']"
        )
    missing = [f for f in in_features if f not in available]
    if missing:
        raise ValueError(
            f"cfg.MODEL.FPN.IN_FEATURES {in_features} asks for {missing}, which "
            f"cfg.MODEL.MOBILENETV2.OUT_FEATURES {available} does not produce"
        )
    return FPN(
        bottom_up=bottom_up,
        in_features=in_features,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
