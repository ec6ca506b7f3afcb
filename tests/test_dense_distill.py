"""Dense distillation (DistillRetinaNet, DistillFCOS): tiny R18-FPN teacher and student, CPU."""

import pytest
import torch
import torch.nn.functional as F
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.meta_arch.fcos import FCOS
from detectron2.modeling.meta_arch.retinanet import RetinaNet
from detectron2.utils.events import EventStorage
from fvcore.nn import sigmoid_focal_loss

import luminet_det  # noqa: F401  (registers DistillRetinaNet)
from luminet.losses import KDSigmoidLoss, LumiNetSigmoidLoss
from luminet_det import (
    DistillFCOS,
    DistillRetinaNet,
    Teacher,
    check_same_dense_layout,
    dense_layout,
)
from luminet_det.dense_head import dense_class_logits, dense_logit_rows
from luminet_det.dense_testing import (
    tiny_distill_retinanet_cfg,
    tiny_fcos_arguments,
    tiny_retinanet_cfg,
    write_retinanet_teacher,
)
from luminet_det.testing import random_batch, tiny_rcnn_cfg

RETINANET_KEYS = ("loss_cls", "loss_box_reg")
FCOS_KEYS = ("loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr")
FROZEN_BN = {"MODEL.RESNETS.NORM": "FrozenBN"}


class RecordingLoss(LumiNetSigmoidLoss):
    """luminet_sigmoid that keeps what it was called with."""

    def forward(self, logits_student, logits_teacher, target=None):
        self.calls = getattr(self, "calls", []) + [(logits_student, logits_teacher, target)]
        return super().forward(logits_student, logits_teacher, target)


@pytest.fixture(scope="module")
def retina_teacher(tmp_path_factory):
    config, weights, _ = write_retinanet_teacher(str(tmp_path_factory.mktemp("rt")), seed=1)
    return config, weights


@pytest.fixture(scope="module")
def frozen_bn_retina_teacher(tmp_path_factory):
    return write_retinanet_teacher(str(tmp_path_factory.mktemp("rt_fbn")), seed=2, **FROZEN_BN)


def _build(cfg):
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    return model


def _step(model, batch, it=0):
    with EventStorage(it):
        return model(batch)


def _assert_frozen_teacher_untouched(model, before):
    teacher = model.teacher
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), f"teacher tensor {k} changed"
    assert not {id(p) for p in teacher.parameters()} & {id(p) for p in model.parameters()}


# ---------------------------------------------------------------------- RetinaNet
@pytest.mark.parametrize("loss", ["luminet_sigmoid", "kd_sigmoid"])
def test_retinanet_training_steps_have_finite_loss_and_a_frozen_teacher(retina_teacher, loss):
    model = _build(tiny_distill_retinanet_cfg(*retina_teacher, loss=loss))
    assert isinstance(model, DistillRetinaNet) and isinstance(model.teacher, Teacher)
    assert not model.teacher.training and model.training
    before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    for it in range(3):
        losses = _step(model, random_batch(2, seed=it), it)
        assert set(losses) == {*RETINANET_KEYS, f"loss_{loss}"}
        assert all(torch.isfinite(v) for v in losses.values())
        assert losses[f"loss_{loss}"] > 0 and losses[f"loss_{loss}"].requires_grad
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        model.train()  # what the trainer does; the teacher must stay in eval mode
        model.teacher.train()
    _assert_frozen_teacher_untouched(model, before)


@pytest.mark.parametrize("anchors", ["all", "foreground", "teacher_weighted"])
@pytest.mark.parametrize("loss", ["luminet_sigmoid", "kd_sigmoid"])
def test_retinanet_zero_loss_when_student_equals_teacher(frozen_bn_retina_teacher, loss, anchors):
    config, weights, teacher_model = frozen_bn_retina_teacher
    cfg = tiny_distill_retinanet_cfg(
        config,
        weights,
        loss=loss,
        **FROZEN_BN,
        **{f"MODEL.DISTILL.{loss.upper()}.ANCHORS": anchors},
    )
    model = _build(cfg)
    model.load_state_dict(teacher_model.state_dict())
    losses = _step(model, random_batch(2, seed=3))
    assert losses[f"loss_{loss}"].item() == 0.0
    assert losses["loss_cls"] > 0  # the student's own loss is not affected


def test_retinanet_gradient_only_in_the_students_class_branch(retina_teacher):
    model = _build(tiny_distill_retinanet_cfg(*retina_teacher))
    losses = _step(model, random_batch(2, seed=4))
    losses["loss_luminet_sigmoid"].backward()
    head = model.head
    assert head.cls_score.weight.grad.abs().sum() > 0
    assert model.backbone.bottom_up.stem.conv1.weight.grad.abs().sum() > 0
    assert head.bbox_pred.weight.grad is None  # the distillation term is on class logits only
    assert all(p.grad is None for p in model.teacher.parameters())


def test_retinanet_rows_and_labels_are_those_of_the_students_own_loss(retina_teacher):
    """The focal loss recomputed from the rows and target the distillation loss was given
    equals the student's own ``loss_cls``: same anchors, same order, same label assignment."""
    cfg = tiny_distill_retinanet_cfg(*retina_teacher)
    model = _build(cfg)
    recording = RecordingLoss()
    object.__setattr__(model, "_distill_loss", recording)
    losses = _step(model, random_batch(2, seed=5, boxes_per_image=3))
    (student_rows, teacher_rows, target), *rest = recording.calls
    assert not rest
    k = model.num_classes
    assert student_rows.shape == teacher_rows.shape and student_rows.shape[1] == k
    assert target.shape == (student_rows.shape[0],)
    assert (target == -1).any() and (target == k).any() and ((target >= 0) & (target < k)).any()
    valid = target >= 0
    onehot = F.one_hot(target[valid], k + 1)[:, :k].to(student_rows.dtype)
    expected = (
        sigmoid_focal_loss(student_rows[valid], onehot, alpha=0.25, gamma=2.0, reduction="sum")
        / model.loss_normalizer
    )
    torch.testing.assert_close(losses["loss_cls"], expected)
    # The teacher's rows are its own head's logits on its own preparation of the images.
    batch = random_batch(2, seed=5, boxes_per_image=3)
    t = model.teacher
    feats = t.backbone_features(t.prepare_images(batch))
    direct = dense_logit_rows(t.model.head([feats[f] for f in t.model.head_in_features])[0], k)
    torch.testing.assert_close(teacher_rows, direct)


def test_retinanet_foreground_option_uses_the_students_labels(retina_teacher):
    cfg = tiny_distill_retinanet_cfg(
        *retina_teacher,
        **{
            "MODEL.DISTILL.LUMINET_SIGMOID.ANCHORS": "foreground",
            "MODEL.DISTILL.LUMINET_SIGMOID.NORMALIZER": "num_foreground",
        },
    )
    model = _build(cfg)
    loss = _step(model, random_batch(2, seed=6))["loss_luminet_sigmoid"]
    assert torch.isfinite(loss) and loss > 0
    # Without objects, no anchor is foreground: the term is an exact zero.
    assert _step(model, random_batch(2, seed=6, boxes_per_image=0))["loss_luminet_sigmoid"] == 0


@pytest.mark.parametrize("loss", ["luminet", "kd", "dkd"])
def test_softmax_loss_is_an_error_naming_the_key_before_the_teacher_is_read(loss, tmp_path):
    cfg = tiny_distill_retinanet_cfg(str(tmp_path / "no.yaml"), str(tmp_path / "no.pth"), loss)
    with pytest.raises(ValueError, match=f"MODEL.DISTILL.LOSS '{loss}' is not a sigmoid loss"):
        build_model(cfg)


def test_softmax_loss_module_is_an_error_when_built_directly(retina_teacher):
    from luminet.losses import LumiNetLoss

    args = RetinaNet.from_config(tiny_retinanet_cfg())
    teacher = Teacher.from_config(
        tiny_retinanet_cfg(), retina_teacher[1], image_format="BGR", config_name="t"
    )
    with pytest.raises(ValueError, match="MODEL.DISTILL.LOSS 'luminet' is not a sigmoid loss"):
        DistillRetinaNet(teacher=teacher, distill_loss=LumiNetLoss(), loss_name="luminet", **args)


LAYOUT_MISMATCHES = [
    ({"MODEL.RETINANET.NUM_CLASSES": 4}, "number of classes differ"),
    (
        {
            "MODEL.RETINANET.IN_FEATURES": ["p3", "p4", "p5", "p6"],
            "MODEL.ANCHOR_GENERATOR.SIZES": [[16], [32], [64], [128]],
        },
        r"FPN levels differ.*MODEL.RETINANET.IN_FEATURES",
    ),
    (
        {"MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": [[1.0]]},
        r"anchors per location \(sizes x aspect ratios\) differ: teacher \(1, 1, 1, 1, 1\), "
        r"student \(3, 3, 3, 3, 3\)",
    ),
    (
        {"MODEL.ANCHOR_GENERATOR.SIZES": [[20], [40], [80], [160], [320]]},
        r"anchor shapes.*MODEL.ANCHOR_GENERATOR.SIZES",
    ),
    ({"MODEL.ANCHOR_GENERATOR.OFFSET": 0.5}, r"anchor offset.*MODEL.ANCHOR_GENERATOR.OFFSET"),
]


@pytest.mark.parametrize("teacher_overrides,message", LAYOUT_MISMATCHES)
def test_layout_mismatch_is_an_error_before_step_0(tmp_path, teacher_overrides, message):
    config, weights, _ = write_retinanet_teacher(str(tmp_path), seed=1, **teacher_overrides)
    with pytest.raises(ValueError, match=message):
        build_model(tiny_distill_retinanet_cfg(config, weights))


def test_stride_mismatch_is_an_error(monkeypatch):
    torch.manual_seed(0)
    student, teacher = build_model(tiny_retinanet_cfg()), build_model(tiny_retinanet_cfg())
    shapes = teacher.backbone.output_shape()
    shapes["p3"] = ShapeSpec(channels=shapes["p3"].channels, stride=4)
    monkeypatch.setattr(teacher.backbone, "output_shape", lambda: shapes)
    with pytest.raises(ValueError, match=r"strides of the FPN levels differ: teacher \(4, 16"):
        check_same_dense_layout(student, teacher)


def test_family_mismatch_and_non_dense_teacher_are_errors():
    torch.manual_seed(0)
    retina = build_model(tiny_retinanet_cfg())
    fcos = FCOS(**tiny_fcos_arguments())
    with pytest.raises(ValueError, match="the teacher is a FCOS .* the student a RetinaNet"):
        check_same_dense_layout(retina, fcos)
    rcnn = build_model(tiny_rcnn_cfg())
    with pytest.raises(ValueError, match="the teacher must be a detectron2 dense detector"):
        check_same_dense_layout(retina, rcnn)


def test_retinanet_checkpoint_holds_the_student_and_loads_strictly_into_stock(
    retina_teacher, tmp_path
):
    model = _build(tiny_distill_retinanet_cfg(*retina_teacher))
    _step(model, random_batch(2, seed=7))
    stock = build_model(tiny_retinanet_cfg())
    assert type(stock) is RetinaNet
    assert set(model.state_dict()) == set(stock.state_dict())
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("student")
    saved = torch.load(tmp_path / "student.pth", map_location="cpu", weights_only=False)["model"]
    stock.load_state_dict(saved, strict=True)
    model.eval()
    stock.eval()
    batch = random_batch(1, seed=8)
    with torch.no_grad():
        a, b = model(batch)[0]["instances"], stock(batch)[0]["instances"]
    assert torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)
    assert torch.equal(a.scores, b.scores)


def test_retinanet_loss_none_trains_the_student_alone():
    model = _build(tiny_retinanet_cfg(**{"MODEL.META_ARCHITECTURE": "DistillRetinaNet",
                                         "MODEL.DISTILL.LOSS": "none"}))  # fmt: skip
    assert model.teacher is None
    assert set(_step(model, random_batch(2))) == set(RETINANET_KEYS)


def test_retinanet_warmup_ramps_the_term(retina_teacher):
    cfg = tiny_distill_retinanet_cfg(*retina_teacher, **{"MODEL.DISTILL.WARMUP_ITERS": 4})
    model = _build(cfg)
    batch = random_batch(2, seed=9)
    assert _step(model, batch, it=0)["loss_luminet_sigmoid"] == 0
    half = _step(model, batch, it=2)["loss_luminet_sigmoid"]
    full = _step(model, batch, it=4)["loss_luminet_sigmoid"]
    torch.testing.assert_close(half * 2, full)


def test_class_branch_equals_the_heads_first_output():
    torch.manual_seed(0)
    for model in (build_model(tiny_retinanet_cfg()), FCOS(**tiny_fcos_arguments())):
        model.eval()
        images = model.preprocess_image(random_batch(2, seed=10))
        features = model.backbone(images.tensor)
        with torch.no_grad():
            fast = dense_class_logits(model, features)
            full = model.head([features[f] for f in model.head_in_features])[0]
        assert len(fast) == len(full) == 5
        for a, b in zip(fast, full):
            assert torch.equal(a, b)


# ---------------------------------------------------------------------- FCOS
def _fcos_teacher(tmp_path, seed=1, **overrides) -> tuple[Teacher, FCOS]:
    torch.manual_seed(seed)
    model = FCOS(**tiny_fcos_arguments(**overrides))
    model.input_format = "BGR"  # the stock FCOS has none; the Teacher needs it
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("fcos_teacher")
    teacher = Teacher.from_model(model, str(tmp_path / "fcos_teacher.pth"))
    return teacher, model


def _fcos_student(teacher, loss=None, num_classes=3, **overrides) -> DistillFCOS:
    torch.manual_seed(0)
    loss = LumiNetSigmoidLoss() if loss is None else loss
    name = "kd_sigmoid" if isinstance(loss, KDSigmoidLoss) else "luminet_sigmoid"
    model = DistillFCOS(
        teacher=teacher,
        distill_loss=loss,
        loss_name=name,
        **tiny_fcos_arguments(num_classes=num_classes, **overrides),
    )
    model.train()
    return model


@pytest.mark.parametrize("loss", [LumiNetSigmoidLoss(), KDSigmoidLoss()], ids=["lum", "kd"])
def test_fcos_training_steps_have_finite_loss_and_a_frozen_teacher(tmp_path, loss):
    teacher, _ = _fcos_teacher(tmp_path)
    model = _fcos_student(teacher, loss)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    key = f"loss_{model.loss_name}"
    for it in range(3):
        losses = _step(model, random_batch(2, seed=it), it)
        assert set(losses) == {*FCOS_KEYS, key}
        assert all(torch.isfinite(v) for v in losses.values()) and losses[key] > 0
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        model.train()
    _assert_frozen_teacher_untouched(model, before)


def test_fcos_zero_loss_when_student_equals_teacher_and_gradient_only_in_student(tmp_path):
    teacher, teacher_model = _fcos_teacher(tmp_path, **FROZEN_BN)
    model = _fcos_student(teacher, LumiNetSigmoidLoss(anchors="foreground"), **FROZEN_BN)
    model.load_state_dict(teacher_model.state_dict())
    assert _step(model, random_batch(2, seed=3))["loss_luminet_sigmoid"].item() == 0.0

    other = _fcos_student(teacher)
    loss = _step(other, random_batch(2, seed=3))["loss_luminet_sigmoid"]
    loss.backward()
    assert other.head.cls_score.weight.grad.abs().sum() > 0
    assert other.head.bbox_pred.weight.grad is None and other.head.ctrness.weight.grad is None
    assert all(p.grad is None for p in teacher.parameters())


def test_fcos_labels_have_no_ignored_points_and_match_its_own_loss(tmp_path):
    teacher, _ = _fcos_teacher(tmp_path)
    model = _fcos_student(teacher, RecordingLoss())
    losses = _step(model, random_batch(2, seed=5, boxes_per_image=3))
    (rows, _, target), *rest = model.distill_loss.calls
    assert not rest
    k = model.num_classes
    assert not (target == -1).any() and ((target >= 0) & (target < k)).any()
    onehot = F.one_hot(target, k + 1)[:, :k].to(rows.dtype)
    expected = sigmoid_focal_loss(rows, onehot, alpha=0.25, gamma=2.0, reduction="sum")
    torch.testing.assert_close(losses["loss_fcos_cls"], expected / model.loss_normalizer)


def test_fcos_layout_mismatch_and_softmax_loss_are_errors(tmp_path):
    from luminet.losses import KDLoss

    teacher, _ = _fcos_teacher(tmp_path)
    with pytest.raises(ValueError, match=r"number of classes differ.*model.num_classes"):
        _fcos_student(teacher, num_classes=4)
    with pytest.raises(ValueError, match="MODEL.DISTILL.LOSS 'kd' is not a sigmoid loss"):
        DistillFCOS(teacher=teacher, distill_loss=KDLoss(), loss_name="kd", **tiny_fcos_arguments())
    retina = Teacher(build_model(tiny_retinanet_cfg()))
    with pytest.raises(ValueError, match="the teacher is a RetinaNet .* the student a FCOS"):
        _fcos_student(retina)


def test_fcos_checkpoint_loads_strictly_into_stock(tmp_path):
    teacher, _ = _fcos_teacher(tmp_path)
    model = _fcos_student(teacher)
    _step(model, random_batch(2, seed=7))
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("student")
    saved = torch.load(tmp_path / "student.pth", map_location="cpu", weights_only=False)["model"]
    stock = FCOS(**tiny_fcos_arguments())
    assert set(saved) == set(stock.state_dict())
    stock.load_state_dict(saved, strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(stock.state_dict()[k], v)
    assert dense_layout(stock) == dense_layout(model)


def test_a_distilling_teacher_config_is_an_error(tmp_path):
    config, weights, _ = write_retinanet_teacher(str(tmp_path), seed=1)
    cfg_text = (
        open(config)
        .read()
        .replace("META_ARCHITECTURE: RetinaNet", "META_ARCHITECTURE: DistillRetinaNet")
    )
    (tmp_path / "distilling.yaml").write_text(cfg_text)
    cfg = tiny_distill_retinanet_cfg(str(tmp_path / "distilling.yaml"), weights)
    with pytest.raises(ValueError, match="the teacher must be a plain detector"):
        build_model(cfg)


def test_retinanet_teacher_autocast_bf16_gives_float32_rows(retina_teacher):
    cfg = tiny_distill_retinanet_cfg(*retina_teacher, **{"MODEL.DISTILL.TEACHER_AUTOCAST": "bf16"})
    model = _build(cfg)
    recording = RecordingLoss()
    object.__setattr__(model, "_distill_loss", recording)
    loss = _step(model, random_batch(2, seed=11))["loss_luminet_sigmoid"]
    assert torch.isfinite(loss) and loss > 0
    _, teacher_rows, _ = recording.calls[0]
    assert teacher_rows.dtype == torch.float32


def test_retinanet_students_own_losses_equal_the_stock_models(retina_teacher):
    model = _build(tiny_distill_retinanet_cfg(*retina_teacher))
    stock = build_model(tiny_retinanet_cfg())
    stock.load_state_dict(model.state_dict())
    stock.train()
    batch = random_batch(2, seed=12)
    ours, theirs = _step(model, batch), _step(stock, batch)
    assert set(theirs) == set(RETINANET_KEYS)
    for k in RETINANET_KEYS:
        assert torch.equal(ours[k], theirs[k]), k
