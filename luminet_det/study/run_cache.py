"""Finished runs on disk, keyed by a hash of everything that determines them.

A record is a JSON file written to a temporary name and renamed (atomic on POSIX), after any
array file of the same run: an interrupted study leaves either a complete run or nothing, and
``tools/study.py`` continues with the runs whose records are missing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["RunCache", "config_hash"]


def config_hash(payload: dict) -> str:
    """16 hex digits of the SHA-1 of ``payload`` as canonical JSON (sorted keys)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


class RunCache:
    """Records (JSON) and arrays (``.npz``) of finished runs under ``root/<kind>/<key>.*``.

    Args:
        root: cache directory (created on first write).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def _path(self, kind: str, key: str, suffix: str) -> Path:
        return self.root / kind / f"{key}{suffix}"

    def load(self, kind: str, key: str) -> dict | None:
        """The record of run ``key``, or None if it has not finished."""
        path = self._path(kind, key, ".json")
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    def load_arrays(self, kind: str, key: str) -> dict[str, np.ndarray]:
        """The arrays stored with run ``key``.

        Raises:
            FileNotFoundError: if the run stored none.
        """
        with np.load(self._path(kind, key, ".npz")) as f:
            return {k: f[k] for k in f.files}

    def store(
        self, kind: str, key: str, record: dict, arrays: dict[str, np.ndarray] | None = None
    ) -> dict:
        """Write ``arrays`` (if any), then ``record`` (the commit point); return the record."""
        folder = self.root / kind
        folder.mkdir(parents=True, exist_ok=True)
        if arrays is not None:
            final = self._path(kind, key, ".npz")
            tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
            os.replace(tmp, final)
        final = self._path(kind, key, ".json")
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**record, "key": key}, indent=1, sort_keys=True))
        os.replace(tmp, final)
        return {**record, "key": key}
