"""Datasets built locally from real images that ship in registry packages (demo, tests).

Importing this package registers ``digit_scenes_train`` and ``digit_scenes_val`` in detectron2's
``DatasetCatalog``/``MetadataCatalog``; files are built on first use (see :mod:`.digit_scenes`).
"""

from .builtin import DEFAULT_DIGIT_SCENES, generated_root, register_digit_scenes
from .digit_scenes import CLASS_NAMES, DigitScenesSpec, build_digit_scenes, split_digit_indices

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_DIGIT_SCENES",
    "DigitScenesSpec",
    "build_digit_scenes",
    "generated_root",
    "register_digit_scenes",
    "split_digit_indices",
]
