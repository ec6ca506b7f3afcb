"""tools/train_net.py end to end: train a few iterations, COCO AP, student-only checkpoint."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.modeling import GeneralizedRCNN, build_model
from tool_scripts import load_tool

from luminet_det.testing import tiny_distill_cfg, tiny_rcnn_cfg, write_teacher, write_tiny_coco

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_net")
    json_path, image_root = write_tiny_coco(str(root / "data"), n_images=6, size=128)
    name = "luminet_test_train_net_coco"
    if name in DatasetCatalog.list():  # a stale entry from another module must not be reused
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, json_path, image_root)
    cfg_dir = root / "configs"
    write_teacher(str(cfg_dir), seed=1)  # teacher.yaml + teacher.pth next to the student config
    cfg = tiny_distill_cfg("teacher.yaml", str(cfg_dir / "teacher.pth"))
    cfg.DATASETS.TRAIN = (name,)
    cfg.DATASETS.TEST = (name,)
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.SOLVER.BASE_LR = 5e-4
    cfg.SOLVER.MAX_ITER = 3
    cfg.SOLVER.STEPS = ()
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.CHECKPOINT_PERIOD = 1000
    cfg.TEST.EVAL_PERIOD = 3
    cfg.OUTPUT_DIR = str(root / "out")
    cfg.SEED = 1
    config_file = cfg_dir / "student.yaml"
    config_file.write_text(cfg.dump())
    return {"root": root, "config": str(config_file), "data": (name, json_path, image_root)}


def _check_bbox_results(res):
    bbox = res["bbox"]
    assert {"AP", "AP50", "AP75"} <= set(bbox)
    for k, v in bbox.items():
        assert isinstance(v, float) and (math.isnan(v) or 0.0 <= v <= 100.0), (k, v)
    return bbox


@pytest.mark.slow
def test_train_eval_and_stock_loadable_checkpoint(workdir):
    train_net = load_tool("train_net")
    parser = train_net.build_parser()
    res = train_net.main(parser.parse_args(["--config-file", workdir["config"]]))
    bbox = _check_bbox_results(res)

    final = Path(workdir["root"]) / "out" / "model_final.pth"
    assert final.is_file()
    ckpt = torch.load(final, map_location="cpu", weights_only=False)
    assert ckpt["iteration"] == 2
    stock = build_model(tiny_rcnn_cfg())
    assert type(stock) is GeneralizedRCNN
    stock.load_state_dict(ckpt["model"], strict=True)  # nothing of the teacher, nothing missing

    # eval-only from the command line reproduces the end-of-training evaluation, and does not
    # need the teacher (its weights file is gone).
    os.rename(Path(workdir["config"]).parent / "teacher.pth", workdir["root"] / "moved.pth")
    name, json_path, image_root = workdir["data"]
    out = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train_net.py"), "--config-file", workdir["config"],
         "--coco-dataset", name, json_path, image_root, "--eval-only", "MODEL.WEIGHTS", str(final),
         "OUTPUT_DIR", str(workdir["root"] / "eval")],
        capture_output=True, text=True, timeout=300, cwd=str(workdir["root"]),
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    results_file = workdir["root"] / "eval" / "inference" / name / "coco_instances_results.json"
    train_file = workdir["root"] / "out" / "inference" / name / "coco_instances_results.json"
    preds_cli = json.loads(results_file.read_text())
    preds_train = json.loads(train_file.read_text())
    assert len(preds_cli) == len(preds_train) > 0
    for a, b in zip(preds_cli, preds_train):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        assert a["bbox"] == pytest.approx(b["bbox"], abs=1e-2)
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
    assert "copypaste: AP,AP50,AP75,APs,APm,APl" in out.stdout + out.stderr
    log = (out.stdout + out.stderr).split("copypaste: ")[-1].splitlines()[0]
    ap_cli = [float(x) for x in log.split(",")]
    ap_train = [bbox[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")]
    assert ap_cli == pytest.approx(ap_train, abs=1e-3, nan_ok=True)
    os.rename(workdir["root"] / "moved.pth", Path(workdir["config"]).parent / "teacher.pth")


@pytest.mark.slow
def test_eval_teacher(workdir):
    train_net = load_tool("train_net")
    args = train_net.build_parser().parse_args(
        ["--config-file", workdir["config"], "--eval-teacher",
         "OUTPUT_DIR", str(workdir["root"] / "teacher_run"),
         # the student's expectations must not be checked against the teacher
         "TEST.EXPECTED_RESULTS", "[['bbox', 'AP', 99.0, 0.01]]"]
    )  # fmt: skip
    res = train_net.main(args)
    _check_bbox_results(res)
    preds = workdir["root"] / "teacher_run" / "teacher_eval" / "inference" / workdir["data"][0]
    assert (preds / "coco_instances_results.json").is_file()
    json.loads((preds / "coco_instances_results.json").read_text())


def test_coco_dataset_flag_reports_missing_files(tmp_path):
    train_net = load_tool("train_net")
    with pytest.raises(ValueError, match="json file .*nope.json.* does not exist"):
        train_net.register_coco_datasets([["luminet_missing", str(tmp_path / "nope.json"), "."]])


@pytest.mark.parametrize("pair", ["r101_r18", "r50_mv2"])
def test_shipped_coco_configs_resolve_and_build(pair):
    from detectron2.config import get_cfg

    from luminet_det import add_distill_config, load_teacher_config

    train_net = load_tool("train_net")
    models = {}
    for loss in ("luminet", "kd", "dkd", "none"):
        path = REPO / "configs" / "coco" / f"{pair}_{loss}.yaml"
        cfg = get_cfg()
        add_distill_config(cfg)
        cfg.merge_from_file(str(path))
        assert cfg.MODEL.META_ARCHITECTURE == "DistillRCNN"
        assert cfg.MODEL.DISTILL.LOSS == loss
        # The same distillation warm-up for every method (no confound between the losses).
        assert cfg.MODEL.DISTILL.WARMUP_ITERS == cfg.SOLVER.WARMUP_ITERS == 1000
        assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER) == (
            8,
            0.01,
            180000,
        )
        assert cfg.INPUT.FORMAT == "RGB" and cfg.MODEL.PIXEL_MEAN[0] == pytest.approx(123.675)
        teacher_cfg = load_teacher_config(cfg)  # zoo:// config, resolved without a download
        assert teacher_cfg.MODEL.ROI_HEADS.NUM_CLASSES == cfg.MODEL.ROI_HEADS.NUM_CLASSES == 80
        assert teacher_cfg.INPUT.FORMAT == "BGR"
        assert teacher_cfg.MODEL.RESNETS.DEPTH == (101 if pair == "r101_r18" else 50)
        assert cfg.MODEL.DISTILL.TEACHER_WEIGHTS.startswith("detectron2://COCO-Detection/")
        models[loss] = cfg
    cfg = train_net.student_only_cfg(models["luminet"]).clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    student = build_model(cfg)
    expected = "MobileNetV2" if pair == "r50_mv2" else "ResNet"
    assert type(student.backbone.bottom_up).__name__ == expected
    assert student.teacher is None


def test_extract_student_from_checkpoints_that_hold_a_teacher(tmp_path):
    extract = load_tool("extract_student")
    cfg = tiny_rcnn_cfg()
    config_file = tmp_path / "student.yaml"
    config_file.write_text(cfg.dump())
    torch.manual_seed(0)
    student = build_model(cfg).state_dict()
    teacher = build_model(tiny_rcnn_cfg(**{"MODEL.FPN.OUT_CHANNELS": 32})).state_dict()
    layouts = {
        # student.* / teacher.* (wrapped by DDP)
        "prefixed": {
            **{f"module.student.{k}": v for k, v in student.items()},
            **{f"module.teacher.{k}": v for k, v in teacher.items()},
        },
        # top-level student next to a teacher and an adapter (public Detectron2 KD code)
        "top_level": {
            **student,
            **{f"teacher.{k}": v for k, v in teacher.items()},
            "kd_trans.0.weight": torch.zeros(3),
        },
    }
    for name, state in layouts.items():
        src = tmp_path / f"{name}.pth"
        torch.save({"model": state, "iteration": 7}, src)
        out = tmp_path / f"{name}_student.pth"
        assert extract.main([str(src), str(out), "--config-file", str(config_file)]) == 0
        saved = torch.load(out, weights_only=False)["model"]
        stock = build_model(cfg)
        stock.load_state_dict(saved, strict=True)
        for k, v in student.items():
            assert torch.equal(saved[k], v)

    # a teacher-only file is refused, and a student of another architecture does not verify
    torch.save({f"teacher.{k}": v for k, v in teacher.items()}, tmp_path / "t.pth")
    with pytest.raises(ValueError, match="no student keys found"):
        extract.main([str(tmp_path / "t.pth"), str(tmp_path / "x.pth")])
    torch.save(teacher, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"0 missing .* 0 unexpected .* \d+ with a wrong shape"):
        extract.main([str(tmp_path / "other.pth"), str(tmp_path / "y.pth"),
                      "--config-file", str(config_file)])  # fmt: skip
    assert not (tmp_path / "y.pth").exists()
