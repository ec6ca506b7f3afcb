"""Distillation losses chosen by name (case-insensitive).

A registered entry is a factory (usually an ``nn.Module`` class) called with keyword
hyperparameters; the object it returns is called as ``loss(logits_student, logits_teacher,
target=None)`` and returns a scalar tensor (see :mod:`luminet.losses.contract` for losses that
also take the rows' grouping). Third parties register their own::

    from luminet.losses import register_distill_loss

    @register_distill_loss("kd_sigmoid", config={"GAMMA": 2.0})
    class KDSigmoid(torch.nn.Module):
        def __init__(self, temperature=1.0, gamma=2.0):
            ...
        def forward(self, logits_student, logits_teacher, target=None):
            ...

``config`` (optional) declares the loss's config section: UPPER_SNAKE keys with their defaults,
each of which, lower-cased, is a keyword argument of the factory. ``luminet_det``'s
``add_distill_config`` then adds ``MODEL.DISTILL.KD_SIGMOID.GAMMA`` and the classification
config ``KD_SIGMOID.GAMMA`` (see :mod:`luminet.losses.config` for the rule).

The name ``"none"`` is reserved: it means "no distillation term" and builds to ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from luminet.registry import NamedRegistry, accepted_kwargs, check_kwargs

from .dkd import DKDLoss
from .kd import KDLoss
from .statistics import build_luminet_loss

__all__ = [
    "NO_DISTILLATION",
    "DISTILL_LOSS_REGISTRY",
    "register_distill_loss",
    "unregister_distill_loss",
    "get_distill_loss",
    "build_distill_loss",
    "available_distill_losses",
    "distill_loss_config",
]

NO_DISTILLATION = "none"

#: The registry behind :func:`register_distill_loss` (fvcore ``Registry`` form).
DISTILL_LOSS_REGISTRY = NamedRegistry("distillation loss")
_CONFIG: dict[str, dict[str, Any]] = {}  # lower-cased name -> config section defaults


def _check_config(name: str, factory: Callable[..., Any], config: Mapping[str, Any]) -> dict:
    accepted = accepted_kwargs(factory)
    out = {}
    for key, value in config.items():
        if not isinstance(key, str) or not key or key != key.upper():
            raise ValueError(
                f"config keys of distillation loss {name!r} must be UPPER_SNAKE strings; "
                f"got {key!r}"
            )
        if accepted is not None and key.lower() not in accepted:
            raise ValueError(
                f"config key {key!r} of distillation loss {name!r} is not a keyword argument "
                f"of its factory ({sorted(accepted)})"
            )
        out[key] = value
    return out


def register_distill_loss(
    name: str,
    factory: Callable[..., Any] | None = None,
    *,
    override: bool = False,
    config: Mapping[str, Any] | None = None,
):
    """Register ``factory`` under ``name``; usable as a decorator or a plain call.

    Args:
        name: the (case-insensitive) name that configs select.
        factory: a callable taking keyword hyperparameters; omit to use as a decorator.
        override: replace an existing entry of the same name instead of raising.
        config: optional config section of the loss: ``{UPPER_SNAKE_KEY: default}``, each key
            lower-cased being a keyword argument of ``factory``.

    Returns:
        ``factory`` (or, as a decorator, a function returning the decorated object unchanged).

    Raises:
        ValueError: if the name is empty, reserved, or taken (unless ``override=True``), or a
            config key is not a keyword argument of the factory.
    """
    if isinstance(name, str) and name.lower() == NO_DISTILLATION:
        raise ValueError(f"{NO_DISTILLATION!r} is reserved for 'no distillation term'")

    def _register(obj: Callable[..., Any]) -> Callable[..., Any]:
        section = _check_config(name, obj, config or {}) if callable(obj) else {}
        DISTILL_LOSS_REGISTRY.register_as(name, obj, override=override)
        _CONFIG[name.lower()] = section
        return obj

    return _register if factory is None else _register(factory)


def unregister_distill_loss(name: str) -> Callable[..., Any]:
    """Remove the loss registered under ``name`` (and its config section declaration).

    Configs made afterwards have no section for it; configs dumped while it was registered
    (they hold its section) need it registered again to be loaded.

    Returns:
        The removed factory.

    Raises:
        KeyError: for an unknown name.
    """
    factory = get_distill_loss(name)
    DISTILL_LOSS_REGISTRY.remove(name)
    _CONFIG.pop(str(name).lower(), None)
    return factory


def available_distill_losses() -> list[str]:
    """Registered names, plus ``"none"``, sorted."""
    return sorted([*DISTILL_LOSS_REGISTRY.names(), NO_DISTILLATION])


def get_distill_loss(name: str) -> Callable[..., Any]:
    """The factory registered under ``name`` (case-insensitive).

    Raises:
        KeyError: for an unknown name; the message lists the known names.
    """
    if str(name).lower() == NO_DISTILLATION:
        raise KeyError(f"{NO_DISTILLATION!r} is 'no distillation term' and has no factory")
    try:
        return DISTILL_LOSS_REGISTRY.get(name)
    except KeyError:
        raise KeyError(
            f"unknown distillation loss {name!r}; known: {', '.join(available_distill_losses())}"
        ) from None


def distill_loss_config(name: str) -> dict[str, Any]:
    """The config section ``{KEY: default}`` declared when ``name`` was registered ({} if none)."""
    get_distill_loss(name)  # KeyError for unknown names
    return dict(_CONFIG.get(str(name).lower(), {}))


def build_distill_loss(name: str, **kwargs: Any):
    """Build the loss registered under ``name`` with keyword hyperparameters.

    Keyword arguments the factory does not accept are an error (nothing is silently ignored).

    Returns:
        The loss, or ``None`` for ``"none"``.

    Raises:
        KeyError: unknown name.
        TypeError: a keyword argument the factory does not take.
    """
    if str(name).lower() == NO_DISTILLATION:
        return None
    factory = get_distill_loss(name)
    check_kwargs(factory, kwargs, f"distillation loss {name!r}")
    return factory(**kwargs)


register_distill_loss("luminet", build_luminet_loss)
register_distill_loss("kd", KDLoss)
register_distill_loss("dkd", DKDLoss)
