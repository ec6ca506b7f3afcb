"""DistillRCNN built from LazyConfig nodes (luminet_det.lazy), on the tiny R18-FPN pair (CPU)."""

import os

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, instantiate
from detectron2.modeling import GeneralizedRCNN, build_model
from detectron2.utils.events import EventStorage

import luminet_det  # noqa: F401  (registers DistillRCNN)
from luminet.losses import KDLoss
from luminet_det import DistillRCNN, Teacher
from luminet_det.lazy import distill_rcnn_from_student, lazy_teacher
from luminet_det.testing import (
    TINY_CASCADE_OPTS,
    random_batch,
    tiny_distill_cfg,
    tiny_rcnn_cfg,
    write_teacher,
)

TINY_LAZY = os.path.join(os.path.dirname(__file__), "lazy_configs", "tiny_rcnn.py")


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory):
    config, weights, _ = write_teacher(str(tmp_path_factory.mktemp("teacher")), seed=1)
    return config, weights


def tiny_student(seed: int = 0) -> GeneralizedRCNN:
    torch.manual_seed(seed)
    return instantiate(LazyConfig.load(TINY_LAZY).model)


def losses_of(model, seed: int = 0, it: int = 0) -> dict:
    torch.manual_seed(seed)
    with EventStorage(it):
        return model(random_batch(2, seed=seed))


def test_lazy_model_equals_yacs_model_in_structure_and_losses(teacher_files):
    """The same student weights and teacher give the same losses, bit for bit."""
    torch.manual_seed(0)
    yacs_model = build_model(tiny_distill_cfg(*teacher_files)).train()
    lazy_model = distill_rcnn_from_student(
        tiny_student(seed=5), lazy_teacher(TINY_LAZY, teacher_files[1]), loss="luminet"
    ).train()
    assert isinstance(lazy_model, DistillRCNN)
    assert lazy_model.loss_name == yacs_model.loss_name == "luminet"
    lazy_model.load_state_dict(yacs_model.state_dict(), strict=True)
    for a, b in zip(
        lazy_model.teacher.state_dict().values(), yacs_model.teacher.state_dict().values()
    ):
        assert torch.equal(a, b)
    got, want = losses_of(lazy_model), losses_of(yacs_model)
    assert set(got) == set(want) and "loss_luminet" in got
    for k in want:
        assert torch.equal(got[k], want[k]), k
    assert got["loss_luminet"].item() > 0


def test_copy_teacher_gives_zero_loss_and_gradient_only_in_student(tmp_path):
    student = tiny_student(seed=3)
    DetectionCheckpointer(student, save_dir=str(tmp_path)).save("copy")
    teacher = lazy_teacher(TINY_LAZY, str(tmp_path / "copy.pth"))
    assert all(not p.requires_grad for p in teacher.parameters()) and not teacher.training
    model = distill_rcnn_from_student(student, teacher, loss="luminet").train()
    # eval-mode BatchNorm in both, so the two backbones compute the same features
    model.backbone.eval()
    losses = losses_of(model)
    assert abs(losses["loss_luminet"].item()) < 1e-6
    model.backbone.train()
    losses = losses_of(model)
    losses["loss_luminet"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert not teacher.training and teacher.model.roi_heads.training is False


def test_student_modules_are_reused_and_state_dict_loads_into_stock_student(teacher_files):
    student = tiny_student()
    keys = set(student.state_dict())
    model = distill_rcnn_from_student(
        student,
        lazy_teacher(TINY_LAZY, teacher_files[1]),
        loss="kd",
        loss_args={"temperature": 2.0},
    )
    assert model.backbone is student.backbone and model.roi_heads is student.roi_heads
    assert set(model.state_dict()) == keys
    assert isinstance(model.distill_loss, KDLoss) and model.distill_loss.temperature == 2.0
    stock = tiny_student(seed=9)
    stock.load_state_dict(model.state_dict(), strict=True)


def test_loss_none_trains_the_student_alone():
    model = distill_rcnn_from_student(tiny_student(), None, loss="none").train()
    assert model.teacher is None and model.loss_name == "none"
    assert set(losses_of(model)) == {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}


def test_lazy_call_node_builds_the_model(teacher_files):
    """The LazyConfig form: a student node and a teacher node, built by instantiate."""
    node = L(distill_rcnn_from_student)(
        student=LazyConfig.load(TINY_LAZY).model,
        teacher=L(lazy_teacher)(config_file=TINY_LAZY, weights=teacher_files[1]),
        loss="dkd",
        loss_weight=0.5,
        warmup_iters=10,
    )
    model = instantiate(node)
    assert isinstance(model, DistillRCNN) and isinstance(model.teacher, Teacher)
    assert (model.loss_name, model.loss_weight, model.warmup_iters) == ("dkd", 0.5, 10)


# ----------------------------------------------------------------------------- bad arguments
def test_student_must_be_a_stock_generalized_rcnn(teacher_files):
    with pytest.raises(ValueError, match="model.student must be a stock GeneralizedRCNN"):
        distill_rcnn_from_student(torch.nn.Linear(2, 2), None, loss="none")


def test_teacher_must_be_a_teacher_object():
    with pytest.raises(ValueError, match="model.teacher must be a luminet_det.Teacher"):
        distill_rcnn_from_student(tiny_student(), tiny_student(), loss="luminet")


def test_unknown_loss_is_named():
    with pytest.raises(ValueError, match="model.loss: unknown distillation loss 'nope'"):
        distill_rcnn_from_student(tiny_student(), None, loss="nope")


def test_bad_loss_argument_is_named(teacher_files):
    teacher = lazy_teacher(TINY_LAZY, teacher_files[1])
    with pytest.raises(ValueError, match="model.loss_args of loss 'luminet'.*tempreature"):
        distill_rcnn_from_student(tiny_student(), teacher, loss_args={"tempreature": 4.0})
    with pytest.raises(ValueError, match="model.loss_args of loss 'kd'"):
        distill_rcnn_from_student(tiny_student(), teacher, loss="kd", loss_args={"temperature": -1})


def test_loss_args_with_loss_none_are_refused():
    with pytest.raises(ValueError, match="model.loss_args .* given with model.loss none"):
        distill_rcnn_from_student(tiny_student(), None, loss="none", loss_args={"temperature": 2})


def test_teacher_and_loss_go_together(teacher_files):
    with pytest.raises(ValueError, match="model.teacher and model.loss go together"):
        distill_rcnn_from_student(tiny_student(), None, loss="luminet")
    teacher = lazy_teacher(TINY_LAZY, teacher_files[1])
    with pytest.raises(ValueError, match="model.teacher and model.loss go together"):
        distill_rcnn_from_student(tiny_student(), teacher, loss="none")


def test_distill_rcnn_refusals_name_the_node(teacher_files):
    teacher = lazy_teacher(TINY_LAZY, teacher_files[1])
    with pytest.raises(ValueError, match=r"model \(distill_rcnn_from_student\).*LOSS_WEIGHT"):
        distill_rcnn_from_student(tiny_student(), teacher, loss_weight=-1.0)


def test_teacher_config_file_missing_or_unreadable(tmp_path, teacher_files):
    with pytest.raises(ValueError, match="model.teacher.config_file is empty"):
        lazy_teacher("", teacher_files[1])
    with pytest.raises(ValueError, match="model.teacher.config_file .*not a file"):
        lazy_teacher(str(tmp_path / "missing.py"), teacher_files[1])
    with pytest.raises(ValueError, match="not a config of detectron2's model zoo"):
        lazy_teacher("zoo://common/models/nope.py", teacher_files[1])
    broken = tmp_path / "broken.py"
    broken.write_text("model = (\n")
    with pytest.raises(ValueError, match="could not be read as a LazyConfig"):
        lazy_teacher(str(broken), teacher_files[1])
    no_model = tmp_path / "no_model.py"
    no_model.write_text("train = dict(max_iter=1)\n")
    with pytest.raises(ValueError, match="has no 'model' node"):
        lazy_teacher(str(no_model), teacher_files[1])


def test_teacher_weights_are_checked_strictly(tmp_path):
    """The same key-by-key checks as the yacs path: missing file, weights of another model."""
    with pytest.raises(ValueError, match="model.teacher.weights"):
        lazy_teacher(TINY_LAZY, str(tmp_path / "missing.pth"))
    write_teacher(str(tmp_path / "five"), seed=1, **{"MODEL.ROI_HEADS.NUM_CLASSES": 5})
    with pytest.raises(ValueError, match="does not fit the teacher model.*wrong shape"):
        lazy_teacher(TINY_LAZY, str(tmp_path / "five" / "teacher.pth"))


def test_teacher_overrides_and_class_mismatch(teacher_files):
    teacher = lazy_teacher(
        TINY_LAZY,
        teacher_files[1],
        overrides=["model.roi_heads.box_predictor.test_score_thresh=0.1"],
    )
    assert teacher.model.roi_heads.box_predictor.test_score_thresh == pytest.approx(0.1)
    student = tiny_student()
    student.roi_heads.num_classes = 4
    with pytest.raises(ValueError, match="same classes"):
        distill_rcnn_from_student(student, teacher, loss="luminet")


def test_teacher_autocast_and_format_are_checked(teacher_files):
    with pytest.raises(ValueError, match="TEACHER_AUTOCAST"):
        lazy_teacher(TINY_LAZY, teacher_files[1], autocast="fp8")
    teacher = lazy_teacher(TINY_LAZY, teacher_files[1], image_format="RGB")
    assert teacher.flip_channels
    with pytest.raises(ValueError, match="INPUT.FORMAT"):
        distill_rcnn_from_student(tiny_student(), teacher, loss="luminet")


TINY_LAZY_CASCADE = os.path.join(os.path.dirname(__file__), "lazy_configs", "tiny_cascade_rcnn.py")


def test_cascade_student_from_lazy_config_distils_per_stage(tmp_path):
    """A Cascade student node (the yacs tiny Cascade model's modules) with a Cascade teacher:
    the stage weights and teacher stage of the yacs path are passed through."""
    torch.manual_seed(0)
    yacs = build_model(tiny_rcnn_cfg(**TINY_CASCADE_OPTS))
    torch.manual_seed(1)
    student = instantiate(LazyConfig.load(TINY_LAZY_CASCADE).model)
    student.load_state_dict(yacs.state_dict(), strict=True)  # the same modules as the yacs model
    DetectionCheckpointer(yacs, save_dir=str(tmp_path)).save("cascade_teacher")
    teacher = lazy_teacher(TINY_LAZY_CASCADE, str(tmp_path / "cascade_teacher.pth"))
    model = distill_rcnn_from_student(
        student, teacher, loss="luminet", cascade_stage_weights=[1.0, 2.0, 1.0]
    ).train()
    assert model.stage_weights == pytest.approx((0.25, 0.5, 0.25))
    assert model.teacher_stages == (0, 1, 2)
    losses = losses_of(model)
    assert {"loss_luminet", "loss_cls_stage0", "loss_cls_stage2"} <= set(losses)
    assert torch.isfinite(losses["loss_luminet"])
    with pytest.raises(ValueError, match="CASCADE_TEACHER_STAGE"):
        distill_rcnn_from_student(
            instantiate(LazyConfig.load(TINY_LAZY).model), teacher, cascade_teacher_stage=-1
        )
