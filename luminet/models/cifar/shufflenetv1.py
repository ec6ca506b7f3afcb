"""ShuffleNetV1 (Zhang et al. 2018) for 32x32 inputs as in CRD / DKD (registered as ``ShuffleV1``).

Configuration: 3 groups, stage widths (240, 480, 960), (4, 8, 4) units, 1x1 stem conv with 24
channels and no max pool; the first unit of each stage concatenates a 3x3 average-pooled shortcut.
Parameter names (``conv1``, ``bn1``, ``layerK.i.convJ/bnJ``, ``linear``) follow that definition.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_model

__all__ = ["CifarShuffleNetV1", "channel_shuffle"]


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` equal groups: (N, g*c, H, W) -> (N, c*g, H, W)."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class _ShuffleV1Unit(nn.Module):
    """Grouped 1x1 - shuffle - depthwise 3x3 - grouped 1x1; add (stride 1) or concat (stride 2)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, groups: int, stem: int):
        super().__init__()
        mid = out_planes // 4
        self.stride = stride
        # the first unit after the stem has too few input channels for grouping
        self.first_groups = 1 if in_planes == stem else groups
        self.conv1 = nn.Conv2d(in_planes, mid, 1, groups=self.first_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_planes, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = channel_shuffle(out, self.first_groups)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.stride == 2:
            return F.relu(torch.cat([out, F.avg_pool2d(x, 3, stride=2, padding=1)], 1))
        return F.relu(out + x)


class CifarShuffleNetV1(nn.Module):
    """ShuffleNetV1 for small inputs.

    Args:
        num_classes: number of logits.
        out_planes: output channels of the three stages.
        num_blocks: units per stage.
        groups: group count of the 1x1 convs.
        in_channels: input image channels.
    """

    stem_channels = 24

    def __init__(
        self,
        num_classes: int,
        out_planes: tuple[int, int, int] = (240, 480, 960),
        num_blocks: tuple[int, int, int] = (4, 8, 4),
        groups: int = 3,
        in_channels: int = 3,
    ):
        super().__init__()
        stem = self.stem_channels
        self.conv1 = nn.Conv2d(in_channels, stem, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        planes = stem
        for k, (out, n) in enumerate(zip(out_planes, num_blocks), start=1):
            units = []
            for i in range(n):
                # the stride-2 unit produces out - in channels and concatenates the input
                units.append(
                    _ShuffleV1Unit(
                        planes, out - planes if i == 0 else out, 2 if i == 0 else 1, groups, stem
                    )
                )
                planes = out
            setattr(self, f"layer{k}", nn.Sequential(*units))
        self.linear = nn.Linear(out_planes[-1], num_classes)
        self.num_features = out_planes[-1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(N, 960)`` fed to ``linear``."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)``."""
        return self.linear(self.forward_features(x))


@register_model("ShuffleV1")
def shufflev1_cifar(num_classes: int, in_channels: int = 3) -> CifarShuffleNetV1:
    """ShuffleNetV1, g=3, for 32x32 inputs."""
    return CifarShuffleNetV1(num_classes, in_channels=in_channels)
