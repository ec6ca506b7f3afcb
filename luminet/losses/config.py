"""One rule from a config section to the keyword arguments of a distillation loss.

The loss selected by name ``N`` reads its section (detection: ``MODEL.DISTILL.<N>``,
classification: ``<N>``, upper case):

* every key of the section, lower-cased, is one keyword argument of the loss's factory, unless
  the caller's alias table renames it (classification keeps the official key ``T`` for
  ``temperature``) or lists it as a key the caller reads itself (e.g. ``CE_WEIGHT``);
* *shared* keys outside the section (detection: ``MODEL.DISTILL.TEMPERATURE``) are passed to
  every loss whose factory takes them; set to a non-default value for a loss that does not take
  them, they are an error (nothing is silently ignored);
* every argument is checked against the factory's signature before the call, and a
  ``ValueError``/``TypeError`` of the factory is re-raised naming the config key(s) of the
  argument(s) it is about.

A third party's loss gets its section the same way: declared at registration
(``register_distill_loss(name, factory, config={...})``) or added to the config by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from luminet.registry import accepted_kwargs

from .registry import build_distill_loss, get_distill_loss

__all__ = [
    "LossArgument",
    "SharedKey",
    "distill_loss_arguments",
    "build_distill_loss_from_config",
]


@dataclass(frozen=True)
class LossArgument:
    """One keyword argument of a loss and the config key it came from."""

    key: str
    value: Any


@dataclass(frozen=True)
class SharedKey:
    """A config key outside the loss's section, passed to every loss that takes ``kwarg``."""

    kwarg: str
    key: str
    value: Any
    default: Any


def distill_loss_arguments(
    name: str,
    section: Mapping[str, Any] | None,
    section_key: str,
    *,
    aliases: Mapping[str, str] | None = None,
    skip: Iterable[str] = (),
    shared: Iterable[SharedKey] = (),
) -> dict[str, LossArgument]:
    """The keyword arguments of loss ``name`` from its config ``section`` (see module docstring).

    Args:
        name: the registered loss name.
        section: the loss's config section (a ``CfgNode`` or mapping), or None if there is none.
        section_key: the section's full config key, for messages (e.g. "MODEL.DISTILL.DKD").
        aliases: section key -> keyword argument, for keys whose lower-cased name is not it.
        skip: section keys that are not loss arguments (read by the caller).
        shared: keys outside the section.

    Returns:
        ``{kwarg: LossArgument(config key, value)}``.

    Raises:
        KeyError: unknown loss name.
        ValueError: a key that is not an argument of the loss, or a shared key set for a loss
            that does not take it.
    """
    factory = get_distill_loss(name)
    accepted = accepted_kwargs(factory)
    aliases = dict(aliases or {})
    skip = set(skip)
    args: dict[str, LossArgument] = {}
    for key, value in (section or {}).items():
        if key in skip:
            continue
        kwarg = aliases.get(key, key.lower())
        full = f"{section_key}.{key}"
        if accepted is not None and kwarg not in accepted:
            raise ValueError(
                f"{full} is not an argument of distillation loss {name!r}: its section keys are "
                f"its keyword arguments in upper case ({sorted(k.upper() for k in accepted)})"
            )
        args[kwarg] = LossArgument(full, value)
    for s in shared:
        if s.kwarg in args:
            raise ValueError(
                f"{s.key} and {args[s.kwarg].key} both set argument {s.kwarg!r} of distillation "
                f"loss {name!r}; keep one"
            )
        if accepted is None or s.kwarg in accepted:
            args[s.kwarg] = LossArgument(s.key, s.value)
        elif s.value != s.default:
            raise ValueError(
                f"{s.key} is {s.value!r}, but distillation loss {name!r} takes no {s.kwarg!r} "
                f"(its arguments: {sorted(accepted)}); leave {s.key} at {s.default!r}"
            )
    return args


def _keys_named_in(message: str, args: Mapping[str, LossArgument]) -> list[str]:
    return [
        f"{a.key} {a.value!r}"
        for kwarg, a in args.items()
        if re.search(rf"(?<![A-Za-z0-9_]){re.escape(kwarg)}(?![A-Za-z0-9_])", message)
    ]


def build_distill_loss_from_config(
    name: str,
    section: Mapping[str, Any] | None,
    section_key: str,
    *,
    aliases: Mapping[str, str] | None = None,
    skip: Iterable[str] = (),
    shared: Iterable[SharedKey] = (),
):
    """Build loss ``name`` from its config section; errors name the config keys.

    Arguments as for :func:`distill_loss_arguments`.

    Returns:
        The loss (None for "none").

    Raises:
        KeyError: unknown loss name.
        ValueError: any problem with its arguments, naming the config key(s).
    """
    args = distill_loss_arguments(
        name, section, section_key, aliases=aliases, skip=skip, shared=shared
    )
    try:
        return build_distill_loss(name, **{k: a.value for k, a in args.items()})
    except (ValueError, TypeError) as e:
        named = _keys_named_in(str(e), args)
        where = ", ".join(named) if named else f"the arguments of {section_key} ({args or 'none'})"
        raise ValueError(f"{where}: distillation loss {name!r}: {e}") from e
