"""LumiNet knowledge distillation: the losses, and a classification distiller (CIFAR / ImageNet).

Torch-only: nothing here imports detectron2. The detection extension lives in ``luminet_det``.
"""

from .losses import (  # noqa: F401
    available_distill_losses,
    build_distill_loss,
    dkd_loss,
    kd_loss,
    luminet_loss,
    perception,
    register_distill_loss,
)

__version__ = "0.1.0"
