"""Wide ResNets (Zagoruyko & Komodakis 2016) for 32x32 inputs, as in the CRD / DKD benchmark.

Pre-activation basic blocks; parameter names (``conv1``, ``block1..3.layer.i``, ``bn1``, ``fc``,
``convShortcut``) follow those definitions so their public teacher checkpoints load strictly.
``wrn_D_K`` has depth D (= 6n + 4) and widen factor K. Dropout is off, as in that benchmark.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_model

__all__ = ["WideResNet", "WideBasicBlock"]


class WideBasicBlock(nn.Module):
    """BN-ReLU-conv3x3 twice; the shortcut is a 1x1 conv of the activated input if shapes change."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, drop_rate: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = in_planes == out_planes
        self.convShortcut = (
            None
            if self.equal_in_out
            else nn.Conv2d(in_planes, out_planes, 1, stride=stride, padding=0, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(act)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        # identity on the raw input when shapes match, else a projection of the activated input
        shortcut = x if self.convShortcut is None else self.convShortcut(act)
        return shortcut + out


class _NetworkBlock(nn.Module):
    """A stage of ``n`` wide blocks, kept under ``.layer`` (the public parameter names)."""

    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int, drop_rate: float):
        super().__init__()
        self.layer = nn.Sequential(
            *[
                WideBasicBlock(
                    in_planes if i == 0 else out_planes,
                    out_planes,
                    stride if i == 0 else 1,
                    drop_rate,
                )
                for i in range(n)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-depth-widen_factor for 32x32 inputs.

    Args:
        depth: 6n + 4.
        widen_factor: channel multiplier K (stages have 16K, 32K, 64K channels).
        num_classes: number of logits.
        in_channels: input image channels.
        drop_rate: dropout inside blocks (0 in the CRD / DKD benchmark).
    """

    def __init__(
        self,
        depth: int,
        widen_factor: int,
        num_classes: int,
        in_channels: int = 3,
        drop_rate: float = 0.0,
    ):
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n+4 with n >= 1; got {depth}")
        n = (depth - 4) // 6
        ch = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, ch[0], 3, stride=1, padding=1, bias=False)
        self.block1 = _NetworkBlock(n, ch[0], ch[1], 1, drop_rate)
        self.block2 = _NetworkBlock(n, ch[1], ch[2], 2, drop_rate)
        self.block3 = _NetworkBlock(n, ch[2], ch[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(ch[3], num_classes)
        self.num_features = ch[3]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(N, 64 * widen_factor)`` fed to ``fc``."""
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        x = self.relu(self.bn1(x))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)``."""
        return self.fc(self.forward_features(x))


def _register(depth: int, widen: int) -> None:
    name = f"wrn_{depth}_{widen}"

    def factory(num_classes: int, in_channels: int = 3) -> WideResNet:
        return WideResNet(depth, widen, num_classes=num_classes, in_channels=in_channels)

    factory.__name__ = name
    factory.__doc__ = f"WRN-{depth}-{widen} for 32x32 inputs."
    register_model(name, factory)


for _depth, _widen in ((16, 1), (16, 2), (40, 1), (40, 2)):
    _register(_depth, _widen)
