"""Loading and checking configs: YAML files (with ``_BASE_``) plus ``KEY VALUE`` overrides."""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Sequence

from fvcore.common.config import CfgNode

from luminet.losses import DISTILL_LOSS_REGISTRY, available_distill_losses, distill_loss_config

from .defaults import DEFAULTS, NEW_LOSS_SECTION_DEFAULTS

__all__ = ["get_cfg", "load_config", "check_config", "teacher_names"]

logger = logging.getLogger(__name__)


def get_cfg() -> CfgNode:
    """A fresh copy of the default config, with a section for every registered loss.

    A loss registered by a third party (``register_distill_loss(name, factory, config=...)``)
    gets section ``NAME`` with ``CE_WEIGHT 1.0``, ``WARMUP 0`` and its declared config keys.
    """
    cfg = DEFAULTS.clone()
    for name in DISTILL_LOSS_REGISTRY.names():
        section = name.upper()
        if section not in cfg:
            cfg[section] = CfgNode({**NEW_LOSS_SECTION_DEFAULTS, **distill_loss_config(name)})
    return cfg


def _all_keys(cfg: CfgNode, prefix: str = "") -> list[str]:
    keys = []
    for k, v in cfg.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, CfgNode):
            keys.extend(_all_keys(v, full + "."))
    return keys


def _explain_key_error(err: KeyError, source: str, cfg: CfgNode) -> KeyError:
    msg = str(err.args[0]) if err.args else str(err)
    if "Non-existent config key" not in msg:
        return err
    bad = msg.split(":", 1)[1].strip()
    close = difflib.get_close_matches(bad, _all_keys(cfg), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return KeyError(
        f"unknown config key {bad!r} in {source}{hint} (see luminet/config/defaults.py)"
    )


def load_config(
    config_file: str | os.PathLike | None = None, opts: Sequence[str] | None = None
) -> CfgNode:
    """Defaults, then ``config_file`` (``_BASE_`` allowed), then ``opts`` (``[KEY, VALUE, ...]``).

    Args:
        config_file: a YAML file, or None for the defaults only.
        opts: command-line overrides as a flat list of alternating keys and values.

    Returns:
        A frozen, checked config.

    Raises:
        FileNotFoundError: when ``config_file`` does not exist.
        KeyError: on a key that is not declared in ``luminet/config/defaults.py``.
        ValueError: on an odd number of override items or inconsistent values.
    """
    cfg = get_cfg()
    if config_file is not None:
        config_file = os.fspath(config_file)
        if not os.path.isfile(config_file):
            raise FileNotFoundError(f"config file {config_file!r} does not exist")
        try:
            cfg.merge_from_file(config_file)
        except KeyError as e:
            raise _explain_key_error(e, f"config file {config_file!r}", cfg) from None
    if opts:
        opts = list(opts)
        if len(opts) % 2:
            raise ValueError(
                f"command-line overrides must be KEY VALUE pairs; got an odd number: {opts}"
            )
        known = set(_all_keys(cfg))
        for key in opts[0::2]:
            if key not in known:
                err = KeyError(f"Non-existent config key: {key}")
                raise _explain_key_error(err, "the command-line overrides", cfg)
            if isinstance(cfg.get(key.split(".")[0]), CfgNode) and "." not in key:
                raise KeyError(f"config override {key!r} names a section, not a key")
        try:
            cfg.merge_from_list(opts)
        except AssertionError as e:  # yacs reports bad values with assertions
            raise ValueError(f"bad command-line override: {e}") from None
    check_config(cfg)
    cfg.freeze()
    return cfg


def teacher_names(cfg: CfgNode) -> list[str]:
    """The teacher model names: ``DISTILLER.TEACHERS``, else ``[DISTILLER.TEACHER]``, else []."""
    single, many = cfg.DISTILLER.TEACHER, list(cfg.DISTILLER.TEACHERS)
    if single and many:
        raise ValueError(
            f"set DISTILLER.TEACHER ({single!r}) or DISTILLER.TEACHERS ({many}), not both"
        )
    return many if many else ([single] if single else [])


def check_config(cfg: CfgNode) -> None:
    """Raise ``ValueError``/``KeyError`` on values that cannot work together."""
    kind = str(cfg.DISTILLER.TYPE).lower()
    if kind not in available_distill_losses():
        raise KeyError(
            f"unknown DISTILLER.TYPE {cfg.DISTILLER.TYPE!r}; known: "
            f"{', '.join(available_distill_losses())}"
        )
    if kind.upper() not in cfg:
        raise KeyError(
            f"DISTILLER.TYPE {cfg.DISTILLER.TYPE!r} needs a config section {kind.upper()!r} "
            "with its CE_WEIGHT, WARMUP and loss hyperparameters (register the loss before "
            "loading the config)"
        )
    names = teacher_names(cfg)
    weights = list(cfg.DISTILLER.TEACHER_WEIGHTS)
    if weights and len(weights) != len(names):
        raise ValueError(
            f"DISTILLER.TEACHER_WEIGHTS has {len(weights)} path(s) for {len(names)} teacher(s) "
            f"{names}; give one checkpoint per teacher, in order"
        )
    if kind != "none" and not names:
        raise ValueError(f"DISTILLER.TYPE {kind!r} needs a teacher (DISTILLER.TEACHER(S))")
    if not cfg.DISTILLER.STUDENT:
        raise ValueError("DISTILLER.STUDENT is empty")
    s = cfg.SOLVER
    if str(s.TYPE).upper() != "SGD":
        raise ValueError(f"SOLVER.TYPE {s.TYPE!r} is not supported; only 'SGD'")
    for key in ("EPOCHS", "BATCH_SIZE"):
        if int(s[key]) <= 0:
            raise ValueError(f"SOLVER.{key} must be > 0, got {s[key]!r}")
    if not float(s.LR) > 0:
        raise ValueError(f"SOLVER.LR must be > 0, got {s.LR!r}")
    stages = [int(x) for x in s.LR_DECAY_STAGES]
    if stages != sorted(stages) or any(x <= 0 for x in stages):
        raise ValueError(f"SOLVER.LR_DECAY_STAGES must be increasing positive epochs: {stages}")
    if int(cfg.DATASET.TEST.BATCH_SIZE) <= 0:
        raise ValueError(f"DATASET.TEST.BATCH_SIZE must be > 0, got {cfg.DATASET.TEST.BATCH_SIZE}")
    if int(cfg.DATASET.NUM_WORKERS) < 0:
        raise ValueError(f"DATASET.NUM_WORKERS must be >= 0, got {cfg.DATASET.NUM_WORKERS}")
    section = cfg[kind.upper()]
    if "WARMUP" in section and float(section.WARMUP) < 0:
        raise ValueError(f"{kind.upper()}.WARMUP must be >= 0, got {section.WARMUP}")
