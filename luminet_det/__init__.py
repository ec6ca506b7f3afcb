"""LumiNet knowledge distillation for Detectron2.

Importing this package registers its detectron2 components (meta-architecture, backbones).
"""

__version__ = "0.1.0"
