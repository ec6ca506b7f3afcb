"""COCO-format datasets named on the command line (``--coco-dataset NAME JSON IMAGE_DIR``)."""

from __future__ import annotations

import logging
import os

from detectron2.data import DatasetCatalog
from detectron2.data.datasets import register_coco_instances

__all__ = ["register_coco_datasets"]

logger = logging.getLogger(__name__)


def register_coco_datasets(specs: list[list[str]] | None) -> None:
    """Register ``[name, json_file, image_root]`` triples as COCO-format datasets.

    Raises:
        ValueError: when a file or folder is missing.
    """
    for name, json_file, image_root in specs or []:
        if name in DatasetCatalog.list():
            logger.info("Dataset %s is already registered; --coco-dataset leaves it.", name)
            continue
        if not os.path.isfile(json_file):
            raise ValueError(f"--coco-dataset {name}: json file {json_file!r} does not exist")
        if not os.path.isdir(image_root):
            raise ValueError(f"--coco-dataset {name}: image folder {image_root!r} does not exist")
        register_coco_instances(name, {}, json_file, image_root)
