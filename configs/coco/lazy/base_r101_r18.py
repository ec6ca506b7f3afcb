"""DistillRCNN on COCO as a LazyConfig: the R101 -> R18 pair of ``configs/coco/r101_r18_*.yaml``.

Self-contained (model-zoo LazyConfig pieces only); the leaves ``r101_r18_{luminet,kd,dkd,none}.py``
set the loss. Teacher: model-zoo Faster R-CNN R101-FPN 3x (``teacher_faster_rcnn_R_101_FPN_3x.py``,
BGR). Student: R18-FPN from torchvision ImageNet weights (RGB with torchvision's mean/std)::

    python tools/convert_torchvision_weights.py --model resnet18 \\
        --input resnet18-f37072fd.pth --output weights/R-18-torchvision.pkl

Schedule of the yacs pair (the DKD paper's Detectron2 setting for distilled students): 8
images, LR 0.01, steps at 120k and 160k, 180k iterations, a 1000-iteration linear warm-up, and
the same 1000-iteration ramp of the distillation term for every loss.
"""

import os

from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.modeling.backbone import ResNet
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from luminet_det.evaluation import build_coco_evaluator
from luminet_det.lazy import distill_rcnn_from_student, lazy_teacher

MAX_ITER = 180000

# ---------------------------------------------------------------- student: R18-FPN Faster R-CNN
_student = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
_student.backbone.bottom_up.stages = L(ResNet.make_default_stages)(depth=18, norm="FrozenBN")
_student.backbone.bottom_up.freeze_at = 2
for key in ("mask_in_features", "mask_pooler", "mask_head"):
    del _student.roi_heads[key]
_student.pixel_mean = [123.675, 116.28, 103.53]
_student.pixel_std = [58.395, 57.12, 57.375]
_student.input_format = "RGB"

# ---------------------------------------------------------------- distillation
model = L(distill_rcnn_from_student)(
    student=_student,
    teacher=L(lazy_teacher)(
        config_file=os.path.join(os.path.dirname(__file__), "teacher_faster_rcnn_R_101_FPN_3x.py"),
        weights="detectron2://COCO-Detection/faster_rcnn_R_101_FPN_3x/137851257/model_final_f6e8b1.pkl",
        image_format="${..student.input_format}",
        autocast="",
    ),
    loss="luminet",
    loss_args={"temperature": 1.0},
    loss_weight=1.0,
    warmup_iters=1000,
)

# ---------------------------------------------------------------- data, solver, run
dataloader = model_zoo.get_config("common/data/coco.py").dataloader
dataloader.train.mapper.image_format = "RGB"
dataloader.train.mapper.use_instance_mask = False
dataloader.train.total_batch_size = 8
dataloader.evaluator = L(build_coco_evaluator)(dataset_name="${..test.dataset.names}")

optimizer = model_zoo.get_config("common/optim.py").SGD
optimizer.lr = 0.01

lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(
        values=[1.0, 0.1, 0.01], milestones=[120000, 160000], num_updates=MAX_ITER
    ),
    warmup_length=1000 / MAX_ITER,
    warmup_method="linear",
    warmup_factor=0.001,
)

train = model_zoo.get_config("common/train.py").train
train.init_checkpoint = "weights/R-18-torchvision.pkl"
train.max_iter = MAX_ITER
train.checkpointer.period = 10000
train.eval_period = 0  # evaluation at the end of training only
train.output_dir = "output/coco/lazy_r101_r18_luminet"
