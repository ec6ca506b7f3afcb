"""Load model weights from the checkpoint layouts found in the wild.

Accepted layouts (after ``torch.load`` if a path is given):

* a plain ``state_dict`` (name -> tensor);
* ``{"model": state_dict, ...}``: the CIFAR teacher release of CRD / DKD (``ckpt_epoch_240.pth``)
  and the checkpoints our trainer writes;
* ``{"state_dict": state_dict, ...}``: common in other code bases.

A leading ``"module."`` (left by ``nn.DataParallel`` / DDP) is stripped from every key.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["CheckpointLoadResult", "extract_state_dict", "load_checkpoint"]

logger = logging.getLogger(__name__)

_WRAPPER_KEYS = ("model", "state_dict")
_DP_PREFIX = "module."
_N_EXAMPLES = 5


@dataclass
class CheckpointLoadResult:
    """What :func:`load_checkpoint` did not load (all empty after a strict load)."""

    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    mismatched_keys: list[str] = field(default_factory=list)


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _strip(key: str) -> str:
    if key == _DP_PREFIX[:-1]:  # the wrapper module itself, in ``_metadata``
        return ""
    return key[len(_DP_PREFIX) :] if key.startswith(_DP_PREFIX) else key


def _strip_prefix(state: Mapping[str, torch.Tensor]) -> OrderedDict:
    out: OrderedDict = OrderedDict((_strip(k), v) for k, v in state.items())
    metadata = getattr(state, "_metadata", None)
    if metadata is not None:  # keeps BatchNorm's version-aware loading working
        out._metadata = OrderedDict((_strip(k), v) for k, v in metadata.items())  # type: ignore[attr-defined]
    return out


def extract_state_dict(
    path_or_state: str | os.PathLike | Mapping[str, Any], weights_only: bool = True
) -> OrderedDict:
    """The model ``state_dict`` inside a checkpoint file or an already loaded checkpoint.

    Args:
        path_or_state: a file path (loaded on CPU) or a loaded object, in one of the layouts of
            this module's docstring.
        weights_only: passed to ``torch.load`` for paths. Keep ``True`` unless the file is trusted
            and holds pickled Python objects.

    Returns:
        The state dict with any leading ``"module."`` removed from its keys.

    Raises:
        ValueError: the object holds no recognisable state dict.
    """
    if isinstance(path_or_state, str | os.PathLike):
        try:
            obj = torch.load(
                os.fspath(path_or_state), map_location="cpu", weights_only=weights_only
            )
        except Exception as e:  # unpickling errors come in many types
            raise ValueError(
                f"could not load checkpoint {os.fspath(path_or_state)!r}: {e}. If the file is "
                "trusted and holds pickled objects, pass weights_only=False."
            ) from e
    else:
        obj = path_or_state
    if _is_state_dict(obj):
        return _strip_prefix(obj)
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if key in obj and _is_state_dict(obj[key]):
                return _strip_prefix(obj[key])
        raise ValueError(
            "checkpoint holds no state dict: expected name->tensor entries, or one under "
            f"{list(_WRAPPER_KEYS)}; its top-level keys are {sorted(map(str, obj))[:20]}"
        )
    raise ValueError(f"checkpoint must be a path or a mapping; got {type(obj).__name__}")


def _examples(items: list[str]) -> str:
    shown = ", ".join(items[:_N_EXAMPLES])
    return shown + (", ..." if len(items) > _N_EXAMPLES else "")


def load_checkpoint(
    model: nn.Module,
    path_or_state: str | os.PathLike | Mapping[str, Any],
    strict: bool = True,
    *,
    weights_only: bool = True,
) -> CheckpointLoadResult:
    """Load a checkpoint into ``model`` (in place).

    Args:
        model: the target model (e.g. from :func:`luminet.models.build_model`).
        path_or_state: a path or a loaded checkpoint (see :func:`extract_state_dict`).
        strict: if True, any missing or unexpected key or shape mismatch raises and the model is
            left untouched. If False, the matching entries are loaded and the rest is reported
            (in the result and as a warning).
        weights_only: see :func:`extract_state_dict`.

    Returns:
        The keys that were not loaded.

    Raises:
        ValueError: unreadable checkpoint, or (``strict=True``) a checkpoint that does not fit the
            architecture; the message names the architecture and gives counts and examples.
    """
    state = extract_state_dict(path_or_state, weights_only=weights_only)
    own = model.state_dict()
    # BatchNorm fills a missing ``num_batches_tracked`` from checkpoints of old PyTorch versions.
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    arch = getattr(model, "model_name", None) or type(model).__name__
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {_examples(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {_examples(unexpected)})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches (e.g. {_examples(mismatched)})")
    if problems and strict:
        raise ValueError(
            f"checkpoint does not fit architecture {arch!r} (checkpoint for the wrong "
            f"architecture or number of classes?): " + "; ".join(problems)
        )
    bad_shape = {m.split(":", 1)[0] for m in mismatched}
    loadable = OrderedDict((k, v) for k, v in state.items() if k in own and k not in bad_shape)
    if hasattr(state, "_metadata"):
        loadable._metadata = state._metadata  # type: ignore[attr-defined]
    incompatible = model.load_state_dict(loadable, strict=False)
    result = CheckpointLoadResult(
        missing_keys=list(incompatible.missing_keys),
        unexpected_keys=unexpected,
        mismatched_keys=mismatched,
    )
    if problems:
        logger.warning("partial load into %s: %s", arch, "; ".join(problems))
    else:
        logger.info("loaded %d tensors into %s", len(loadable), arch)
    return result
