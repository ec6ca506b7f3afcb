"""tools/train_net.py survives kills exactly: resume, atomic final saves, one run per folder,
logs in log.txt, and eval-time weights that do not fit.

CPU training is bit-deterministic for a fixed thread count, so every comparison of weights here
is exact (``torch.equal``), never approximate.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.engine import DefaultTrainer, default_setup
from tool_scripts import load_tool

import luminet_det.engine.checkpointer as checkpointer_module
from luminet.atomic_io import atomic_write
from luminet.run_lock import OutputDirLockedError, RunLock
from luminet_det.evaluation import build_coco_evaluator
from luminet_det.testing import tiny_distill_cfg, write_teacher, write_tiny_coco

REPO = Path(__file__).resolve().parent.parent
DATASET = "luminet_test_exact_resume_coco"
MAX_ITER = 6  # checkpoints after iterations 1, 3, 5; evaluation (and PreciseBN) after 2


@pytest.fixture(scope="module")
def setup_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("exact_resume")
    # landscape and portrait images: the aspect-ratio buckets hold items across iterations
    json_path, image_root = write_tiny_coco(
        str(root / "data"), n_images=6, shapes=[(128, 96), (96, 128), (128, 128)]
    )
    if DATASET in DatasetCatalog.list():
        DatasetCatalog.remove(DATASET)
        MetadataCatalog.remove(DATASET)
    register_coco_instances(DATASET, {}, json_path, image_root)
    write_teacher(str(root / "configs"), seed=1)
    cfg = tiny_distill_cfg("teacher.yaml", str(root / "configs" / "teacher.pth"))
    cfg.DATASETS.TRAIN = (DATASET,)
    cfg.DATASETS.TEST = (DATASET,)
    cfg.INPUT.MIN_SIZE_TRAIN = (96, 112, 128)  # random resize and flip: augmentation draws
    cfg.INPUT.RANDOM_FLIP = "horizontal"
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.SOLVER.BASE_LR = 5e-4
    cfg.SOLVER.MAX_ITER = MAX_ITER
    cfg.SOLVER.STEPS = (4,)
    cfg.SOLVER.WARMUP_ITERS = 2
    cfg.SOLVER.CHECKPOINT_PERIOD = 2
    cfg.TEST.EVAL_PERIOD = 3
    cfg.TEST.PRECISE_BN.ENABLED = True  # a second training loader, whose position is saved too
    cfg.TEST.PRECISE_BN.NUM_ITER = 2
    cfg.SEED = 1
    config = root / "configs" / "student.yaml"
    config.write_text(cfg.dump())
    return {"root": root, "config": str(config), "data": [DATASET, json_path, image_root]}


def _main(setup_dir, out, *flags, opts=()):
    train_net = load_tool("train_net")
    args = train_net.build_parser().parse_args(
        ["--config-file", setup_dir["config"], *flags, "OUTPUT_DIR", str(out), *opts]
    )
    return train_net.main(args)


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _assert_bitwise_equal(a, b):
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def reference(setup_dir):
    out = setup_dir["root"] / "reference"
    _main(setup_dir, out)
    return out


def test_uninterrupted_run_equals_detectron2_default_trainer(setup_dir, reference):
    # The default training stream did not change: the stock DefaultTrainer gives the same bits.
    train_net = load_tool("train_net")
    args = train_net.build_parser().parse_args(["--config-file", setup_dir["config"]])
    cfg = train_net.setup(args).clone()
    cfg.defrost()
    cfg.OUTPUT_DIR = str(setup_dir["root"] / "stock")
    cfg.freeze()
    default_setup(cfg, args)

    class Stock(DefaultTrainer):
        @classmethod
        def build_evaluator(cls, cfg, name, output_folder=None):
            return build_coco_evaluator(name, output_dir=os.path.join(cfg.OUTPUT_DIR, "inference"))

    stock = Stock(cfg)
    stock.resume_or_load(resume=False)
    stock.train()
    _assert_bitwise_equal(
        _weights(reference / "model_final.pth"), _weights(Path(cfg.OUTPUT_DIR) / "model_final.pth")
    )


def test_checkpoints_hold_everything_and_load_weights_only(reference):
    ckpt = torch.load(reference / "model_0000003.pth", map_location="cpu", weights_only=True)
    trainer = ckpt["trainer"]
    assert ckpt["iteration"] == trainer["iteration"] == 3
    momentum = trainer["_trainer"]["optimizer"]["state"]
    assert momentum and all("momentum_buffer" in s for s in momentum.values())
    assert trainer["scheduler"]["last_epoch"] == 4
    state = ckpt["resume_state"]
    assert state["world_size"] == 1
    rank = state["ranks"][0]
    assert {"setup_rng", "rng", "loaders"} <= rank.keys()
    assert rank["loaders"]["train"]["fetched"] >= 8  # 4 batches of 2, plus bucketed items
    assert rank["loaders"]["precise_bn"]["fetched"] >= 4  # PreciseBN ran after iteration 2
    assert (reference / "last_checkpoint").read_text() == "model_final.pth"
    assert not [p for p in os.listdir(reference) if p.endswith(".tmp")]


def test_resuming_without_the_set_up_random_state_is_announced(setup_dir, reference, tmp_path,
                                                               caplog):  # fmt: skip
    out = tmp_path / "run"
    _interrupted_copy(reference, out, 3)
    train_net = load_tool("train_net")
    args = train_net.build_parser().parse_args(["--config-file", setup_dir["config"]])
    cfg = train_net.setup(args).clone()
    cfg.defrost()
    cfg.OUTPUT_DIR = str(out)
    torch.manual_seed(12345)  # restore_setup_rng(OUTPUT_DIR) was not called
    trainer = train_net.Trainer(cfg)
    with caplog.at_level("WARNING", logger="luminet_det"):
        trainer.resume_or_load(resume=True)
    assert "call restore_setup_rng(OUTPUT_DIR) before building the trainer" in caplog.text
    assert trainer.start_iter == 4


def test_amp_trainer_state_includes_the_grad_scaler(setup_dir, tmp_path):
    # detectron2's AMPTrainer needs CUDA to step; its state (what a checkpoint holds) does not.
    train_net = load_tool("train_net")
    args = train_net.build_parser().parse_args(["--config-file", setup_dir["config"]])
    cfg = train_net.setup(args).clone()
    cfg.defrost()
    cfg.SOLVER.AMP.ENABLED = True
    cfg.OUTPUT_DIR = str(tmp_path)
    state = train_net.Trainer(cfg).state_dict()
    assert {"optimizer", "grad_scaler"} <= state["_trainer"].keys()
    assert "scheduler" in state


def _interrupted_copy(reference, dst, resume_from):
    """The output folder as a run killed right after writing checkpoint ``resume_from`` left
    it (later checkpoints and metrics gone, some written past the checkpoint)."""
    shutil.copytree(reference, dst)
    for p in dst.glob("model_*.pth"):
        if p.name == "model_final.pth" or int(p.stem.split("_")[1]) > resume_from:
            p.unlink()
    lines = (dst / "metrics.json").read_text().splitlines()
    (dst / "metrics.json").write_text("\n".join(lines) + '\n{"iteration": 99, "tot')  # torn line
    with atomic_write(dst / "last_checkpoint", "w") as f:
        f.write(f"model_{resume_from:07d}.pth")


@pytest.mark.parametrize("resume_from", [1, 3])  # before and after the evaluation of iteration 2
def test_resume_continues_bit_for_bit(setup_dir, reference, tmp_path, resume_from):
    out = tmp_path / "run"
    _interrupted_copy(reference, out, resume_from)
    res = _main(setup_dir, out, "--resume")
    assert "bbox" in res
    _assert_bitwise_equal(
        _weights(reference / "model_final.pth"), _weights(out / "model_final.pth")
    )
    iterations = [json.loads(line)["iteration"] for line in open(out / "metrics.json")]
    assert iterations == sorted(set(iterations))  # no duplicate, no torn line


class _Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing in the trainer handles it."""


@pytest.fixture()
def kill_during(monkeypatch):
    """``kill_during(name)``: the next atomic write of checkpoint ``name`` dies midway."""
    original = checkpointer_module.atomic_torch_save

    def arm(name):
        def save(obj, path):
            if os.path.basename(path) == name:
                with atomic_write(path, "wb") as f:
                    f.write(b"PK partial")
                    raise _Killed()
            return original(obj, path)

        monkeypatch.setattr(checkpointer_module, "atomic_torch_save", save)

    return arm


def test_killed_during_final_save_after_a_periodic_one(setup_dir, reference, tmp_path, kill_during):
    # Periodic and final checkpoint at the same iteration; the final write dies. Before: --resume
    # exited 0, printed AP, and model_final.pth stayed 0 bytes.
    out = tmp_path / "run"
    kill_during("model_final.pth")
    with pytest.raises(_Killed):
        _main(setup_dir, out, opts=["SOLVER.CHECKPOINT_PERIOD", "3"])
    kill_during("-")  # writes work again
    assert not (out / "model_final.pth").exists()
    assert (out / "last_checkpoint").read_text() == f"model_{MAX_ITER - 1:07d}.pth"
    res = _main(setup_dir, out, "--resume", opts=["SOLVER.CHECKPOINT_PERIOD", "3"])
    assert "bbox" in res  # nothing left to train: the final evaluation runs
    final = _weights(out / "model_final.pth")
    _assert_bitwise_equal(_weights(out / f"model_{MAX_ITER - 1:07d}.pth"), final)
    _assert_bitwise_equal(_weights(reference / "model_final.pth"), final)


def test_killed_while_rewriting_final_when_extending_a_run(setup_dir, reference, tmp_path,
                                                           kill_during):  # fmt: skip
    # Extending a finished run; the rewrite of model_final.pth dies. Before: last_checkpoint named
    # a truncated file, the next --resume crashed, the old final weights were gone.
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    old = (out / "model_final.pth").read_bytes()
    # (4 more iterations: a failure within detectron2's 3 timer warm-up iterations after a
    # resume makes its metric printer divide by zero in after_train, masking the failure)
    longer = ["SOLVER.MAX_ITER", str(MAX_ITER + 4), "SOLVER.CHECKPOINT_PERIOD", "100",
              "DATASETS.TEST", "()"]  # fmt: skip
    kill_during("model_final.pth")
    with pytest.raises(_Killed):
        _main(setup_dir, out, "--resume", opts=longer)
    kill_during("-")
    assert (out / "model_final.pth").read_bytes() == old
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    _main(setup_dir, out, "--resume", opts=longer)
    ckpt = torch.load(out / "model_final.pth", weights_only=True)
    assert ckpt["iteration"] == MAX_ITER + 3


def test_one_run_per_output_dir(setup_dir, reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    config_before = (out / "config.yaml").read_text()
    with RunLock(str(out)):  # another run holds the folder (cross-process: test_atomic_io)
        with pytest.raises(OutputDirLockedError, match="in use by another run"):
            _main(setup_dir, out, "--resume")
    assert (out / "config.yaml").read_text() == config_before  # nothing was written
    final = (out / "model_final.pth").read_bytes()
    with pytest.raises(FileExistsError, match="model_final.pth of a finished run: pass --resume"):
        _main(setup_dir, out)
    assert (out / "model_final.pth").read_bytes() == final
    (out / "last_checkpoint").write_text("model_0000003.pth")
    (out / "model_final.pth").rename(out / "elsewhere.pth")
    with pytest.raises(FileExistsError, match="unfinished run"):
        _main(setup_dir, out)
    with pytest.raises(ValueError, match="contradict"):
        _main(setup_dir, out, "--resume", "--overwrite")
    # --overwrite trains again from scratch; the project's records are in log.txt
    _main(setup_dir, out, "--overwrite", opts=["SOLVER.MAX_ITER", "1", "DATASETS.TEST", "()"])
    assert torch.load(out / "model_final.pth", weights_only=True)["iteration"] == 0
    assert [json.loads(x)["iteration"] for x in open(out / "metrics.json")] == [0]
    log = (out / "log.txt").read_text()
    assert "luminet_det.engine.output_dir WARNING: --overwrite: removing" in log
    assert "luminet_det.teacher_weights INFO:" in log  # the teacher's load report
    assert "luminet_det.engine.trainer INFO: Checking the 6 training images" in log


@pytest.mark.slow
def test_kill_dash_nine_then_resume_is_bit_for_bit(setup_dir, reference, tmp_path):
    out = tmp_path / "killed"
    name, json_path, image_root = setup_dir["data"]
    cmd = [sys.executable, str(REPO / "tools" / "train_net.py"), "--config-file",
           setup_dir["config"], "--coco-dataset", name, json_path, image_root]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.Popen([*cmd, "OUTPUT_DIR", str(out)], env=env, cwd=str(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        t0 = time.time()
        while not (out / "model_0000001.pth").exists():
            assert proc.poll() is None, "training exited before its first checkpoint"
            assert time.time() - t0 < 240, "no checkpoint after 240 s"
            time.sleep(0.05)
        time.sleep(random.Random(0).uniform(0.0, 0.5))  # somewhere in iterations 2-4
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (out / "model_final.pth").exists(), "the run finished before it was killed"
    done = subprocess.run([*cmd, "--resume", "OUTPUT_DIR", str(out)], env=env, cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "exact: random states and data position restored" in done.stdout + done.stderr
    _assert_bitwise_equal(
        _weights(reference / "model_final.pth"), _weights(out / "model_final.pth")
    )


def test_eval_only_refuses_weights_that_leave_the_model_random(setup_dir, reference, tmp_path):
    # Before: a checkpoint whose keys are all prefixed evaluated a random model (AP 0.0), exit 0.
    state = _weights(reference / "model_final.pth")
    prefixed = tmp_path / "wrapped.pth"
    torch.save({"model": {f"student.{k}": v for k, v in state.items()}}, prefixed)
    with pytest.raises(
        ValueError, match=r"0 of the model's \d+ keys matched.*tools/extract_student"
    ):
        _main(setup_dir, tmp_path / "e1", "--eval-only", opts=["MODEL.WEIGHTS", str(prefixed)])
    with pytest.raises(ValueError, match="MODEL.WEIGHTS is empty"):
        _main(setup_dir, tmp_path / "e2", "--eval-only", opts=["MODEL.WEIGHTS", ""])
    half = tmp_path / "half.pth"  # a third of the keys missing: evaluated, with a warning
    keep = list(state)[: 2 * len(state) // 3]
    torch.save({"model": {k: state[k] for k in keep}}, half)
    res = _main(setup_dir, tmp_path / "e3", "--eval-only", opts=["MODEL.WEIGHTS", str(half)])
    assert "bbox" in res
    assert "keys matched" in (tmp_path / "e3" / "log.txt").read_text()
