"""tools/lazy_train_net.py end to end on a tiny COCO-format set (CPU): training with LumiNet,
COCO evaluation, --eval-only, student-only checkpoints, --resume, and its refusals."""

import importlib
import inspect
import os
import subprocess
import sys

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from tool_scripts import load_tool

from luminet_det.testing import write_teacher, write_tiny_coco

TINY_DISTILL = os.path.join(os.path.dirname(__file__), "lazy_configs", "tiny_distill.py")
DATASET = "luminet_test_lazy_train_net_coco"
# upstream main's launch starts CPU processes with gloo when there is no GPU; 0.6 asserts CUDA
LAUNCH_RUNS_ON_CPU = "GLOO" in inspect.getsource(
    importlib.import_module("detectron2.engine.launch")
)
# predictions at any score, so the COCO metrics of a few-step model are numbers
SCORES = "model.student.roi_heads.box_predictor.test_score_thresh=0.0"


def _args(tool, work, *extra, opts=()):
    json_path, image_root = work["data"]
    argv = [
        "--config-file", TINY_DISTILL, "--coco-dataset", DATASET, json_path, image_root, *extra,
        f"train.output_dir={work['out']}", f"model.teacher.weights={work['teacher']}",
        f"dataloader.train.dataset.names={DATASET}", f"dataloader.test.dataset.names={DATASET}",
        SCORES, *opts,
    ]  # fmt: skip
    return tool.build_parser().parse_args(argv)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 4-step run (checkpoints at iterations 1 and 3, evaluation at the end)."""
    root = tmp_path_factory.mktemp("lazy_train_net")
    work = {
        "data": write_tiny_coco(str(root / "data"), n_images=6, size=128),
        "teacher": write_teacher(str(root / "teacher"), seed=1)[1],
        "out": str(root / "out"),
    }
    tool = load_tool("lazy_train_net")
    work["results"] = tool.main(_args(tool, work))
    return work


def _check_bbox(results):
    bbox = results["bbox"]
    assert {"AP", "AP50", "AP75"} <= set(bbox)
    for key in ("AP", "AP50", "AP75"):  # per-class APs may be NaN (a class without boxes)
        assert isinstance(bbox[key], float) and 0.0 <= bbox[key] <= 100.0, bbox
    return bbox


@pytest.mark.slow
def test_trains_evaluates_and_writes_student_only_checkpoints(trained):
    _check_bbox(trained["results"])
    out = trained["out"]
    assert {"model_0000001.pth", "model_0000003.pth", "model_final.pth"} <= set(os.listdir(out))
    state = torch.load(os.path.join(out, "model_final.pth"), map_location="cpu")
    assert state["iteration"] == 3
    assert "optimizer" in state["trainer"] and "LRScheduler" in state["trainer"]["hooks"]
    # the student-only state loads strictly into the stock meta-architecture
    cfg = LazyConfig.load(TINY_DISTILL)
    stock = instantiate(cfg.model.student)
    assert type(stock).__name__ == "GeneralizedRCNN"
    stock.load_state_dict(state["model"], strict=True)
    assert not any(k.startswith(("teacher", "_teacher")) for k in state["model"])
    with open(os.path.join(out, "metrics.json")) as f:
        lines = [line for line in f if '"loss_luminet"' in line]
    assert len(lines) == 4


@pytest.mark.slow
def test_eval_only_builds_the_student_alone_and_reproduces_the_evaluation(trained):
    tool = load_tool("lazy_train_net")
    final = os.path.join(trained["out"], "model_final.pth")
    # a teacher checkpoint that does not exist: evaluation must not build the teacher
    work = dict(trained, teacher="no-such-teacher.pth")
    results = tool.main(_args(tool, work, "--eval-only", opts=[f"train.init_checkpoint={final}"]))
    got, want = _check_bbox(results), _check_bbox(trained["results"])
    assert got == pytest.approx(want, nan_ok=True)


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(trained, tmp_path):
    tool = load_tool("lazy_train_net")
    # training again into a finished run's folder needs --resume (or --overwrite)
    with pytest.raises(FileExistsError):
        tool.main(_args(tool, trained))
    tool.main(_args(tool, trained, "--resume", opts=["train.max_iter=6", "train.eval_period=0"]))
    state = torch.load(os.path.join(trained["out"], "model_final.pth"), map_location="cpu")
    assert state["iteration"] == 5


def test_config_without_training_keys_is_refused(tmp_path):
    tool = load_tool("lazy_train_net")
    cfg = LazyConfig.load(TINY_DISTILL)
    del cfg.optimizer
    with pytest.raises(ValueError, match="no 'optimizer'"):
        tool.check_config(cfg, training=True)
    tool.check_config(cfg, training=False)  # evaluation does not need it
    cfg = LazyConfig.load(TINY_DISTILL)
    del cfg.train.max_iter
    with pytest.raises(ValueError, match="train.max_iter"):
        tool.check_config(cfg, training=True)
    cfg = LazyConfig.load(TINY_DISTILL)
    del cfg.dataloader.evaluator
    with pytest.raises(ValueError, match="dataloader.evaluator"):
        tool.check_config(cfg, training=False)


def test_evaluation_builds_the_stock_student_node():
    tool = load_tool("lazy_train_net")
    cfg = LazyConfig.load(TINY_DISTILL)
    assert tool.evaluation_model_node(cfg) is cfg.model.student or (
        tool.evaluation_model_node(cfg) == cfg.model.student
    )
    plain = LazyConfig.load(os.path.join(os.path.dirname(TINY_DISTILL), "tiny_rcnn.py"))
    assert tool.evaluation_model_node(plain) == plain.model


@pytest.mark.slow
@pytest.mark.skipif(
    not LAUNCH_RUNS_ON_CPU,
    reason="detectron2 0.6's launch needs CUDA for --num-gpus > 1 (upstream main falls back to "
    "gloo on CPU)",
)
def test_two_cpu_processes_through_launch(tmp_path):
    """--num-gpus 2 through detectron2's launch (gloo on CPU): trains, evaluates, and writes a
    student-only checkpoint."""
    json_path, image_root = write_tiny_coco(str(tmp_path / "data"), n_images=6, size=128)
    teacher = write_teacher(str(tmp_path / "teacher"), seed=1)[1]
    out = tmp_path / "out"
    tool = os.path.join(os.path.dirname(__file__), "..", "tools", "lazy_train_net.py")
    argv = [
        sys.executable, tool, "--num-gpus", "2", "--config-file", TINY_DISTILL,
        "--coco-dataset", DATASET, json_path, image_root,
        f"train.output_dir={out}", f"model.teacher.weights={teacher}",
        f"dataloader.train.dataset.names={DATASET}", f"dataloader.test.dataset.names={DATASET}",
        SCORES, "train.max_iter=2", "train.eval_period=2",
    ]  # fmt: skip
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    root = os.path.join(os.path.dirname(__file__), "..")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "copypaste: AP,AP50" in proc.stdout + proc.stderr
    state = torch.load(out / "model_final.pth", map_location="cpu")
    stock = instantiate(LazyConfig.load(TINY_DISTILL).model.student)
    stock.load_state_dict(state["model"], strict=True)


def test_eval_only_refuses_missing_or_foreign_weights(tmp_path):
    tool = load_tool("lazy_train_net")
    cfg = LazyConfig.load(TINY_DISTILL)
    cfg.train.output_dir = str(tmp_path / "out")
    model = instantiate(tool.evaluation_model_node(cfg))
    with pytest.raises(ValueError, match="train.init_checkpoint is empty"):
        tool.load_student_for_evaluation(model, cfg)
    foreign = tmp_path / "foreign.pth"
    torch.save({"model": {"other.weight": torch.zeros(2)}}, foreign)
    cfg.train.init_checkpoint = str(foreign)
    with pytest.raises(ValueError, match="train.init_checkpoint .*foreign.pth"):
        tool.load_student_for_evaluation(model, cfg)
