"""ImageNet (224x224) architectures; registered at import."""

from . import mobilenetv1, torchvision_models  # noqa: F401
