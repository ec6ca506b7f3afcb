"""Atomic files, the run lock and the atomic detection checkpointer (writes failing midway)."""

import json
import os
import subprocess
import sys
import time

import pytest
import torch
from detectron2.modeling import build_model

import luminet_det.engine.checkpointer as checkpointer_module
from luminet.atomic_io import atomic_torch_save, atomic_write
from luminet.run_lock import LOCK_FILE, OutputDirLockedError, RunLock
from luminet_det.engine import ResumableCheckpointer
from luminet_det.testing import tiny_rcnn_cfg


class _Boom(RuntimeError):
    pass


def _half_then_fail(obj, f):
    """A torch.save that writes part of the data, then dies (like a kill mid-write)."""
    f.write(b"PK\x03\x04 partial checkpoint bytes" * 100)
    raise _Boom("killed mid-write")


def test_atomic_write_replaces_only_on_success(tmp_path):
    path = tmp_path / "a.txt"
    with atomic_write(path, "w") as f:
        f.write("one")
    assert path.read_text() == "one"
    with pytest.raises(_Boom):
        with atomic_write(path, "w") as f:
            f.write("two, half written")
            raise _Boom()
    assert path.read_text() == "one"
    assert os.listdir(tmp_path) == ["a.txt"]  # no temporary file left
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(path, "a"):
            pass


def test_atomic_torch_save_failing_midway_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pth"
    atomic_torch_save({"x": torch.arange(3)}, path)
    monkeypatch.setattr(torch, "save", _half_then_fail)
    with pytest.raises(_Boom):
        atomic_torch_save({"x": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path)["x"], torch.arange(3))
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pth"]


def test_run_lock_refuses_a_second_process_and_dies_with_its_holder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import time; from luminet.run_lock import RunLock; "
         f"lock = RunLock({str(tmp_path)!r}).acquire(); print('locked', flush=True); "
         "time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(
            OutputDirLockedError, match=rf"in use by another run \(pid {holder.pid}"
        ):
            RunLock(str(tmp_path)).acquire()
        info = json.loads((tmp_path / LOCK_FILE).read_text())
        assert info["pid"] == holder.pid
    finally:
        holder.kill()  # SIGKILL: the operating system releases the lock
        holder.wait()
    t0 = time.monotonic()
    with RunLock(str(tmp_path)) as lock:
        assert lock.held
    assert time.monotonic() - t0 < 5
    # in one process, a second lock object on the same folder is refused too
    with RunLock(str(tmp_path)):
        with pytest.raises(OutputDirLockedError):
            RunLock(str(tmp_path)).acquire()


@pytest.fixture()
def tiny_model():
    torch.manual_seed(0)
    return build_model(tiny_rcnn_cfg())


def test_killed_final_save_keeps_the_previous_final_weights(tmp_path, tiny_model, monkeypatch):
    """Extending a finished run: the rewrite of model_final.pth dies midway. The old file and
    last_checkpoint stay intact and loadable (before: a truncated file that --resume named)."""
    ckpt = ResumableCheckpointer(tiny_model, save_dir=str(tmp_path))
    ckpt.save("model_final", iteration=9)
    before = torch.load(tmp_path / "model_final.pth", weights_only=True)
    with torch.no_grad():
        for p in tiny_model.parameters():
            p.add_(1.0)
    monkeypatch.setattr(checkpointer_module, "atomic_torch_save", _fail_save)
    with pytest.raises(_Boom):
        ckpt.save("model_final", iteration=19)
    monkeypatch.undo()
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    after = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert after["iteration"] == 9
    for k, v in before["model"].items():
        assert torch.equal(after["model"][k], v)
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_final.pth"]
    # and a fresh checkpointer resumes from it
    fresh = ResumableCheckpointer(build_model(tiny_rcnn_cfg()), save_dir=str(tmp_path))
    assert fresh.resume_or_load("", resume=True)["iteration"] == 9


def _fail_save(obj, path):
    with atomic_write(path, "wb") as f:
        _half_then_fail(obj, f)


def test_last_checkpoint_is_written_after_the_checkpoint(tmp_path, tiny_model, monkeypatch):
    ckpt = ResumableCheckpointer(tiny_model, save_dir=str(tmp_path))
    ckpt.save("model_0000004", iteration=4)
    monkeypatch.setattr(checkpointer_module, "atomic_torch_save", _fail_save)
    with pytest.raises(_Boom):
        ckpt.save("model_0000009", iteration=9)
    monkeypatch.undo()
    # the failed checkpoint never became "last": the pointer still names a complete file
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"
    assert not (tmp_path / "model_0000009.pth").exists()


def test_stale_temporary_files_are_removed_and_missing_last_file_is_named(tmp_path, tiny_model):
    ckpt = ResumableCheckpointer(tiny_model, save_dir=str(tmp_path))
    (tmp_path / "model_final.pth.abc123.tmp").write_bytes(b"half")  # left by a kill -9
    (tmp_path / "last_checkpoint.x1.tmp").write_text("model_final.pth")
    (tmp_path / "notes.tmp").write_text("not ours")
    assert ckpt.remove_stale_temporary_files() == ["last_checkpoint.x1.tmp",
                                                   "model_final.pth.abc123.tmp"]  # fmt: skip
    assert sorted(os.listdir(tmp_path)) == ["notes.tmp"]
    (tmp_path / "last_checkpoint").write_text("model_0000099.pth")
    with pytest.raises(FileNotFoundError, match=r"names .*model_0000099.pth, which does not exist"):
        ckpt.resume_or_load("", resume=True)
