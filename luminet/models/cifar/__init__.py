"""CIFAR (32x32) architectures of the CRD / DKD distillation benchmark; registered at import."""

from . import resnet  # noqa: F401
