"""Teacher weights: read, checked key by key and shape by shape against the teacher, then loaded.

A teacher that is partly random ruins distillation silently, so anything that does not fit the
teacher model is an error before step 0: a missing key, a key of a part the model has but the
checkpoint describes differently (an unexpected backbone, FPN or head key, e.g. the extra blocks
of an R34 checkpoint for an R18 config), a tensor of another shape. Every part the model has is
used somewhere: the ROI distillation runs the backbone and box head, ``--eval-teacher`` also the
RPN and box regression; so no missing key is tolerated.

Tolerated, because they cannot change what the teacher computes:

* keys of the **mask and keypoint heads** when the teacher model has no such head (a Mask R-CNN
  checkpoint used as a box teacher with ``MASK_ON False``): those heads only read ROI features,
  they never feed the backbone, RPN or box head;
* ``anchor_generator.cell_anchors`` buffers of old detectron2 checkpoints (now computed from the
  config, like detectron2's own checkpointer accepts them);
* ``pixel_mean`` / ``pixel_std`` of old checkpoints **if they equal** the teacher config's
  values (a checkpoint trained with other pixel statistics is an error);
* a missing ``num_batches_tracked`` of a BatchNorm (unused in eval mode).
"""

from __future__ import annotations

import logging
import os

import torch
from detectron2.utils.file_io import PathManager
from torch import nn

from .checkpoint import load_state_dict_file

logger = logging.getLogger(__name__)

__all__ = ["OPTIONAL_HEAD_PREFIXES", "load_teacher_weights"]

#: Heads a checkpoint may carry that a box-only teacher model leaves out (tolerated only when the
#: model has no parameter under that prefix).
OPTIONAL_HEAD_PREFIXES = ("roi_heads.mask_head.", "roi_heads.keypoint_head.")
_CONFIG_BUFFERS = ("pixel_mean", "pixel_std")
_N_EXAMPLES = 5


def _examples(items: list[str]) -> str:
    return ", ".join(items[:_N_EXAMPLES]) + (", ..." if len(items) > _N_EXAMPLES else "")


def _read(weights: str, key: str) -> dict[str, torch.Tensor]:
    if not weights:
        raise ValueError(
            f"{key} is empty: refusing to distill from a randomly initialised teacher "
            '(set MODEL.DISTILL.LOSS "none" to train the student alone)'
        )
    try:
        local = PathManager.get_local_path(weights)
    except Exception as e:  # download or handler errors
        raise ValueError(f"{key} {weights!r} could not be fetched: {type(e).__name__}: {e}") from e
    if not os.path.isfile(local):
        raise ValueError(f"{key} {weights!r} is not a file")
    try:
        return load_state_dict_file(local)
    except ValueError as e:
        raise ValueError(f"{key} {weights!r} could not be read as a checkpoint: {e}") from e


def load_teacher_weights(
    model: nn.Module,
    weights: str,
    *,
    key: str = "MODEL.DISTILL.TEACHER_WEIGHTS",
    config_name: str = "",
) -> dict[str, int]:
    """Load ``weights`` into ``model`` after checking that they fit it exactly (module docstring).

    Args:
        model: the teacher, built from its config (random weights).
        weights: a path or any URL detectron2's ``PathManager`` reads (``detectron2://...``).
        key: the config key of ``weights``, for messages.
        config_name: the teacher's config, for messages.

    Returns:
        Counts: ``{"loaded": n, "ignored": m}`` (``ignored``: tolerated extra keys).

    Raises:
        ValueError: empty, missing or unreadable ``weights``, or weights that do not fit, with the
            counts and examples of missing, unexpected and mis-shaped keys.
    """
    state = _read(weights, key)
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    wrong_shape = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    buffers = dict(model.named_buffers())
    unexpected, ignored, bad_buffers = [], [], []
    for k in state:
        if k in own:
            continue
        head = next((p for p in OPTIONAL_HEAD_PREFIXES if k.startswith(p)), None)
        if head is not None and not any(o.startswith(head) for o in own):
            ignored.append(k)
        elif "anchor_generator.cell_anchors" in k:
            ignored.append(k)
        elif k in _CONFIG_BUFFERS and k in buffers:
            mine, theirs = buffers[k].flatten().cpu(), state[k].flatten().float()
            if mine.shape == theirs.shape and torch.allclose(mine, theirs):
                ignored.append(k)
            else:
                bad_buffers.append(f"{k}: checkpoint {theirs.tolist()} vs config {mine.tolist()}")
        else:
            unexpected.append(k)
    where = f" (config {config_name!r})" if config_name else ""
    summary = (
        f"teacher checkpoint {weights!r} ({len(state)} tensors) does not fit the teacher "
        f"model{where}: {len(missing)} missing key(s), {len(unexpected)} unexpected key(s), "
        f"{len(wrong_shape)} key(s) with a wrong shape"
    )
    if missing or unexpected or wrong_shape or bad_buffers:
        details = []
        if missing:
            details.append(f"missing: {_examples(missing)}")
        if unexpected:
            details.append(f"unexpected: {_examples(unexpected)}")
        if wrong_shape:
            details.append(f"wrong shape: {_examples(wrong_shape)}")
        if bad_buffers:
            details.append(f"pixel statistics differ from the teacher config: {bad_buffers}")
        predictor = sorted(
            {k.split(":")[0] for k in missing + wrong_shape if k.startswith("roi_heads.box_pred")}
        )
        hint = (
            f"; the box predictor ({', '.join(predictor)}) is missing or has a wrong shape"
            if predictor
            else ""
        )
        raise ValueError(
            f"{summary}{hint} ({'; '.join(details)}); does the checkpoint belong to the teacher "
            "config (same backbone depth, FPN, heads and number of classes)?"
        )
    result = model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    not_loaded = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if not_loaded or result.unexpected_keys:  # cannot happen after the checks above
        raise RuntimeError(f"teacher load left keys out: {not_loaded + result.unexpected_keys}")
    if ignored:
        logger.info(
            "Teacher weights %s: loaded %d tensors; ignored %d key(s) of parts the teacher model "
            "does not have (e.g. %s)",
            weights,
            len(own) - len(result.missing_keys),
            len(ignored),
            _examples(ignored),
        )
    else:
        logger.info("Teacher weights %s: all %d keys match.", weights, len(own))
    return {"loaded": len(own) - len(result.missing_keys), "ignored": len(ignored)}
