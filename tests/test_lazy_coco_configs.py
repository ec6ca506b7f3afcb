"""configs/coco/lazy/*.py: the LazyConfig R101 -> R18 pair resolves against detectron2's model
zoo and describes the same student, teacher, losses and schedule as the yacs pair (CPU, no
download: the models are built with random weights and compared module by module)."""

import os

import pytest
import torch
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_model

import luminet_det  # noqa: F401  (registers DistillRCNN)
from luminet_det import add_distill_config, build_distill_loss_from_cfg, load_teacher_config
from luminet_det.lazy import build_lazy_loss

ROOT = os.path.join(os.path.dirname(__file__), "..", "configs", "coco")
LOSSES = ("luminet", "kd", "dkd", "none")


def lazy_cfg(loss: str):
    return LazyConfig.load(os.path.join(ROOT, "lazy", f"r101_r18_{loss}.py"))


def yacs_cfg(loss: str):
    cfg = get_cfg()
    add_distill_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, f"r101_r18_{loss}.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def _same_modules(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    assert [k for k in sa if sa[k].shape != sb[k].shape] == []
    assert sorted(n for n, p in a.named_parameters() if p.requires_grad) == sorted(
        n for n, p in b.named_parameters() if p.requires_grad
    )


@pytest.mark.parametrize("loss", LOSSES)
def test_leaf_describes_the_yacs_loss_and_run(loss):
    lazy, yacs = lazy_cfg(loss), yacs_cfg(loss)
    d = yacs.MODEL.DISTILL
    want = build_distill_loss_from_cfg(yacs)
    got = build_lazy_loss(lazy.model.loss, lazy.model.loss_args)
    assert type(got) is type(want) and repr(got) == repr(want)
    assert (lazy.model.loss_weight, lazy.model.warmup_iters) == (d.LOSS_WEIGHT, d.WARMUP_ITERS)
    assert (lazy.model.teacher is None) == (loss == "none")
    if loss != "none":
        assert lazy.model.teacher.weights == d.TEACHER_WEIGHTS
        assert lazy.model.teacher.image_format == yacs.INPUT.FORMAT
    s = yacs.SOLVER
    assert lazy.train.max_iter == s.MAX_ITER and lazy.optimizer.lr == s.BASE_LR
    assert lazy.dataloader.train.total_batch_size == s.IMS_PER_BATCH
    assert list(lazy.lr_multiplier.scheduler.milestones) == list(s.STEPS)
    assert lazy.lr_multiplier.warmup_length * s.MAX_ITER == s.WARMUP_ITERS
    assert lazy.lr_multiplier.warmup_factor == s.WARMUP_FACTOR
    assert lazy.dataloader.train.mapper.image_format == yacs.INPUT.FORMAT
    assert tuple(lazy.dataloader.train.mapper.augmentations[0].short_edge_length) == tuple(
        yacs.INPUT.MIN_SIZE_TRAIN
    )
    assert lazy.train.output_dir.endswith(f"lazy_r101_r18_{loss}")


def test_student_equals_the_yacs_student():
    torch.manual_seed(0)
    lazy_model = instantiate(lazy_cfg("none").model)
    yacs_model = build_model(yacs_cfg("none"))
    assert lazy_model.teacher is None and yacs_model.teacher is None
    _same_modules(lazy_model, yacs_model)
    for a in ("pixel_mean", "pixel_std"):
        assert torch.equal(getattr(lazy_model, a), getattr(yacs_model, a))
    assert lazy_model.input_format == yacs_model.input_format == "RGB"
    for a in ("batch_size_per_image", "positive_fraction", "num_classes"):
        assert getattr(lazy_model.roi_heads, a) == getattr(yacs_model.roi_heads, a)
    for a in ("pre_nms_topk", "post_nms_topk", "batch_size_per_image", "nms_thresh"):
        assert getattr(lazy_model.proposal_generator, a) == getattr(
            yacs_model.proposal_generator, a
        )


def test_teacher_equals_the_model_zoo_yacs_teacher():
    """The LazyConfig teacher builds detectron2's Faster R-CNN R101-FPN 3x: same modules, and
    with the same weights the same detections."""
    teacher_file = lazy_cfg("luminet").model.teacher.config_file
    lazy_teacher_model = instantiate(LazyConfig.load(teacher_file).model).eval()
    yacs_teacher = build_model(load_teacher_config(yacs_cfg("luminet"))).eval()
    _same_modules(lazy_teacher_model, yacs_teacher)
    lazy_teacher_model.load_state_dict(yacs_teacher.state_dict(), strict=True)
    assert lazy_teacher_model.input_format == yacs_teacher.input_format == "BGR"
    image = torch.randint(0, 256, (3, 96, 128), generator=torch.Generator().manual_seed(0))
    inputs = [{"image": image.to(torch.uint8), "height": 96, "width": 128}]
    with torch.no_grad():
        got = lazy_teacher_model(inputs)[0]["instances"]
        want = yacs_teacher(inputs)[0]["instances"]
    assert torch.equal(got.pred_boxes.tensor, want.pred_boxes.tensor)
    assert torch.equal(got.scores, want.scores)


def test_teacher_node_resolves_and_checks_its_weights(tmp_path):
    """The teacher node's image format resolves to the student's; its weights are checked
    (no download here: a missing file is refused, naming the key)."""
    cfg = lazy_cfg("luminet")
    cfg.model.teacher.weights = str(tmp_path / "missing.pkl")
    with pytest.raises(ValueError, match="model.teacher.weights .*is not a file"):
        instantiate(cfg.model)
