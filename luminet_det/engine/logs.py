"""Send the project's log records (``luminet_det.*``, ``luminet.*``) where detectron2's go."""

from __future__ import annotations

import logging

__all__ = ["PROJECT_LOGGERS", "attach_project_loggers"]

#: Loggers of this project.
PROJECT_LOGGERS = ("luminet_det", "luminet")

_ATTACHED: dict[str, list[logging.Handler]] = {}


def attach_project_loggers(source: str = "detectron2", level: int = logging.INFO) -> None:
    """Give the project's loggers the handlers of the ``source`` logger.

    After ``detectron2.engine.default_setup`` (which sets up the ``detectron2`` logger: the
    console on the main process and ``OUTPUT_DIR/log.txt``, ``log.txt.rank<N>`` elsewhere), the
    project's INFO records and warnings appear on the console and in the same ``log.txt``, in
    order (the same stream). Calling it again replaces the handlers it attached before.
    """
    handlers = list(logging.getLogger(source).handlers)
    for name in PROJECT_LOGGERS:
        log = logging.getLogger(name)
        for h in _ATTACHED.pop(name, []):
            log.removeHandler(h)
        for h in handlers:
            log.addHandler(h)
        _ATTACHED[name] = handlers
        log.setLevel(level)
