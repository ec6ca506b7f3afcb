"""A DetectionCheckpointer that writes atomically and reports how well loaded weights fit.

* Every checkpoint is written to a temporary file in the same folder, flushed, fsynced and
  renamed over its name (:func:`luminet.atomic_io.atomic_write`); ``last_checkpoint`` is written
  the same way, after the checkpoint. A process killed at any moment leaves the previous
  checkpoint and pointer intact: never a truncated ``model_final.pth``, never a pointer to one.
* Loading records a :class:`WeightsLoadReport` (how many of the model's keys the file filled),
  so callers can refuse weights that do not fit (see :mod:`luminet_det.engine.weights_check`).
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
from typing import Any

from detectron2.checkpoint import DetectionCheckpointer

from luminet.atomic_io import TEMP_SUFFIX, atomic_torch_save, atomic_write

__all__ = ["ResumableCheckpointer", "WeightsLoadReport", "LAST_CHECKPOINT_FILE"]

logger = logging.getLogger(__name__)

#: detectron2's pointer to the newest checkpoint of an output folder.
LAST_CHECKPOINT_FILE = "last_checkpoint"


@dataclasses.dataclass
class WeightsLoadReport:
    """What a load did: keys of the model, of the file, and those that did not fit."""

    path: str
    model_keys: list[str]
    file_keys: list[str]
    missing: list[str]
    unexpected: list[str]
    wrong_shape: list[str]

    @property
    def matched(self) -> int:
        """Number of the model's keys that received a tensor from the file."""
        return len(self.model_keys) - len(set(self.missing) & set(self.model_keys))


class ResumableCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` with atomic saves and a report of the last load.

    Arguments are those of ``DetectionCheckpointer``; ``last_load_report`` is set by every
    load that reads weights.
    """

    def __init__(self, model, save_dir: str = "", **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.last_load_report: WeightsLoadReport | None = None
        self._loading_path = ""

    def _local(self) -> bool:
        return bool(self.save_dir) and "://" not in self.save_dir

    def save(self, name: str, **kwargs: Any) -> None:
        """Write ``<save_dir>/<name>.pth`` atomically, then point ``last_checkpoint`` at it."""
        if not self.save_dir or not self.save_to_disk:
            return
        if not self._local():
            super().save(name, **kwargs)
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", path)
        atomic_torch_save(data, path)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Write ``last_checkpoint`` atomically (after the checkpoint it names)."""
        if not self._local():
            super().tag_last_checkpoint(last_filename_basename)
            return
        with atomic_write(os.path.join(self.save_dir, LAST_CHECKPOINT_FILE), "w") as f:
            f.write(last_filename_basename)

    def get_checkpoint_file(self) -> str:
        """The file that ``last_checkpoint`` names.

        Raises:
            FileNotFoundError: when ``last_checkpoint`` names a file that does not exist.
        """
        path = super().get_checkpoint_file()
        if path and self._local() and not os.path.isfile(path):
            present = sorted(os.path.basename(p) for p in self.get_all_checkpoint_files())
            raise FileNotFoundError(
                f"{os.path.join(self.save_dir, LAST_CHECKPOINT_FILE)} names {path}, which does "
                f"not exist (checkpoints present: {present or 'none'}); restore the file or "
                "write the name of an existing checkpoint into last_checkpoint"
            )
        return path

    def remove_stale_temporary_files(self) -> list[str]:
        """Delete what interrupted atomic writes left in ``save_dir`` (call it only while
        holding the folder's run lock) and return their names."""
        if not self._local() or not os.path.isdir(self.save_dir):
            return []
        stale = []
        for pattern in (f"*.pth.*{TEMP_SUFFIX}", f"{LAST_CHECKPOINT_FILE}.*{TEMP_SUFFIX}"):
            stale += glob.glob(os.path.join(self.save_dir, pattern))
        for path in sorted(stale):
            logger.warning("Removing %s, left by an interrupted checkpoint write", path)
            os.remove(path)
        return sorted(os.path.basename(p) for p in stale)

    def load(self, path: str, *args, **kwargs):
        self._loading_path = path
        try:
            return super().load(path, *args, **kwargs)
        finally:
            self._loading_path = ""

    def _load_model(self, checkpoint: Any):
        file_keys = list(checkpoint.get("model", {}))
        incompatible = super()._load_model(checkpoint)
        if incompatible is not None:
            wrong = [k for k, *_ in incompatible.incorrect_shapes]
            self.last_load_report = WeightsLoadReport(
                path=self._loading_path,
                model_keys=list(self.model.state_dict()),
                file_keys=file_keys,
                missing=sorted(set(incompatible.missing_keys) | set(wrong)),
                unexpected=list(incompatible.unexpected_keys),
                wrong_shape=wrong,
            )
        return incompatible
