"""Register digit scenes in detectron2's catalogs on use (cheap: the files are built lazily).

Nothing is registered at import. ``register_digit_scenes()`` registers ``digit_scenes_train`` /
``digit_scenes_val`` (the default :class:`DigitScenesSpec`), built under
``$DETECTRON2_DATASETS/generated`` (``datasets/generated`` by default, relative to the working
directory, like detectron2's builtin datasets) the first time a split is loaded;
``ensure_digit_scenes()`` does so unless they are registered already.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .digit_scenes import CLASS_NAMES, DigitScenesSpec, build_digit_scenes, digit_scenes_dir

logger = logging.getLogger(__name__)

__all__ = [
    "generated_root",
    "register_digit_scenes",
    "ensure_digit_scenes",
    "DEFAULT_DIGIT_SCENES",
]

DEFAULT_DIGIT_SCENES = "digit_scenes"


def generated_root() -> Path:
    """Where generated datasets live: ``$DETECTRON2_DATASETS/generated`` (default ``datasets``)."""
    return Path(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))) / "generated"


def register_digit_scenes(
    prefix: str = DEFAULT_DIGIT_SCENES,
    spec: DigitScenesSpec | None = None,
    root: str | os.PathLike | None = None,
) -> dict[str, str]:
    """Register ``<prefix>_train`` and ``<prefix>_val`` (and ``<prefix>_test`` when
    ``spec.num_test > 0``) without building anything yet.

    The first ``DatasetCatalog.get`` of either split builds (or reuses) the cached files. The
    metadata's ``json_file`` points at the COCO file of that build, for ``COCOEvaluator``; it
    exists once the split has been loaded (detectron2's test loader loads it first).

    Args:
        prefix: dataset name prefix.
        spec: build parameters (default ``DigitScenesSpec()``).
        root: parent directory of builds (default :func:`generated_root`, read now).

    Returns:
        ``{split: dataset_name}``.

    Raises:
        ValueError: if the spec is invalid or a name is already registered.
    """
    spec = (spec or DigitScenesSpec()).validate()
    root = Path(root) if root is not None else generated_root()
    build_dir = digit_scenes_dir(root, spec)
    names = {}
    for split in spec.splits():
        name = f"{prefix}_{split}"
        if name in DatasetCatalog.list():
            raise ValueError(f"dataset {name!r} is already registered")
        json_file = build_dir / "annotations" / f"instances_{split}.json"
        image_root = build_dir / split

        def _load(name=name, json_file=json_file, image_root=image_root):
            build_digit_scenes(root, spec)
            return load_coco_json(str(json_file), str(image_root), name)

        DatasetCatalog.register(name, _load)
        MetadataCatalog.get(name).set(
            thing_classes=list(CLASS_NAMES),
            thing_dataset_id_to_contiguous_id={i: i for i in range(len(CLASS_NAMES))},
            json_file=str(json_file),
            image_root=str(image_root),
            evaluator_type="coco",
            digit_scenes_spec=spec,
        )
        names[split] = name
    return names


def ensure_digit_scenes(
    prefix: str = DEFAULT_DIGIT_SCENES,
    spec: DigitScenesSpec | None = None,
    root: str | os.PathLike | None = None,
) -> dict[str, str]:
    """:func:`register_digit_scenes` unless the spec's splits (``<prefix>_train``, ``<prefix>_val``
    and ``<prefix>_test`` when it has one) are registered already.

    Returns:
        ``{split: dataset_name}``.

    Raises:
        ValueError: if only some of the splits are registered.
    """
    splits = (spec if spec is not None else DigitScenesSpec()).splits()
    names = {split: f"{prefix}_{split}" for split in splits}
    registered = [n for n in names.values() if n in DatasetCatalog.list()]
    if len(registered) == len(names):
        return names
    if registered:
        raise ValueError(f"only {registered} of {list(names.values())} is registered")
    return register_digit_scenes(prefix, spec, root)
