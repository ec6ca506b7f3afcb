"""ImageNet ResNets and MobileNetV2 with torchvision's definitions (so torchvision weights load).

Registered names: ``ResNet18``, ``ResNet34``, ``ResNet50_imagenet`` (``ResNet50`` is the CIFAR
ResNet-50 of CRD) and ``MobileNetV2_imagenet`` (``MobileNetV2`` is the CIFAR variant). The classes
only add ``forward_features``; parameters and their names are torchvision's, randomly initialised
(no download).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import mobilenetv2 as tv_mobilenetv2
from torchvision.models import resnet as tv_resnet

from ..registry import register_model

__all__ = ["ImageNetResNet", "ImageNetMobileNetV2"]


class ImageNetResNet(tv_resnet.ResNet):
    """``torchvision.models.ResNet`` plus :meth:`forward_features`."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(N, 512 * expansion)`` fed to ``fc``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)``."""
        return self.fc(self.forward_features(x))


class ImageNetMobileNetV2(tv_mobilenetv2.MobileNetV2):
    """``torchvision.models.MobileNetV2`` (width 1.0) plus :meth:`forward_features`."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(N, 1280)`` fed to ``classifier``."""
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return torch.flatten(x, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)``."""
        return self.classifier(self.forward_features(x))


@register_model("ResNet18")
def resnet18_imagenet(num_classes: int) -> ImageNetResNet:
    """torchvision ResNet-18."""
    return ImageNetResNet(tv_resnet.BasicBlock, [2, 2, 2, 2], num_classes=num_classes)


@register_model("ResNet34")
def resnet34_imagenet(num_classes: int) -> ImageNetResNet:
    """torchvision ResNet-34."""
    return ImageNetResNet(tv_resnet.BasicBlock, [3, 4, 6, 3], num_classes=num_classes)


@register_model("ResNet50_imagenet")
def resnet50_imagenet(num_classes: int) -> ImageNetResNet:
    """torchvision ResNet-50 (v1.5: stride on the 3x3 conv)."""
    return ImageNetResNet(tv_resnet.Bottleneck, [3, 4, 6, 3], num_classes=num_classes)


@register_model("MobileNetV2_imagenet")
def mobilenetv2_imagenet(num_classes: int) -> ImageNetMobileNetV2:
    """torchvision MobileNetV2, width 1.0."""
    return ImageNetMobileNetV2(num_classes=num_classes)
