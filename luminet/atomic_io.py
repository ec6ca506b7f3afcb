"""Files that are either fully written or not there: write to a temporary file, then rename.

A process killed at any moment (``kill -9``, power loss after the rename) leaves either the
previous version of the target or the new one, never a truncated file. Used for every checkpoint
of this project (detection and classification) and for detectron2's ``last_checkpoint`` pointer.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any

import torch

__all__ = ["atomic_write", "atomic_torch_save", "TEMP_SUFFIX"]

#: Suffix of the temporary files; a file ``<name>.<random>.tmp`` beside ``<name>`` is what a
#: killed writer leaves behind.
TEMP_SUFFIX = ".tmp"


def _fsync_folder(folder: str) -> None:
    """Make a rename inside ``folder`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not support fsync on folders
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file in the folder of ``path``; on success it replaces ``path``.

    On normal exit of the ``with`` block the file is flushed and fsynced, renamed over ``path``
    with :func:`os.replace` (atomic on POSIX), and the folder is fsynced. If the block raises, the
    temporary file is removed and the exception propagates; ``path`` is untouched.

    Args:
        path: the file to write; its folder is created if needed.
        mode: ``"wb"`` (binary) or ``"w"`` (text).

    Yields:
        The open temporary file.

    Raises:
        ValueError: for a mode other than ``"w"`` / ``"wb"``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write supports mode 'w' or 'wb'; got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=TEMP_SUFFIX, dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` through :func:`atomic_write`."""
    with atomic_write(path, "wb") as f:
        torch.save(obj, f)
