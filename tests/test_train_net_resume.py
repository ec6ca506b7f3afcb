"""``tools/train_net.py --resume`` restores the optimizer state (SGD momentum buffers) on every
detectron2 version: stock 0.6's ``DefaultTrainer`` does not checkpoint its optimizer, the
project's trainer (``luminet_det.engine.ExactResumeTrainer``) does."""

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from tool_scripts import load_tool

from luminet_det.testing import tiny_distill_cfg, write_teacher, write_tiny_coco


def _momentum_buffers(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The SGD momentum buffer of every parameter, in parameter-group order."""
    return [
        optimizer.state[p]["momentum_buffer"].clone()
        for group in optimizer.param_groups
        for p in group["params"]
        if p in optimizer.state
    ]


@pytest.mark.slow
def test_resume_restores_momentum_buffers(tmp_path):
    json_path, image_root = write_tiny_coco(str(tmp_path / "data"), n_images=4, size=128)
    name = "luminet_test_resume_coco"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, json_path, image_root)
    config_dir = tmp_path / "configs"
    write_teacher(str(config_dir), seed=1)
    cfg = tiny_distill_cfg("teacher.yaml", str(config_dir / "teacher.pth"))
    cfg.DATASETS.TRAIN = (name,)
    cfg.DATASETS.TEST = ()
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.SOLVER.BASE_LR = 5e-4
    cfg.SOLVER.MOMENTUM = 0.9
    cfg.SOLVER.MAX_ITER = 3
    cfg.SOLVER.STEPS = ()
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.CHECKPOINT_PERIOD = 1000
    cfg.TEST.EVAL_PERIOD = 0
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    cfg.SEED = 1
    config_file = config_dir / "student.yaml"
    config_file.write_text(cfg.dump())

    train_net = load_tool("train_net")
    parser = train_net.build_parser()
    try:
        # what main() does: set-up, Trainer, resume_or_load(resume=args.resume), train
        args = parser.parse_args(["--config-file", str(config_file)])
        first = train_net.Trainer(train_net.setup(args))
        first.resume_or_load(resume=args.resume)
        first.train()
        trained = _momentum_buffers(first.optimizer)
        assert trained and any(b.abs().sum() > 0 for b in trained)

        args = parser.parse_args(["--config-file", str(config_file), "--resume"])
        resumed = train_net.Trainer(train_net.setup(args))
        assert _momentum_buffers(resumed.optimizer) == []  # a new optimizer has no state yet
        resumed.resume_or_load(resume=args.resume)
        assert resumed.start_iter == cfg.SOLVER.MAX_ITER
        restored = _momentum_buffers(resumed.optimizer)
        assert len(restored) == len(trained)
        for a, b in zip(restored, trained):
            assert torch.equal(a, b)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
