"""Distillation losses chosen by name.

A registered entry is a factory (usually an ``nn.Module`` class) called with keyword
hyperparameters; the object it returns is called as ``loss(logits_student, logits_teacher,
target=None)`` and returns a scalar tensor. Third parties register their own::

    from luminet.losses import register_distill_loss

    @register_distill_loss("my_kd")
    class MyKD(torch.nn.Module):
        def __init__(self, temperature=1.0):
            ...
        def forward(self, logits_student, logits_teacher, target=None):
            ...

The name ``"none"`` is reserved: it means "no distillation term" and builds to ``None``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .dkd import DKDLoss
from .kd import KDLoss
from .perception import LumiNetLoss

__all__ = [
    "NO_DISTILLATION",
    "register_distill_loss",
    "get_distill_loss",
    "build_distill_loss",
    "available_distill_losses",
]

NO_DISTILLATION = "none"

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register_distill_loss(name: str, factory: Callable[..., Any] | None = None, *, override=False):
    """Register ``factory`` under ``name``; usable as a decorator or a plain call.

    Raises:
        ValueError: if the name is empty, reserved, or taken (unless ``override=True``).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a distillation loss needs a non-empty string name; got {name!r}")
    key = name.lower()
    if key == NO_DISTILLATION:
        raise ValueError(f"{NO_DISTILLATION!r} is reserved for 'no distillation term'")

    def _register(obj: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(obj):
            raise TypeError(f"distillation loss {name!r} must be callable; got {obj!r}")
        if key in _REGISTRY and _REGISTRY[key] is not obj and not override:
            raise ValueError(
                f"a distillation loss named {name!r} is already registered "
                f"({_REGISTRY[key]!r}); pass override=True to replace it"
            )
        _REGISTRY[key] = obj
        return obj

    return _register if factory is None else _register(factory)


def available_distill_losses() -> list[str]:
    """Registered names, plus ``"none"``, sorted."""
    return sorted([*_REGISTRY, NO_DISTILLATION])


def get_distill_loss(name: str) -> Callable[..., Any]:
    """The factory registered under ``name`` (case-insensitive)."""
    key = str(name).lower()
    if key not in _REGISTRY:
        raise KeyError(
            f"unknown distillation loss {name!r}; known: {', '.join(available_distill_losses())}"
        )
    return _REGISTRY[key]


def build_distill_loss(name: str, **kwargs: Any):
    """Build the loss registered under ``name`` with keyword hyperparameters.

    Keyword arguments the factory does not accept are an error (nothing is silently ignored).
    Returns ``None`` for ``"none"``.
    """
    if str(name).lower() == NO_DISTILLATION:
        return None
    factory = get_distill_loss(name)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        params = None
    if params is not None and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise TypeError(
                f"distillation loss {name!r} does not take {unknown}; it takes "
                f"{sorted(k for k in params if k != 'self')}"
            )
    return factory(**kwargs)


register_distill_loss("luminet", LumiNetLoss)
register_distill_loss("kd", KDLoss)
register_distill_loss("dkd", DKDLoss)
