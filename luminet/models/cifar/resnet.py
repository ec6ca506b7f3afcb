"""CIFAR ResNets (He et al. 2016, Sec. 4.2) as defined in the CIFAR distillation benchmark of CRD.

Structure and parameter names follow the CRD / DKD definitions (``conv1``/``bn1`` stem,
``layer1..3`` of basic blocks, ``fc`` head) so their public teacher checkpoints load strictly.
``resnetN`` uses widths (16, 16, 32, 64); ``resnetNx4`` the four-times wider (32, 64, 128, 256).
The final pooling is adaptive: identical to the fixed 8x8 average pool on 32x32 inputs, and it also
accepts smaller inputs (e.g. 16x16 digits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_model

__all__ = ["CifarResNet", "BasicBlock"]


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN; projection shortcut (``downsample``) when the shape changes."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs: 3x3 stem, three stages (strides 1, 2, 2), global pool, ``fc``.

    Args:
        depth: total depth; ``(depth - 2)`` must be divisible by 6 (basic blocks).
        widths: channels of (stem, stage1, stage2, stage3).
        num_classes: number of logits.
        in_channels: input image channels (3 for RGB, 1 for grayscale).
    """

    def __init__(
        self, depth: int, widths: tuple[int, int, int, int], num_classes: int, in_channels: int = 3
    ):
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1; got {depth}")
        n = (depth - 2) // 6
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(widths[1], n, stride=1)
        self.layer2 = self._make_layer(widths[2], n, stride=2)
        self.layer3 = self._make_layer(widths[3], n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3] * BasicBlock.expansion, num_classes)
        self.num_features = self.fc.in_features
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * BasicBlock.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(N, num_features)`` fed to ``fc``."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)``."""
        return self.fc(self.forward_features(x))


_NARROW = (16, 16, 32, 64)
_WIDE = (32, 64, 128, 256)


def _register(name: str, depth: int, widths: tuple[int, int, int, int]) -> None:
    def factory(num_classes: int, in_channels: int = 3) -> CifarResNet:
        return CifarResNet(depth, widths, num_classes=num_classes, in_channels=in_channels)

    factory.__name__ = name
    factory.__doc__ = f"CIFAR ResNet-{depth}, stage widths {widths[1:]}."
    register_model(name, factory)


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _register(f"resnet{_depth}", _depth, _NARROW)
_register("resnet8x4", 8, _WIDE)
_register("resnet32x4", 32, _WIDE)
