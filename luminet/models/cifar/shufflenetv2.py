"""ShuffleNetV2 (Ma et al. 2018), 1.0x, for 32x32 inputs as in CRD / DKD (name ``ShuffleV2``).

Stage widths (116, 232, 464), (3, 7, 3) basic units after a down-sampling unit per stage, a 1x1
stem conv with 24 channels and no max pool, a 1024-channel head conv. Parameter names (``conv1``,
``bn1``, ``layerK.0.conv1..5`` for the down-sampling unit, ``layerK.i.conv1..3``, ``conv2``,
``bn2``, ``linear``) follow that definition.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_model
from .shufflenetv1 import channel_shuffle

__all__ = ["CifarShuffleNetV2"]


class _BasicUnit(nn.Module):
    """Split channels in half; transform the second half (1x1, dw 3x3, 1x1); concat; shuffle."""

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.half = half
        self.conv1 = nn.Conv2d(half, half, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, half, 3, stride=1, padding=1, groups=half, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = nn.Conv2d(half, half, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x[:, : self.half], x[:, self.half :]
        out = F.relu(self.bn1(self.conv1(x2)))
        out = self.bn2(self.conv2(out))
        out = F.relu(self.bn3(self.conv3(out)))
        return channel_shuffle(torch.cat([x1, out], 1), 2)


class _DownUnit(nn.Module):
    """Two stride-2 branches on the full input (dw-1x1 and 1x1-dw-1x1), concatenated, shuffled."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        mid = out_channels // 2
        # left branch
        self.conv1 = nn.Conv2d(
            in_channels, in_channels, 3, stride=2, padding=1, groups=in_channels, bias=False
        )
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        # right branch
        self.conv3 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = nn.Conv2d(mid, mid, 3, stride=2, padding=1, groups=mid, bias=False)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = nn.Conv2d(mid, mid, 1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = F.relu(self.bn3(self.conv3(x)))
        right = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(right)))))
        return channel_shuffle(torch.cat([left, right], 1), 2)


class CifarShuffleNetV2(nn.Module):
    """ShuffleNetV2 for small inputs.

    Args:
        num_classes: number of logits.
        out_channels: widths of the three stages and of the head conv.
        num_blocks: basic units per stage (after its down-sampling unit).
        in_channels: input image channels.
    """

    def __init__(
        self,
        num_classes: int,
        out_channels: tuple[int, int, int, int] = (116, 232, 464, 1024),
        num_blocks: tuple[int, int, int] = (3, 7, 3),
        in_channels: int = 3,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        prev = 24
        for k, (width, n) in enumerate(zip(out_channels[:3], num_blocks), start=1):
            units = [_DownUnit(prev, width)] + [_BasicUnit(width) for _ in range(n)]
            setattr(self, f"layer{k}", nn.Sequential(*units))
            prev = width
        self.conv2 = nn.Conv2d(prev, out_channels[3], 1, stride=1, padding=0, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels[3])
        self.linear = nn.Linear(out_channels[3], num_classes)
        self.num_features = out_channels[3]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(N, 1024)`` fed to ``linear``."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)``."""
        return self.linear(self.forward_features(x))


@register_model("ShuffleV2")
def shufflev2_cifar(num_classes: int, in_channels: int = 3) -> CifarShuffleNetV2:
    """ShuffleNetV2 1.0x for 32x32 inputs."""
    return CifarShuffleNetV2(num_classes, in_channels=in_channels)
