"""MobileNetV1 (Howard et al. 2017), width 1.0, as used by ReviewKD / DKD (ResNet-50 -> MV1).

A stride-2 3x3 conv stem, 13 depthwise-separable units, global average pool and ``fc``; all under
``model.i`` (unit ``i`` = ``Sequential(dw conv, BN, ReLU, pw conv, BN, ReLU)``) so the published
checkpoints of those code bases load strictly. The pool (``model.14``, no parameters) is adaptive,
so inputs other than 224x224 also work.
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import register_model

__all__ = ["MobileNetV1"]

# (output channels, stride) of the depthwise-separable units
_UNITS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


def _separable(inp: int, oup: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        nn.ReLU(inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(inplace=True),
    )


class MobileNetV1(nn.Module):
    """MobileNetV1 for ImageNet-sized inputs.

    Args:
        num_classes: number of logits.
        in_channels: input image channels.
    """

    def __init__(self, num_classes: int, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(in_channels, 32, 3, 2, 1, bias=False),
                nn.BatchNorm2d(32),
                nn.ReLU(inplace=True),
            )
        ]
        prev = 32
        for out, stride in _UNITS:
            layers.append(_separable(prev, out, stride))
            prev = out
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.model = nn.Sequential(*layers)
        self.fc = nn.Linear(prev, num_classes)
        self.num_features = prev

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(N, 1024)`` fed to ``fc``."""
        return torch.flatten(self.model(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)``."""
        return self.fc(self.forward_features(x))


@register_model("MobileNetV1")
def mobilenetv1_imagenet(num_classes: int, in_channels: int = 3) -> MobileNetV1:
    """MobileNetV1 (width 1.0) of ReviewKD / DKD."""
    return MobileNetV1(num_classes, in_channels=in_channels)
