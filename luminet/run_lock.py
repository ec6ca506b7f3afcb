"""One run per output folder: an exclusive lock file that dies with its process.

The lock is ``flock`` on ``<folder>/run.lock``. The operating system releases it when the
holding process ends in any way (also ``kill -9``), so a stale lock never blocks a resume.
Processes forked by the holder (e.g. data-loader workers) close their copy at once, so an
orphaned worker cannot keep a killed run's folder locked.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["RunLock", "OutputDirLockedError", "LOCK_FILE"]

logger = logging.getLogger(__name__)

#: Name of the lock file inside the output folder.
LOCK_FILE = "run.lock"

_FDS_TO_CLOSE_IN_CHILDREN: set[int] = set()


def _close_lock_fds_in_child() -> None:
    for fd in list(_FDS_TO_CLOSE_IN_CHILDREN):
        try:
            os.close(fd)
        except OSError:
            pass
    _FDS_TO_CLOSE_IN_CHILDREN.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_lock_fds_in_child)


class OutputDirLockedError(RuntimeError):
    """Another process holds the lock of the output folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """Exclusive lock of ``folder`` for one run; use as a context manager or acquire/release.

    Args:
        folder: the output folder (created if missing).
        what: the config key or option that names the folder, for the error message.
    """

    def __init__(self, folder: str, what: str = "OUTPUT_DIR"):
        self.folder = os.path.abspath(folder)
        self.path = os.path.join(self.folder, LOCK_FILE)
        self.what = what
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _owner(self) -> dict:
        try:
            with open(self.path) as f:
                return json.loads(f.read() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> RunLock:
        """Take the lock, or raise.

        Raises:
            OutputDirLockedError: when another process holds it (naming that process).
        """
        if self._fd is not None:
            return self
        os.makedirs(self.folder, exist_ok=True)
        if fcntl is None:  # pragma: no cover
            logger.warning("no fcntl on this platform: %s is not locked", self.folder)
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        # A holder that was just killed may leave forked children for a moment; wait briefly
        # when the recorded owner is no longer alive.
        deadline = time.monotonic() + 10.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                owner = self._owner()
                pid = owner.get("pid")
                if isinstance(pid, int) and not _pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                os.close(fd)
                raise OutputDirLockedError(
                    f"{self.what} {self.folder} is in use by another run (pid {pid}, host "
                    f"{owner.get('host')}, started {owner.get('started')}, command "
                    f"{owner.get('command')!r}); wait for it to finish or choose another "
                    f"{self.what}"
                ) from None
        os.ftruncate(fd, 0)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv),
        }
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
        self._fd = fd
        _FDS_TO_CLOSE_IN_CHILDREN.add(fd)
        return self

    def release(self) -> None:
        """Release the lock (the file stays; its content names the last holder)."""
        if self._fd is None:
            return
        _FDS_TO_CLOSE_IN_CHILDREN.discard(self._fd)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self):
        if self._fd is not None:
            try:
                self.release()
            except Exception:
                pass
