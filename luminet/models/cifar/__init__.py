"""CIFAR (32x32) architectures of the CRD / DKD distillation benchmark; registered at import."""

from . import mobilenetv2, resnet, resnet50, shufflenetv1, shufflenetv2, vgg, wrn  # noqa: F401
