"""DistillRCNN training steps on a tiny R18-FPN teacher/student pair (CPU, random init)."""

import copy

import pytest
import torch
from detectron2.modeling import GeneralizedRCNN, build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

import luminet_det  # noqa: F401  (registers DistillRCNN)
from luminet.losses import GlobalLumiNetLoss, LumiNetLoss, PerGroupLoss, luminet_loss
from luminet_det import DistillRCNN, Teacher
from luminet_det.benchmark import ReferenceDistillRCNN
from luminet_det.testing import random_batch, tiny_distill_cfg, tiny_rcnn_cfg, write_teacher

STUDENT_KEYS = ("loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc")


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory):
    """A BGR teacher with BGR mean/std (detectron2 model-zoo convention)."""
    config, weights, _ = write_teacher(str(tmp_path_factory.mktemp("teacher")), seed=1)
    return config, weights


@pytest.fixture(scope="module")
def frozen_bn_teacher(tmp_path_factory):
    config, weights, model = write_teacher(
        str(tmp_path_factory.mktemp("teacher_fbn")), seed=2, **{"MODEL.RESNETS.NORM": "FrozenBN"}
    )
    return config, weights, model


def _build(cfg):
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    return model


def _step(model, batch, it=0):
    with EventStorage(it):
        return model(batch)


def test_train_step_adds_distillation_loss_and_keeps_teacher_frozen(teacher_files):
    cfg = tiny_distill_cfg(*teacher_files)
    model = _build(cfg)
    assert isinstance(model, DistillRCNN)
    teacher = model.teacher
    assert isinstance(teacher, Teacher) and teacher.image_format == cfg.INPUT.FORMAT
    assert not teacher.training and not teacher.model.training and model.training
    assert all(not p.requires_grad for p in teacher.parameters())
    before = {k: v.clone() for k, v in teacher.state_dict().items()}

    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    for it in range(2):
        losses = _step(model, random_batch(2, seed=it), it)
        assert set(losses) == {*STUDENT_KEYS, "loss_luminet"}
        assert torch.isfinite(losses["loss_luminet"]) and losses["loss_luminet"] > 0
        assert losses["loss_luminet"].requires_grad
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        model.train()  # what the trainer does; the teacher must stay in eval mode
        teacher.train()  # even when asked directly
        assert not teacher.training and not any(m.training for m in teacher.modules())

    assert all(p.grad is None for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), f"teacher tensor {k} changed"
    # The optimizer only ever saw the student.
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not teacher_ids & {id(p) for p in model.parameters()}


def test_state_dict_is_the_students_in_generalized_rcnn_layout(teacher_files):
    model = _build(tiny_distill_cfg(*teacher_files))
    stock = build_model(tiny_rcnn_cfg())
    assert type(stock) is GeneralizedRCNN
    sd = model.state_dict()
    assert set(sd) == set(stock.state_dict())
    assert not any(k.startswith(("teacher", "student", "_teacher")) for k in sd)
    stock.load_state_dict(sd, strict=True)
    # and back: a stock checkpoint initialises the student of DistillRCNN strictly
    model.load_state_dict(stock.state_dict(), strict=True)
    # the teacher follows dtype/device changes of the wrapper
    model.double()
    assert next(model.teacher.parameters()).dtype == torch.float64


def test_identical_teacher_and_student_give_exactly_zero(frozen_bn_teacher):
    config, weights, teacher_model = frozen_bn_teacher
    cfg = tiny_distill_cfg(config, weights, **{"MODEL.RESNETS.NORM": "FrozenBN"})
    cfg.INPUT.FORMAT = "BGR"  # same normalisation as the teacher
    model = _build(cfg)
    model.load_state_dict(teacher_model.state_dict(), strict=True)
    batch = random_batch(2, seed=3)

    # ROI-logit level: same boxes, same logits.
    with EventStorage(0):
        images = model.preprocess_image(batch)
        feats = model.backbone(images.tensor)
        boxes = [b["instances"].gt_boxes for b in batch]
        s = model.student_roi_logits(feats, boxes)
        t = model.teacher.roi_logits(batch, boxes)
    assert torch.equal(s, t)
    assert luminet_loss(s, t).item() == 0.0

    losses = _step(model, batch)
    assert losses["loss_luminet"].item() == 0.0
    # a different student gives a positive loss on the same inputs
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.mul_(-1.5)
    assert _step(model, batch)["loss_luminet"].item() > 0


def _count_box_head_calls(model):
    calls = []
    model.roi_heads.box_head.register_forward_hook(lambda *a: calls.append(1))
    return calls


def test_student_box_head_runs_once_and_the_reference_design_matches(teacher_files):
    """The benchmark's reference design (second box-head pass) gives the same loss."""
    batch = random_batch(2, seed=5)
    cfg = tiny_distill_cfg(*teacher_files)
    results = {}
    for model_class in (DistillRCNN, ReferenceDistillRCNN):
        torch.manual_seed(0)
        model = model_class(cfg).train()
        calls = _count_box_head_calls(model)
        torch.manual_seed(7)  # same ROI sampling in both runs
        results[model_class] = _step(model, batch)["loss_luminet"]
        assert len(calls) == (2 if model_class is ReferenceDistillRCNN else 1)
    torch.testing.assert_close(results[DistillRCNN], results[ReferenceDistillRCNN])


@pytest.mark.parametrize("loss", ["kd", "dkd"])
def test_other_losses_train(teacher_files, loss):
    cfg = tiny_distill_cfg(*teacher_files, loss=loss)
    cfg.MODEL.DISTILL.TEMPERATURE = 2.0
    model = _build(cfg)
    losses = _step(model, random_batch(2, seed=6))
    assert torch.isfinite(losses[f"loss_{loss}"]) and losses[f"loss_{loss}"] > 0


def test_dkd_target_is_the_sampled_gt_classes(teacher_files):
    cfg = tiny_distill_cfg(*teacher_files, loss="dkd")
    model = _build(cfg)
    seen = {}

    def spy(s, t, target):
        seen["s"], seen["target"] = s, target
        return s.sum() * 0

    object.__setattr__(model, "_distill_loss", spy)
    _step(model, random_batch(2, seed=6))
    k = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    assert seen["s"].shape[1] == k + 1
    assert seen["target"].shape == (seen["s"].shape[0],)
    assert int(seen["target"].max()) == k  # background rows are labelled K
    assert int(seen["target"].min()) < k  # and the gt boxes appended as proposals are not


def test_loss_none_is_the_plain_student(teacher_files):
    cfg = tiny_distill_cfg("", "", loss="none")
    model = _build(cfg)
    assert model.teacher is None and model.distill_loss is None
    losses = _step(model, random_batch(2))
    assert set(losses) == set(STUDENT_KEYS)


def test_images_without_annotations_and_few_rois_stay_finite(teacher_files):
    cfg = tiny_distill_cfg(*teacher_files)
    model = _build(cfg)
    losses = _step(model, random_batch(2, boxes_per_image=0))
    assert all(torch.isfinite(v) for v in losses.values())

    cfg = tiny_distill_cfg(*teacher_files)
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 1
    cfg.MODEL.ROI_HEADS.POSITIVE_FRACTION = 1.0
    model = _build(cfg)
    batch = random_batch(1, boxes_per_image=1)
    losses = _step(model, batch)
    # one ROI: LumiNet's per-class standardisation is 0 everywhere, so the loss is exactly 0
    assert losses["loss_luminet"].item() == 0.0
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_warmup_ramps_the_distillation_term(teacher_files):
    batch = random_batch(2, seed=8)
    cfg = tiny_distill_cfg(*teacher_files)
    cfg.MODEL.DISTILL.WARMUP_ITERS = 10
    cfg.MODEL.DISTILL.LOSS_WEIGHT = 2.0
    model = _build(cfg)
    assert (model.warmup_iters, model.loss_weight) == (10, 2.0)
    values = {}
    for warmup, it in ((0, 5), (10, 5), (10, 0), (10, 20)):
        model.warmup_iters = warmup
        torch.manual_seed(9)
        values[(warmup, it)] = _step(model, batch, it)["loss_luminet"].item()
    full = values[(0, 5)]
    assert full > 0
    assert values[(10, 5)] == pytest.approx(0.5 * full, rel=1e-5)
    assert values[(10, 0)] == 0.0
    assert values[(10, 20)] == pytest.approx(full, rel=1e-5)
    model.loss_weight = 1.0
    torch.manual_seed(9)
    assert _step(model, batch, 20)["loss_luminet"].item() == pytest.approx(full / 2, rel=1e-5)


def test_global_stats_in_one_process_equal_batch_statistics(teacher_files):
    batch = random_batch(2, seed=10)
    cfg = tiny_distill_cfg(*teacher_files)
    cfg.MODEL.DISTILL.LUMINET.STATS = "global"
    cfg.MODEL.DISTILL.TEMPERATURE = 2.0
    model = _build(cfg)
    gathered = model.distill_loss
    assert isinstance(gathered, GlobalLumiNetLoss) and gathered.temperature == 2.0
    torch.manual_seed(11)
    value_gathered = _step(model, batch)["loss_luminet"]
    object.__setattr__(model, "_distill_loss", LumiNetLoss(temperature=2.0))
    torch.manual_seed(11)
    value_local = _step(model, batch)["loss_luminet"]
    assert value_local > 0
    torch.testing.assert_close(value_gathered, value_local, rtol=1e-4, atol=1e-6)


def test_teacher_autocast_bf16(teacher_files):
    cfg = tiny_distill_cfg(*teacher_files)
    cfg.MODEL.DISTILL.TEACHER_AUTOCAST = "bf16"
    model = _build(cfg)
    seen = {}

    def hook(_module, _inputs, outputs):
        seen["dtype"] = outputs[0].dtype

    model.teacher.model.roi_heads.box_predictor.register_forward_hook(hook)
    losses = _step(model, random_batch(2, seed=12))
    assert seen["dtype"] == torch.bfloat16
    assert torch.isfinite(losses["loss_luminet"]) and losses["loss_luminet"] > 0


def test_inference_is_the_students(teacher_files):
    model = _build(tiny_distill_cfg(*teacher_files)).eval()
    stock = copy.deepcopy(build_model(tiny_rcnn_cfg())).eval()
    stock.load_state_dict(model.state_dict())
    batch = [{k: v for k, v in b.items() if k != "instances"} for b in random_batch(1)]
    with torch.no_grad():
        a = model(batch)[0]["instances"]
        b = stock(batch)[0]["instances"]
    assert torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)
    assert torch.equal(a.scores, b.scores)


@pytest.mark.parametrize(
    "teacher_autocast, expected", [("", torch.bfloat16), ("fp32", torch.float32)]
)
def test_under_ambient_autocast_like_the_amp_trainer(teacher_files, teacher_autocast, expected):
    """SOLVER.AMP.ENABLED runs the model under autocast; the teacher inherits it or opts out."""
    cfg = tiny_distill_cfg(*teacher_files)
    cfg.MODEL.DISTILL.TEACHER_AUTOCAST = teacher_autocast
    model = _build(cfg)
    seen = {}

    def hook(_module, _inputs, outputs):
        seen["teacher"] = outputs[0].dtype

    model.teacher.model.roi_heads.box_predictor.register_forward_hook(hook)
    with EventStorage(0), torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(random_batch(2, seed=13))
    assert seen["teacher"] == expected
    assert losses["loss_luminet"].dtype == torch.float32  # the losses compute in float32
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.roi_heads.box_predictor.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_mobilenetv2_student_of_a_resnet_teacher(teacher_files):
    cfg = tiny_distill_cfg(
        *teacher_files,
        **{
            "MODEL.BACKBONE.NAME": "build_mobilenetv2_fpn_backbone",
            "MODEL.MOBILENETV2.NORM": "BN",
        },
    )
    model = _build(cfg)
    assert type(model.backbone.bottom_up).__name__ == "MobileNetV2"
    assert type(model.teacher.model.backbone.bottom_up).__name__ == "ResNet"
    losses = _step(model, random_batch(2, seed=14))
    assert torch.isfinite(losses["loss_luminet"]) and losses["loss_luminet"] > 0
    stock_cfg = cfg.clone()
    stock_cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    build_model(stock_cfg).load_state_dict(model.state_dict(), strict=True)


def test_per_image_statistics(teacher_files):
    """LUMINET.STATS "image": the ROI-weighted mean of per-image LumiNet losses."""
    batch = random_batch(2, seed=12)
    cfg = tiny_distill_cfg(*teacher_files)
    cfg.MODEL.DISTILL.LUMINET.STATS = "image"
    model = _build(cfg)
    assert isinstance(model.distill_loss, PerGroupLoss)
    seen = {}
    original = model.distillation_losses

    def spy(batched_inputs, sampled, student_logits):
        seen["sizes"] = [len(p) for p in sampled]
        seen["boxes"] = [p.proposal_boxes for p in sampled]
        seen["student"] = student_logits.detach().clone()
        return original(batched_inputs, sampled, student_logits)

    model.distillation_losses = spy
    value = _step(model, batch)["loss_luminet"]
    teacher = model.teacher.roi_logits(batch, seen["boxes"])
    sizes = seen["sizes"]
    assert len(sizes) == 2 and min(sizes) > 1
    parts = [
        luminet_loss(s, t) * len(s)
        for s, t in zip(seen["student"].split(sizes), teacher.split(sizes))
    ]
    expected = sum(parts) / sum(sizes)
    torch.testing.assert_close(value.detach(), expected, rtol=1e-5, atol=1e-7)
    # It differs from batch statistics (which standardise over both images together).
    assert abs(float(luminet_loss(seen["student"], teacher)) - float(expected)) > 1e-6


@pytest.mark.parametrize("stats", ["batch", "image", "global"])
def test_a_step_without_any_roi_gives_a_zero_loss(teacher_files, stats):
    """A device (here: every device) with no sampled ROI adds a zero, not an error, and the
    graph stays connected to the student (DDP needs every parameter used)."""
    cfg = tiny_distill_cfg(*teacher_files)
    cfg.MODEL.DISTILL.LUMINET.STATS = stats
    model = _build(cfg)
    batch = random_batch(2, seed=15)
    empty = []
    for b in batch:
        inst = Instances(b["image"].shape[1:])
        inst.proposal_boxes = Boxes(torch.zeros(0, 4))
        inst.gt_classes = torch.zeros(0, dtype=torch.int64)
        empty.append(inst)
    logits = model.roi_heads.box_predictor.cls_score.weight.sum() * torch.zeros(0, 4)
    with EventStorage(0):
        losses = model.distillation_losses(batch, empty, logits)
    value = losses["loss_luminet"]
    assert value.item() == 0.0 and value.requires_grad
    value.backward()
    assert model.roi_heads.box_predictor.cls_score.weight.grad is not None
