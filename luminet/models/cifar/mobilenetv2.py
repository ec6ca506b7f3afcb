"""MobileNetV2 for 32x32 inputs as used by CRD / DKD (registered as ``MobileNetV2``).

This is the CIFAR variant of the distillation benchmark ("mobile_half" in CRD): expansion 6,
width multiplier 0.5, a stride-2 stem, every inverted residual with an expansion 1x1 conv (also
for expansion 1), a 1280-channel head conv and a single ``classifier.0`` linear layer. Parameter
names (``conv1``, ``blocks.i.j.conv.k``, ``conv2``, ``classifier.0``) follow that definition.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..registry import register_model

__all__ = ["CifarMobileNetV2", "InvertedResidual"]

# (expansion, channels, repeats, first stride); ``None`` expansion means "use T"
_SETTING = (
    (1, 16, 1, 1),
    (None, 24, 2, 1),
    (None, 32, 3, 2),
    (None, 64, 4, 2),
    (None, 96, 3, 1),
    (None, 160, 3, 2),
    (None, 320, 1, 1),
)


def _conv_bn_relu(inp: int, oup: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, oup, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand (1x1) - depthwise 3x3 - project (1x1, linear); residual when shapes allow."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual stride must be 1 or 2; got {stride}")
        hidden = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class CifarMobileNetV2(nn.Module):
    """MobileNetV2 of the CIFAR distillation benchmark.

    Args:
        num_classes: number of logits.
        expansion: expansion ratio T of all but the first stage.
        width_mult: channel multiplier (the head conv stays at 1280 for ``width_mult <= 1``).
        in_channels: input image channels.
    """

    def __init__(
        self,
        num_classes: int,
        expansion: int = 6,
        width_mult: float = 0.5,
        in_channels: int = 3,
    ):
        super().__init__()
        channels = int(32 * width_mult)
        self.conv1 = _conv_bn_relu(in_channels, channels, 3, 2)
        self.blocks = nn.ModuleList()
        for t, c, n, s in _SETTING:
            out_channels = int(c * width_mult)
            stage = []
            for i in range(n):
                stage.append(
                    InvertedResidual(channels, out_channels, s if i == 0 else 1, t or expansion)
                )
                channels = out_channels
            self.blocks.append(nn.Sequential(*stage))
        self.last_channel = int(1280 * width_mult) if width_mult > 1.0 else 1280
        self.conv2 = _conv_bn_relu(channels, self.last_channel, 1, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(self.last_channel, num_classes))
        self.num_features = self.last_channel
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(N, 1280)`` fed to ``classifier``."""
        x = self.conv1(x)
        for stage in self.blocks:
            x = stage(x)
        x = self.conv2(x)
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)``."""
        return self.classifier(self.forward_features(x))


@register_model("MobileNetV2")
def mobilenetv2_cifar(num_classes: int, in_channels: int = 3) -> CifarMobileNetV2:
    """CIFAR MobileNetV2 of CRD / DKD: expansion 6, width 0.5."""
    return CifarMobileNetV2(num_classes, expansion=6, width_mult=0.5, in_channels=in_channels)
