"""The CIFAR ResNet-50 of CRD / DKD (registered as ``ResNet50``).

Bottleneck ResNet-50 (3, 4, 6, 3 blocks) with a 3x3 stride-1 stem and no max pool, so a 32x32
input reaches the last stage at 4x4. Parameter names (``conv1``, ``bn1``, ``layerK.i.convJ/bnJ``,
``layerK.i.shortcut``, ``linear``) follow that definition. For the ImageNet ResNet-50 use
``ResNet50_imagenet``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_model

__all__ = ["CifarBottleneckResNet", "Bottleneck"]


class Bottleneck(nn.Module):
    """1x1 - 3x3 (strided) - 1x1 (x4 channels) with BN; projection ``shortcut`` if shapes change."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class CifarBottleneckResNet(nn.Module):
    """Four-stage bottleneck ResNet for 32x32 inputs.

    Args:
        num_blocks: blocks per stage.
        num_classes: number of logits.
        in_channels: input image channels.
    """

    def __init__(
        self, num_blocks: tuple[int, int, int, int], num_classes: int, in_channels: int = 3
    ):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(64, num_blocks[0], 1)
        self.layer2 = self._make_layer(128, num_blocks[1], 2)
        self.layer3 = self._make_layer(256, num_blocks[2], 2)
        self.layer4 = self._make_layer(512, num_blocks[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(512 * Bottleneck.expansion, num_classes)
        self.num_features = self.linear.in_features
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, n: int, stride: int) -> nn.Sequential:
        blocks = []
        for i in range(n):
            blocks.append(Bottleneck(self.in_planes, planes, stride if i == 0 else 1))
            self.in_planes = planes * Bottleneck.expansion
        return nn.Sequential(*blocks)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(N, 2048)`` fed to ``linear``."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)``."""
        return self.linear(self.forward_features(x))


@register_model("ResNet50")
def resnet50_cifar(num_classes: int, in_channels: int = 3) -> CifarBottleneckResNet:
    """CIFAR ResNet-50 (bottleneck, 3-4-6-3) of CRD / DKD."""
    return CifarBottleneckResNet((3, 4, 6, 3), num_classes=num_classes, in_channels=in_channels)
