"""Console + file logging for the command-line tools (rank 0 logs, others only warn)."""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["setup_logging"]


def setup_logging(output_dir: str | None = None, rank: int = 0) -> logging.Logger:
    """Configure the ``luminet`` logger: INFO to stderr (and ``output_dir/log.txt``) on rank 0.

    Calling it again replaces the handlers it installed before.
    """
    log = logging.getLogger("luminet")
    log.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    log.propagate = False
    for h in list(log.handlers):
        if getattr(h, "_luminet", False):
            log.removeHandler(h)
            h.close()
    fmt = logging.Formatter(
        f"[%(asctime)s rank{rank}] %(name)s %(levelname)s: %(message)s", "%m/%d %H:%M:%S"
    )
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if output_dir and rank == 0:
        os.makedirs(output_dir, exist_ok=True)
        handlers.append(logging.FileHandler(os.path.join(output_dir, "log.txt")))
    for h in handlers:
        h.setFormatter(fmt)
        h._luminet = True  # type: ignore[attr-defined]
        log.addHandler(h)
    return log
