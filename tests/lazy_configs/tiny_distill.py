"""LazyConfig of a tiny LumiNet DistillRCNN run for ``tools/lazy_train_net.py`` tests (CPU).

Teacher and student are the tiny R18-FPN model of ``tiny_rcnn.py``; the teacher's weights
(``model.teacher.weights``) and the datasets (``dataloader.*.dataset.names``) are given as
overrides by the tests.
"""

import os

from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig
from detectron2.data import (
    DatasetMapper,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.data import transforms as T
from detectron2.solver import WarmupParamScheduler, get_default_optimizer_params
from fvcore.common.param_scheduler import MultiStepParamScheduler
from omegaconf import OmegaConf
from torch.optim import SGD

from luminet_det.evaluation import build_coco_evaluator
from luminet_det.lazy import distill_rcnn_from_student, lazy_teacher

TINY_RCNN = os.path.join(os.path.dirname(__file__), "tiny_rcnn.py")

model = L(distill_rcnn_from_student)(
    student=LazyConfig.load(TINY_RCNN).model,
    teacher=L(lazy_teacher)(config_file=TINY_RCNN, weights="", image_format="BGR"),
    loss="luminet",
    loss_args={"temperature": 4.0},
    loss_weight=1.0,
)

dataloader = OmegaConf.create()
dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="tiny_train"),
    mapper=L(DatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=(128,), max_size=160, sample_style="choice")
        ],
        image_format="BGR",
    ),
    total_batch_size=2,
    num_workers=0,
)
dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="tiny_val", filter_empty=False),
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=128, max_size=160)],
        image_format="BGR",
    ),
    num_workers=0,
)
dataloader.evaluator = L(build_coco_evaluator)(dataset_name="${..test.dataset.names}")

optimizer = L(SGD)(
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0),
    lr=0.01,
    momentum=0.9,
    weight_decay=1e-4,
)
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1], milestones=[3], num_updates=4),
    warmup_length=0.25,
    warmup_factor=0.1,
)
train = dict(
    output_dir="./output/tiny_lazy_distill",
    init_checkpoint="",
    max_iter=4,
    amp=dict(enabled=False),
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
    checkpointer=dict(period=2, max_to_keep=10),
    eval_period=4,
    log_period=1,
    device="cpu",
    seed=0,
)
