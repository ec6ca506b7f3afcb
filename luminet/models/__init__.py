"""Classification model zoo: CIFAR and ImageNet architectures of the distillation literature.

Build by name and load public checkpoints::

    from luminet.models import build_model, load_checkpoint

    teacher = build_model("resnet32x4", num_classes=100)
    load_checkpoint(teacher, "resnet32x4_vanilla/ckpt_epoch_240.pth")

Every model's ``forward(x)`` returns logits ``(N, num_classes)``; ``forward_features(x)`` returns
the pooled features that feed the classifier.
"""

from . import cifar, imagenet  # noqa: F401  (registration at import)
from .checkpoint import CheckpointLoadResult, extract_state_dict, load_checkpoint
from .registry import (
    MODEL_REGISTRY,
    available_models,
    build_model,
    get_model_factory,
    register_model,
)

__all__ = [
    "MODEL_REGISTRY",
    "build_model",
    "available_models",
    "register_model",
    "get_model_factory",
    "load_checkpoint",
    "extract_state_dict",
    "CheckpointLoadResult",
]
