"""ImageNet (224x224) architectures; registered at import."""

from . import torchvision_models  # noqa: F401
