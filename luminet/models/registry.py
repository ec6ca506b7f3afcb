"""Classification models chosen by (case-sensitive) name.

A registered entry is a factory called as ``factory(num_classes=..., **kwargs)`` that returns an
``nn.Module`` whose ``forward(x)`` gives logits of shape ``(N, num_classes)``. Third parties
register their own::

    from luminet.models import register_model

    @register_model("my_net")
    def my_net(num_classes: int, in_channels: int = 3) -> nn.Module:
        ...
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = ["register_model", "get_model_factory", "build_model", "available_models"]

logger = logging.getLogger(__name__)

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str, factory: Callable[..., nn.Module] | None = None, *, override=False):
    """Register ``factory`` under ``name``; usable as a decorator or a plain call.

    Args:
        name: the exact (case-sensitive) name :func:`build_model` will accept.
        factory: a callable ``(num_classes, **kwargs) -> nn.Module``; omit to use as a decorator.
        override: replace an existing entry of the same name instead of raising.

    Returns:
        The factory (so the decorator leaves the decorated object unchanged).

    Raises:
        ValueError: if the name is empty or already taken (unless ``override=True``).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a model needs a non-empty string name; got {name!r}")

    def _register(obj: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if not callable(obj):
            raise TypeError(f"model {name!r} must be registered with a callable; got {obj!r}")
        if name in _REGISTRY and _REGISTRY[name] is not obj and not override:
            raise ValueError(
                f"a model named {name!r} is already registered ({_REGISTRY[name]!r}); "
                "pass override=True to replace it"
            )
        _REGISTRY[name] = obj
        return obj

    return _register if factory is None else _register(factory)


def available_models() -> list[str]:
    """All registered model names, sorted."""
    return sorted(_REGISTRY)


def get_model_factory(name: str) -> Callable[..., nn.Module]:
    """The factory registered under ``name`` (case-sensitive).

    Raises:
        KeyError: for an unknown name; the message lists the known names.
    """
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(available_models())}")
    return _REGISTRY[name]


def build_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build the model registered under ``name``.

    Args:
        name: a name from :func:`available_models` (case-sensitive).
        num_classes: number of output logits (a positive int).
        **kwargs: extra architecture options of that model (e.g. ``in_channels`` for the CIFAR
            models). Options the model does not take are an error, never silently dropped.

    Returns:
        The model, in training mode, with ``model.model_name`` set to ``name``.

    Raises:
        KeyError: unknown ``name``.
        ValueError: ``num_classes`` is not a positive int.
        TypeError: an option the model does not accept.
    """
    factory = get_model_factory(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int; got {num_classes!r}")
    params = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            accepted = sorted(k for k in params if k != "num_classes")
            raise TypeError(f"model {name!r} does not take {unknown}; its options: {accepted}")
    model = factory(num_classes=num_classes, **kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(f"factory of model {name!r} returned {type(model).__name__}, not nn.Module")
    model.model_name = name
    logger.debug("built model %s (num_classes=%d, options=%s)", name, num_classes, kwargs)
    return model
