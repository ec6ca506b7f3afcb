"""Classification models chosen by name (case-insensitive).

A registered entry is a factory called as ``factory(num_classes=..., **kwargs)`` that returns an
``nn.Module`` whose ``forward(x)`` gives logits of shape ``(N, num_classes)``. Third parties
register their own::

    from luminet.models import register_model

    @register_model("my_net")
    def my_net(num_classes: int, in_channels: int = 3) -> nn.Module:
        ...
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from torch import nn

from luminet.registry import NamedRegistry, check_kwargs

__all__ = [
    "MODEL_REGISTRY",
    "register_model",
    "get_model_factory",
    "build_model",
    "available_models",
]

logger = logging.getLogger(__name__)

#: The registry behind :func:`register_model` (fvcore ``Registry`` form).
MODEL_REGISTRY = NamedRegistry("model")


def register_model(name: str, factory: Callable[..., nn.Module] | None = None, *, override=False):
    """Register ``factory`` under ``name``; usable as a decorator or a plain call.

    Args:
        name: the (case-insensitive) name :func:`build_model` will accept.
        factory: a callable ``(num_classes, **kwargs) -> nn.Module``; omit to use as a decorator.
        override: replace an existing entry of the same name instead of raising.

    Returns:
        The factory (so the decorator leaves the decorated object unchanged).

    Raises:
        ValueError: if the name is empty or already taken (unless ``override=True``).
    """
    return MODEL_REGISTRY.register_as(name, factory, override=override)


def available_models() -> list[str]:
    """All registered model names (as registered), sorted."""
    return MODEL_REGISTRY.names()


def get_model_factory(name: str) -> Callable[..., nn.Module]:
    """The factory registered under ``name`` (case-insensitive).

    Raises:
        KeyError: for an unknown name; the message lists the known names.
    """
    return MODEL_REGISTRY.get(name)


def build_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build the model registered under ``name``.

    Args:
        name: a name from :func:`available_models` (case-insensitive).
        num_classes: number of output logits (a positive int).
        **kwargs: extra architecture options of that model (e.g. ``in_channels`` for the CIFAR
            models). Options the model does not take are an error, never silently dropped.

    Returns:
        The model, in training mode, with ``model.model_name`` set to the registered name.

    Raises:
        KeyError: unknown ``name``.
        ValueError: ``num_classes`` is not a positive int.
        TypeError: an option the model does not accept.
    """
    canonical = MODEL_REGISTRY.canonical(name)
    factory = MODEL_REGISTRY.get(canonical)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int; got {num_classes!r}")
    check_kwargs(factory, kwargs, f"model {canonical!r}", ignore=("num_classes",))
    model = factory(num_classes=num_classes, **kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"factory of model {canonical!r} returned {type(model).__name__}, not nn.Module"
        )
    model.model_name = canonical
    logger.debug("built model %s (num_classes=%d, options=%s)", canonical, num_classes, kwargs)
    return model
