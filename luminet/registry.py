"""One registry form for every "chosen by name" thing of the project (losses, models, datasets).

:class:`NamedRegistry` is fvcore's :class:`~fvcore.common.registry.Registry` (the form detectron2
uses for its own components) with one case rule and the checks this project relies on:

* names are matched **case-insensitively** and listed as they were registered (so
  ``"ResNet50"``, ``"resnet50"`` and ``"RESNET50"`` name the same model, and two names that differ
  only in case cannot both be registered);
* an explicit name (``register_as``), and ``override=True`` to replace an entry on purpose;
* :func:`check_kwargs`: keyword options a factory does not take are an error, never dropped.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fvcore.common.registry import Registry

__all__ = ["NamedRegistry", "check_kwargs", "accepted_kwargs"]


def accepted_kwargs(factory: Callable[..., Any]) -> set[str] | None:
    """Names of the keyword arguments ``factory`` takes; None if it takes ``**kwargs`` or has no
    inspectable signature (then any keyword is accepted)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return {
        k
        for k, p in params.items()
        if k != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def check_kwargs(
    factory: Callable[..., Any], kwargs: Iterable[str], what: str, ignore: Iterable[str] = ()
) -> None:
    """Raise ``TypeError`` if ``factory`` does not take every name in ``kwargs``.

    Args:
        factory: the callable to check.
        kwargs: keyword names that will be passed.
        what: the factory's description for the message, e.g. "distillation loss 'kd'".
        ignore: names not to list among the accepted ones (e.g. "num_classes").
    """
    accepted = accepted_kwargs(factory)
    if accepted is None:
        return
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        shown = sorted(accepted - set(ignore))
        raise TypeError(f"{what} does not take {unknown}; it takes {shown}")


class NamedRegistry(Registry):
    """fvcore's ``Registry`` with case-insensitive names, explicit names and ``override``.

    Args:
        name: what the registry holds, for messages (e.g. "distillation loss").
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._by_key: dict[str, str] = {}  # lower-cased name -> registered spelling

    def _do_register(self, name: str, obj: Any, override: bool = False) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self._name} needs a non-empty string name; got {name!r}")
        if not callable(obj):
            raise TypeError(
                f"{self._name} {name!r} must be registered with a callable; got {obj!r}"
            )
        key = name.lower()
        old = self._by_key.get(key)
        if old is not None and self._obj_map[old] is not obj and not override:
            raise ValueError(
                f"a {self._name} named {old!r} is already registered ({self._obj_map[old]!r}); "
                "names are case-insensitive; pass override=True to replace it"
            )
        if old is not None:
            del self._obj_map[old]
        self._by_key[key] = name
        self._obj_map[name] = obj

    def register_as(
        self, name: str, obj: Any = None, *, override: bool = False
    ) -> Callable[[Any], Any] | Any:
        """Register ``obj`` under ``name``; without ``obj``, a decorator. Returns the object."""

        def deco(o: Any) -> Any:
            self._do_register(name, o, override=override)
            return o

        return deco if obj is None else deco(obj)

    def remove(self, name: str) -> Any:
        """Unregister ``name`` (any case) and return its object.

        Raises:
            KeyError: for an unknown name.
        """
        canonical = self.canonical(name)
        del self._by_key[canonical.lower()]
        return self._obj_map.pop(canonical)

    def canonical(self, name: str) -> str:
        """The registered spelling of ``name`` (any case).

        Raises:
            KeyError: for an unknown name; the message lists the known names.
        """
        key = str(name).lower()
        if key not in self._by_key:
            raise KeyError(f"unknown {self._name} {name!r}; known: {', '.join(self.names())}")
        return self._by_key[key]

    def get(self, name: str) -> Any:
        """The object registered under ``name`` (any case); ``KeyError`` listing the known names."""
        return self._obj_map[self.canonical(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._by_key

    def names(self) -> list[str]:
        """Registered names (as registered), sorted."""
        return sorted(self._obj_map)

    def items(self) -> Mapping[str, Any]:
        """``{name: object}`` (a copy)."""
        return dict(self._obj_map)
