"""The classification trainer: exact resume after an interruption, outputs, tools, DDP."""

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from luminet.config import load_config
from luminet.distillers import Distiller
from luminet.engine import BEST_FILE, LAST_FILE, METRICS_FILE, RESUME_FILE, ClsTrainer
from luminet.models import build_model, load_checkpoint

ROOT = os.path.join(os.path.dirname(__file__), "..")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
ITERS_PER_EPOCH = 12  # 1,438 training digits / batch 128


@pytest.fixture(scope="module")
def teacher_path(tmp_path_factory):
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("teacher") / "resnet8.pth"
    torch.save({"model": build_model("resnet8", 10, in_channels=1).state_dict()}, path)
    return str(path)


def _opts(out, teacher_path, epochs=3, kind="luminet", extra=()):
    return [
        "DATASET.TYPE", "digits", "DATASET.IMAGE_SIZE", "8", "DATASET.NUM_WORKERS", "0",
        "DATASET.TEST.BATCH_SIZE", "256", "DEVICE", "cpu", "NUM_THREADS", "1", "SEED", "5",
        "SOLVER.BATCH_SIZE", "128", "SOLVER.EPOCHS", str(epochs), "SOLVER.LR", "0.05",
        "SOLVER.LR_DECAY_STAGES", "[2]", "LOG.PROGRESS_BAR", "False",
        "DISTILLER.TYPE", kind, "DISTILLER.STUDENT", "resnet8", "DISTILLER.TEACHER", "resnet8",
        "DISTILLER.TEACHER_WEIGHTS", f"['{teacher_path}']", "LUMINET.ALPHA", "4.0",
        "LUMINET.WARMUP", "2", "OUTPUT_DIR", str(out), *extra,
    ]  # fmt: skip


def _metrics(out):
    with open(os.path.join(out, METRICS_FILE)) as f:
        return [json.loads(line) for line in f]


def _weights(out):
    return torch.load(os.path.join(out, LAST_FILE))["model"]


def _assert_same_weights(a, b):
    # CPU training with a fixed thread count is bit-deterministic: a resumed run must match the
    # uninterrupted one exactly, not approximately.
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, teacher_path):
    out = tmp_path_factory.mktemp("uninterrupted")
    result = ClsTrainer(load_config(None, _opts(out, teacher_path))).train()
    return out, result


def test_outputs_of_a_run(uninterrupted, teacher_path):
    out, result = uninterrupted
    rows = _metrics(out)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    # Stage 2: epochs 1-2 at LR, epoch 3 on at LR * 0.1 (the mdistiller convention).
    assert [r["lr"] for r in rows] == pytest.approx([0.05, 0.05, 0.005])
    for key in ("train.loss", "train.loss_ce", "train.loss_distill", "val.top1", "val.top5"):
        assert all(key in r for r in rows), key
    assert rows[-1]["val.top1"] == result["last"]["val.top1"]
    assert rows[-1]["val.top1"] > 30.0  # well above chance (10%) after 3 epochs
    assert result["teacher"]["count"] == 359
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(out / "tb"))
    # Student-only checkpoints that load into a fresh student.
    for name in (LAST_FILE, BEST_FILE):
        ckpt = torch.load(out / name)
        assert ckpt["arch"] == "resnet8"
        student = build_model("resnet8", 10, in_channels=1)
        assert ckpt["model"].keys() == student.state_dict().keys()
        load_checkpoint(student, ckpt, strict=True)
    assert torch.load(out / BEST_FILE)["top1"] == pytest.approx(result["best_top1"])
    state = torch.load(out / RESUME_FILE, weights_only=False)
    assert state["epoch"] == 3 and {"optimizer", "scheduler", "scaler", "rng"} <= state.keys()
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_resume_after_interruption_reproduces_the_run(
    uninterrupted, teacher_path, tmp_path, monkeypatch
):
    ref_out, _ = uninterrupted
    out = tmp_path / "interrupted"
    cfg = load_config(None, _opts(out, teacher_path))
    calls = {"n": 0}
    original = Distiller.forward

    def crash_in_epoch_3(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2 * ITERS_PER_EPOCH + 5:
            raise KeyboardInterrupt("simulated kill")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Distiller, "forward", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        ClsTrainer(cfg).train()
    monkeypatch.setattr(Distiller, "forward", original)
    assert torch.load(out / RESUME_FILE, weights_only=False)["epoch"] == 2
    with pytest.raises(FileExistsError, match="--resume"):
        ClsTrainer(cfg, resume=False)
    resumed = ClsTrainer(cfg, resume=True)
    assert resumed.start_epoch == 2
    resumed.train()
    _assert_same_weights(_weights(out), _weights(ref_out))
    got, ref = _metrics(out), _metrics(ref_out)
    assert [r["epoch"] for r in got] == [1, 2, 3]
    for a, b in zip(got, ref):
        assert a["val.top1"] == b["val.top1"]
        assert a["train.loss"] == pytest.approx(b["train.loss"], rel=1e-5)


def test_resuming_a_finished_run_trains_nothing(uninterrupted, teacher_path):
    out, result = uninterrupted
    before = _weights(out)
    again = ClsTrainer(load_config(None, _opts(out, teacher_path)), resume=True).train()
    assert again["last"]["val.top1"] == pytest.approx(result["last"]["val.top1"])
    _assert_same_weights(_weights(out), before)
    assert len(_metrics(out)) == 3


def test_a_second_run_into_the_same_output_dir_is_refused(tmp_path, teacher_path):
    from luminet.run_lock import OutputDirLockedError, RunLock

    cfg = load_config(None, _opts(tmp_path, teacher_path, epochs=1))
    with RunLock(str(tmp_path)):  # another run holds the folder
        with pytest.raises(OutputDirLockedError, match="in use by another run"):
            ClsTrainer(cfg).train()
    assert not os.path.exists(tmp_path / RESUME_FILE)


def test_amp_on_cpu_is_a_logged_noop(tmp_path, teacher_path, caplog):
    cfg = load_config(None, _opts(tmp_path, teacher_path, epochs=1, extra=["AMP.ENABLED", "True"]))
    with caplog.at_level(logging.INFO, logger="luminet"):
        trainer = ClsTrainer(cfg)
    assert not trainer.amp and not trainer.scaler.is_enabled()
    assert "AMP is CUDA-only" in caplog.text


def test_teacher_accuracy_is_logged(tmp_path, teacher_path, caplog):
    cfg = load_config(None, _opts(tmp_path, teacher_path, epochs=1, kind="kd"))
    trainer = ClsTrainer(cfg)
    with caplog.at_level(logging.INFO, logger="luminet"):
        result = trainer.evaluate_teacher()
    assert "teacher resnet8: top-1" in caplog.text
    assert 0.0 <= result["top1"] <= 100.0 and result["count"] == 359


def test_eval_tool_matches_training_metrics(uninterrupted, teacher_path):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import eval_cls
    finally:
        sys.path.pop(0)
    out, result = uninterrupted
    opts = _opts(out, teacher_path)
    got = eval_cls.main(["--weights", str(out / LAST_FILE), *opts])
    assert got["top1"] == pytest.approx(result["last"]["val.top1"])
    with pytest.raises(ValueError, match="holds a 'resnet8' student but DISTILLER.STUDENT"):
        eval_cls.main(["--weights", str(out / LAST_FILE), *opts, "DISTILLER.STUDENT", "resnet20"])


def _wait_for_epoch(path, epoch, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"training exited early with {proc.returncode}")
        if os.path.exists(path):
            if torch.load(path, weights_only=False)["epoch"] >= epoch:
                return
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint of epoch {epoch} after {timeout}s")


@pytest.mark.slow
def test_killed_process_resumes_to_the_same_weights(tmp_path, teacher_path):
    ref = tmp_path / "ref"
    ClsTrainer(load_config(None, _opts(ref, teacher_path, epochs=4))).train()
    out = tmp_path / "killed"
    cmd = [sys.executable, os.path.join(ROOT, "tools", "train_cls.py")]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.Popen([*cmd, *_opts(out, teacher_path, epochs=4)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        _wait_for_epoch(out / RESUME_FILE, 2, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = torch.load(out / RESUME_FILE, weights_only=False)["epoch"]
    assert killed_at < 4, "the run finished before it could be killed"
    done = subprocess.run([*cmd, "--resume", *_opts(out, teacher_path, epochs=4)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    _assert_same_weights(_weights(out), _weights(ref))
    assert [r["epoch"] for r in _metrics(out)] == [1, 2, 3, 4]


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path, teacher_path):
    out = tmp_path / "ddp"
    script = os.path.join(ROOT, "tools", "train_cls.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           script, *_opts(out, teacher_path, epochs=2)]  # fmt: skip
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _metrics(out)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[-1]["val.top1"] > 20.0
    state = torch.load(out / RESUME_FILE, weights_only=False)
    assert state["world_size"] == 2 and set(state["rng"]) == {0, 1}
    assert not any(k.startswith("module.") for k in state["model"])
