"""Checkpoint files: read any of the layouts found in the wild, and extract a student.

DistillRCNN's own checkpoints hold the student only; :func:`extract_student_state_dict` is for
files written by other distillation code, where the student's GeneralizedRCNN keys are either
prefixed (``student.backbone...``) or top-level next to ``teacher.*`` and helper modules.
"""

from __future__ import annotations

import logging
import pickle
from collections import Counter

import numpy as np
import torch
from detectron2.utils.file_io import PathManager

from luminet.models import extract_state_dict

logger = logging.getLogger(__name__)

__all__ = ["GENERALIZED_RCNN_PREFIXES", "extract_student_state_dict", "load_state_dict_file"]

#: Top-level names of a GeneralizedRCNN state dict.
GENERALIZED_RCNN_PREFIXES = ("backbone.", "proposal_generator.", "roi_heads.")


def _numpy_to_tensors(obj):
    if isinstance(obj, dict):
        return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in obj.items()}
    return obj


def load_state_dict_file(path: str) -> dict[str, torch.Tensor]:
    """The model state dict stored in ``path`` (``.pkl`` via pickle, anything else via torch).

    Accepts detectron2's model-zoo pickles (numpy arrays under ``"model"``), our and detectron2's
    ``.pth`` checkpoints, plain state dicts and the ``state_dict`` / ``model_state`` wrappers (see
    :func:`luminet.models.extract_state_dict`); numpy arrays become tensors and a leading
    ``module.`` is removed.

    Raises:
        ValueError: when the file cannot be read or holds no dict of tensors.
    """
    try:
        with PathManager.open(path, "rb") as f:
            if path.endswith(".pkl"):
                data = pickle.load(f, encoding="latin1")
            else:
                data = torch.load(f, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"cannot read checkpoint {path!r}: {type(e).__name__}: {e}") from e
    if isinstance(data, dict) and isinstance(data.get("model_state"), dict):
        data = data["model_state"]  # pycls
    data = _numpy_to_tensors(data)
    if isinstance(data, dict):
        data = {k: _numpy_to_tensors(v) if k in ("model", "state_dict") else v
                for k, v in data.items()}  # fmt: skip
    try:
        return dict(extract_state_dict(data))
    except ValueError as e:
        raise ValueError(f"checkpoint {path!r}: {e}") from e


def extract_student_state_dict(
    state: dict[str, torch.Tensor], student_prefix: str = "student."
) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Keep the student's GeneralizedRCNN keys of ``state``.

    A leading ``module.`` (DataParallel/DDP) is removed first. If any key starts with
    ``student_prefix``, those keys (prefix removed) are the student; otherwise the top-level
    GeneralizedRCNN keys are. Everything else (``teacher.*``, adapters, ...) is dropped.

    Args:
        state: a state dict.
        student_prefix: prefix of the student's keys in ``state``, if any.

    Returns:
        ``(student_state_dict, dropped)`` where ``dropped`` counts the dropped keys by their
        first name component.

    Raises:
        ValueError: when no student key is found.
    """
    state = dict(extract_state_dict(state))  # removes a leading "module."
    prefixed = bool(student_prefix) and any(k.startswith(student_prefix) for k in state)
    student, dropped = {}, Counter()
    for k, v in state.items():
        name = k[len(student_prefix) :] if prefixed and k.startswith(student_prefix) else None
        if not prefixed:
            name = k
        if name is not None and name.startswith(GENERALIZED_RCNN_PREFIXES):
            student[name] = v
        elif name in ("pixel_mean", "pixel_std"):
            continue  # non-persistent buffers, set by the config
        else:
            dropped[k.split(".", 1)[0]] += 1
    if not student:
        raise ValueError(
            "no student keys found: expected keys starting with "
            f"{[student_prefix + p for p in GENERALIZED_RCNN_PREFIXES]} or "
            f"{list(GENERALIZED_RCNN_PREFIXES)}; the first keys are {list(state)[:5]}"
        )
    return student, dict(dropped)
