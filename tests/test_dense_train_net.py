"""tools/train_net.py with DistillRetinaNet: a few iterations, COCO AP, stock-loadable weights."""

import math
from pathlib import Path

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.modeling import build_model
from detectron2.modeling.meta_arch.retinanet import RetinaNet
from tool_scripts import load_tool

from luminet_det.dense_testing import (
    tiny_distill_retinanet_cfg,
    tiny_retinanet_cfg,
    write_retinanet_teacher,
)
from luminet_det.testing import write_tiny_coco


@pytest.mark.slow
def test_train_net_trains_and_evaluates_a_distill_retinanet(tmp_path):
    json_path, image_root = write_tiny_coco(str(tmp_path / "data"), n_images=6, size=128)
    name = "luminet_test_dense_train_net_coco"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, json_path, image_root)
    cfg_dir = tmp_path / "configs"
    write_retinanet_teacher(str(cfg_dir), seed=1)
    cfg = tiny_distill_retinanet_cfg("teacher.yaml", str(cfg_dir / "teacher.pth"))
    cfg.DATASETS.TRAIN = (name,)
    cfg.DATASETS.TEST = (name,)
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.SOLVER.BASE_LR = 5e-4
    cfg.SOLVER.MAX_ITER = 3
    cfg.SOLVER.STEPS = ()
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.CHECKPOINT_PERIOD = 1000
    cfg.TEST.EVAL_PERIOD = 3
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    cfg.SEED = 1
    config_file = cfg_dir / "student.yaml"
    config_file.write_text(cfg.dump())

    train_net = load_tool("train_net")
    res = train_net.main(train_net.build_parser().parse_args(["--config-file", str(config_file)]))
    for k, v in res["bbox"].items():
        assert isinstance(v, float) and (math.isnan(v) or 0.0 <= v <= 100.0), (k, v)
    metrics = (Path(cfg.OUTPUT_DIR) / "metrics.json").read_text()
    assert "loss_luminet_sigmoid" in metrics

    ckpt = torch.load(Path(cfg.OUTPUT_DIR) / "model_final.pth", map_location="cpu",
                      weights_only=False)  # fmt: skip
    stock = build_model(tiny_retinanet_cfg())
    assert type(stock) is RetinaNet
    stock.load_state_dict(ckpt["model"], strict=True)
