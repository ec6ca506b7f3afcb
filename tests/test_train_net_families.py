"""tools/train_net.py end to end for Cascade and Mask R-CNN pairs: a few distillation steps on a
tiny COCO-format set, COCO evaluation, and a final checkpoint that loads strictly into the stock
student (tiny R18-FPN models, CPU)."""

import math
from pathlib import Path

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.modeling import GeneralizedRCNN, build_model
from detectron2.modeling.roi_heads import CascadeROIHeads
from tool_scripts import load_tool

from luminet_det.testing import (
    TINY_CASCADE_OPTS,
    TINY_MASK_OPTS,
    tiny_distill_cfg,
    tiny_rcnn_cfg,
    write_teacher,
    write_tiny_coco,
)

FAMILIES = {
    # student overrides, teacher overrides, extra student config, evaluated tasks
    "cascade": (TINY_CASCADE_OPTS, TINY_CASCADE_OPTS, {}, ("bbox",)),
    "mask": (TINY_MASK_OPTS, TINY_MASK_OPTS, {}, ("bbox", "segm")),
    "cascade_teacher_mask_student": (
        TINY_MASK_OPTS,
        {**TINY_CASCADE_OPTS, **TINY_MASK_OPTS},
        {"MODEL.DISTILL.CASCADE_TEACHER_STAGE": 2},
        ("bbox", "segm"),
    ),
}


def _workdir(root: Path, family: str) -> tuple[str, dict]:
    student_opts, teacher_opts, extra, _ = FAMILIES[family]
    json_path, image_root = write_tiny_coco(str(root / "data"), n_images=4, size=128, masks=True)
    name = f"luminet_test_train_net_{family}"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, json_path, image_root)
    cfg_dir = root / "configs"
    write_teacher(str(cfg_dir), seed=1, **teacher_opts)
    cfg = tiny_distill_cfg("teacher.yaml", str(cfg_dir / "teacher.pth"), **student_opts, **extra)
    cfg.DATASETS.TRAIN = (name,)
    cfg.DATASETS.TEST = (name,)
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.SOLVER.BASE_LR = 5e-4
    cfg.SOLVER.MAX_ITER = 2
    cfg.SOLVER.STEPS = ()
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.CHECKPOINT_PERIOD = 1000
    cfg.OUTPUT_DIR = str(root / "out")
    cfg.SEED = 1
    config_file = cfg_dir / "student.yaml"
    config_file.write_text(cfg.dump())
    return str(config_file), student_opts


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_train_net_distils_evaluates_and_writes_a_stock_checkpoint(tmp_path, family):
    config_file, student_opts = _workdir(tmp_path, family)
    train_net = load_tool("train_net")
    res = train_net.main(train_net.build_parser().parse_args(["--config-file", config_file]))
    for task in FAMILIES[family][3]:
        assert {"AP", "AP50", "AP75"} <= set(res[task]), task
        for k, v in res[task].items():
            assert isinstance(v, float) and (math.isnan(v) or 0.0 <= v <= 100.0), (task, k, v)

    metrics = (tmp_path / "out" / "metrics.json").read_text().splitlines()
    logged = [
        float(line.split('"loss_luminet": ')[1].split(",")[0])
        for line in metrics
        if "loss_luminet" in line
    ]
    assert logged and all(math.isfinite(v) and v > 0 for v in logged)

    ckpt = torch.load(tmp_path / "out" / "model_final.pth", map_location="cpu", weights_only=False)
    stock = build_model(tiny_rcnn_cfg(**student_opts))
    assert type(stock) is GeneralizedRCNN
    assert isinstance(stock.roi_heads, CascadeROIHeads) == (family == "cascade")
    stock.load_state_dict(ckpt["model"], strict=True)

    # the teacher alone (Cascade or Mask R-CNN) is evaluated by the same entry
    args = ["--config-file", config_file, "--eval-teacher", "OUTPUT_DIR", str(tmp_path / "t")]
    res = train_net.main(train_net.build_parser().parse_args(args))
    assert {"AP", "AP50", "AP75"} <= set(res["bbox"])
