"""VGG with batch norm for 32x32 inputs, as in the CRD / DKD benchmark (no FC stack).

Five conv blocks ``block0..4`` (each a ``Sequential`` of conv-BN-ReLU, the last ReLU applied in
``forward``), max pools between the first four, global average pool and a single ``classifier``
linear layer. Names follow those definitions so their public checkpoints load strictly. ``vgg8``
uses one conv per block; ``vgg11/13/16/19`` the standard VGG configurations A/B/D/E.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_model

__all__ = ["CifarVGG", "VGG_CONFIGS"]

VGG_CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg8": ((64,), (128,), (256,), (512,), (512,)),
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": (
        (64, 64),
        (128, 128),
        (256, 256, 256, 256),
        (512, 512, 512, 512),
        (512, 512, 512, 512),
    ),
}


def _conv_block(widths: tuple[int, ...], in_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [
            nn.Conv2d(in_channels, w, 3, padding=1),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
        ]
        in_channels = w
    return nn.Sequential(*layers[:-1])  # the block's last ReLU is applied in forward


class CifarVGG(nn.Module):
    """VGG-BN for small inputs.

    Args:
        config: conv widths per block (five blocks).
        num_classes: number of logits.
        in_channels: input image channels.
    """

    def __init__(self, config: tuple[tuple[int, ...], ...], num_classes: int, in_channels: int = 3):
        super().__init__()
        if len(config) != 5:
            raise ValueError(f"a VGG configuration needs 5 blocks; got {len(config)}")
        prev = [in_channels] + [c[-1] for c in config[:-1]]
        for i, (widths, c_in) in enumerate(zip(config, prev)):
            setattr(self, f"block{i}", _conv_block(widths, c_in))
        for i in range(4):
            setattr(self, f"pool{i}", nn.MaxPool2d(kernel_size=2, stride=2))
        self.pool4 = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(config[-1][-1], num_classes)
        self.num_features = config[-1][-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(N, 512)`` fed to ``classifier``."""
        height = x.shape[2]
        x = self.pool0(F.relu(self.block0(x)))
        x = self.pool1(F.relu(self.block1(x)))
        x = self.pool2(F.relu(self.block2(x)))
        x = F.relu(self.block3(x))
        if height == 64:  # the benchmark pools a fourth time only for 64x64 inputs
            x = self.pool3(x)
        x = F.relu(self.block4(x))
        return torch.flatten(self.pool4(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)``."""
        return self.classifier(self.forward_features(x))


def _register(name: str) -> None:
    config = VGG_CONFIGS[name]

    def factory(num_classes: int, in_channels: int = 3) -> CifarVGG:
        return CifarVGG(config, num_classes=num_classes, in_channels=in_channels)

    factory.__name__ = name
    factory.__doc__ = f"{name} with batch norm, for 32x32 inputs."
    register_model(name, factory)


for _name in VGG_CONFIGS:
    _register(_name)
