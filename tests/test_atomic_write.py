"""luminet.atomic_io: a write replaces the file whole, or leaves it as it was."""

import pytest
import torch

from luminet.atomic_io import atomic_torch_save, atomic_write


def test_success_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with atomic_write(path, "w") as f:
        f.write("new")
        assert path.read_text() == "old"  # not visible before the block ends
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_exception_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "w.pth"
    atomic_torch_save({"x": torch.ones(2)}, path)
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(path) as f:
            f.write(b"partial")
            raise RuntimeError("boom")
    assert torch.equal(torch.load(path)["x"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pth"]
