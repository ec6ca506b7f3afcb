"""Bad distillation set-ups fail when the model is built (before any step), with clear messages."""

import logging

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

import luminet_det  # noqa: F401  (registers DistillRCNN)
from luminet_det.config import resolve_teacher_config_path
from luminet_det.testing import tiny_distill_cfg, tiny_rcnn_cfg, write_teacher


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    directory = tmp_path_factory.mktemp("teacher")
    config, weights, model = write_teacher(str(directory), seed=1)
    return {"dir": directory, "config": config, "weights": weights, "model": model}


def _save_state(path, state):
    torch.save({"model": state}, path)
    return str(path)


def test_missing_teacher_config(teacher):
    with pytest.raises(ValueError, match="MODEL.DISTILL.TEACHER_CONFIG is empty"):
        build_model(tiny_distill_cfg("", teacher["weights"]))
    with pytest.raises(ValueError, match=r"TEACHER_CONFIG 'no/such/teacher.yaml' is not a file"):
        build_model(tiny_distill_cfg("no/such/teacher.yaml", teacher["weights"]))
    with pytest.raises(ValueError, match="not a config of detectron2's model zoo"):
        build_model(tiny_distill_cfg("zoo://COCO-Detection/nope.yaml", teacher["weights"]))


def test_relative_teacher_config_is_resolved_against_the_config_file(teacher):
    student_cfg_file = teacher["dir"] / "sub" / ".." / "student.yaml"
    assert resolve_teacher_config_path("teacher.yaml", str(student_cfg_file)) == str(
        teacher["dir"] / "teacher.yaml"
    )
    zoo = resolve_teacher_config_path("zoo://COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml")
    assert zoo.endswith("faster_rcnn_R_101_FPN_3x.yaml")


def test_missing_or_unreadable_teacher_weights(teacher, tmp_path):
    with pytest.raises(ValueError, match="TEACHER_WEIGHTS is empty: refusing to distill"):
        build_model(tiny_distill_cfg(teacher["config"], ""))
    missing = str(tmp_path / "absent.pth")
    with pytest.raises(ValueError, match=r"TEACHER_WEIGHTS '.*absent.pth' is not a file"):
        build_model(tiny_distill_cfg(teacher["config"], missing))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="could not be read as a checkpoint"):
        build_model(tiny_distill_cfg(teacher["config"], str(garbage)))


def test_teacher_checkpoint_that_does_not_match_its_config(teacher, tmp_path):
    # a checkpoint of another architecture: FPN with 32 channels instead of 64
    other = build_model(tiny_rcnn_cfg(**{"MODEL.FPN.OUT_CHANNELS": 32}))
    path = _save_state(tmp_path / "other.pth", other.state_dict())
    with pytest.raises(ValueError) as e:
        build_model(tiny_distill_cfg(teacher["config"], path))
    msg = str(e.value)
    assert "0 missing key(s), 0 unexpected key(s)" in msg
    n_wrong = sum(
        1
        for k, v in other.state_dict().items()
        if v.shape != teacher["model"].state_dict()[k].shape
    )
    assert f"{n_wrong} key(s) with a wrong shape" in msg and n_wrong > 0
    assert "backbone.fpn_lateral2.weight: checkpoint (32, 64, 1, 1) vs model (64, 64, 1, 1)" in msg
    assert "does the checkpoint belong to the teacher config" in msg


def test_r34_weights_for_an_r18_teacher_config_are_refused(teacher, tmp_path):
    """The R34 checkpoint has every R18 key (same shapes) plus the extra residual blocks: once
    accepted with a warning, now an error naming the extra backbone keys."""
    _, r34_weights, r34 = write_teacher(
        str(tmp_path / "r34"), seed=4, **{"MODEL.RESNETS.DEPTH": 34}
    )
    r18 = teacher["model"].state_dict()
    extra = sorted(set(r34.state_dict()) - set(r18))
    assert extra and all(k.startswith("backbone.bottom_up.res") for k in extra)
    assert set(r18) <= set(r34.state_dict())  # nothing missing: only "unexpected" keys
    with pytest.raises(ValueError) as e:
        build_model(tiny_distill_cfg(teacher["config"], r34_weights))
    msg = str(e.value)
    assert f"0 missing key(s), {len(extra)} unexpected key(s), 0 key(s) with a wrong shape" in msg
    assert "unexpected: backbone.bottom_up.res2.2.conv1.weight" in msg


def test_teacher_checkpoint_without_box_predictor_is_refused(teacher, tmp_path):
    state = {
        k: v
        for k, v in teacher["model"].state_dict().items()
        if not k.startswith("roi_heads.box_predictor.")
    }
    path = _save_state(tmp_path / "no_predictor.pth", state)
    with pytest.raises(ValueError, match=r"4 missing key\(s\).*the box predictor \(roi_heads"):
        build_model(tiny_distill_cfg(teacher["config"], path))

    # a backbone-only checkpoint (e.g. ImageNet weights) is refused the same way
    backbone = {k: v for k, v in teacher["model"].state_dict().items() if k.startswith("backbone")}
    path = _save_state(tmp_path / "backbone_only.pth", backbone)
    with pytest.raises(ValueError, match="the box predictor .* is missing or has a wrong shape"):
        build_model(tiny_distill_cfg(teacher["config"], path))


def test_missing_rpn_is_refused(teacher, tmp_path):
    """The RPN does not run during distillation, but --eval-teacher runs it: a partly random
    teacher is never accepted."""
    state = {
        k: v
        for k, v in teacher["model"].state_dict().items()
        if not k.startswith("proposal_generator.")
    }
    path = _save_state(tmp_path / "no_rpn.pth", state)
    with pytest.raises(ValueError, match=r"6 missing key\(s\), 0 unexpected.*proposal_generator"):
        build_model(tiny_distill_cfg(teacher["config"], path))


def test_tolerated_extra_keys(teacher, tmp_path, caplog):
    """A Mask R-CNN checkpoint's mask head (absent from a box-only teacher), old anchor buffers
    and pixel statistics equal to the config are ignored, and logged with their count."""
    state = dict(teacher["model"].state_dict())
    state["roi_heads.mask_head.mask_fcn1.weight"] = torch.zeros(3)
    state["roi_heads.mask_head.predictor.bias"] = torch.zeros(3)
    state["proposal_generator.anchor_generator.cell_anchors.0"] = torch.zeros(3, 4)
    state["pixel_mean"] = teacher["model"].pixel_mean.clone()
    path = _save_state(tmp_path / "mask_rcnn.pth", state)
    with caplog.at_level(logging.INFO, logger="luminet_det.teacher_weights"):
        model = build_model(tiny_distill_cfg(teacher["config"], path))
    assert model.teacher is not None
    assert "ignored 4 key(s) of parts the teacher model does not have" in caplog.text
    for k, v in teacher["model"].state_dict().items():
        assert torch.equal(model.teacher.model.state_dict()[k], v), k
    # other pixel statistics than the config's: the teacher was trained on other inputs
    state["pixel_mean"] = teacher["model"].pixel_mean + 1.0
    path = _save_state(tmp_path / "other_mean.pth", state)
    with pytest.raises(ValueError, match="pixel statistics differ from the teacher config"):
        build_model(tiny_distill_cfg(teacher["config"], path))


def test_teacher_and_student_with_different_classes(teacher, tmp_path):
    config, weights, _ = write_teacher(
        str(tmp_path / "t5"), seed=1, **{"MODEL.ROI_HEADS.NUM_CLASSES": 5}
    )
    with pytest.raises(ValueError, match=r"the teacher has 5 .*TEACHER_CONFIG\), the student 3"):
        build_model(tiny_distill_cfg(config, weights))
    # the checkpoint's classifier has 5 + 1 rows while the teacher config says 3
    with pytest.raises(ValueError, match="box predictor .*cls_score.* wrong shape"):
        build_model(tiny_distill_cfg(teacher["config"], weights))


def test_unknown_loss_and_bad_loss_options(teacher):
    with pytest.raises(KeyError, match="MODEL.DISTILL.LOSS: unknown distillation loss 'lumi'"):
        build_model(tiny_distill_cfg(teacher["config"], teacher["weights"], loss="lumi"))
    cfg = tiny_distill_cfg(teacher["config"], teacher["weights"])
    cfg.MODEL.DISTILL.TEACHER_AUTOCAST = "fp8"
    with pytest.raises(ValueError, match="TEACHER_AUTOCAST must be one of .* got 'fp8'"):
        build_model(cfg)


@pytest.mark.parametrize(
    "loss, key, value, message",
    [
        ("luminet", "MODEL.DISTILL.TEMPERATURE", 0.0, "temperature must be > 0, got 0.0"),
        ("kd", "MODEL.DISTILL.TEMPERATURE", -1.0, "temperature must be > 0, got -1.0"),
        ("dkd", "MODEL.DISTILL.TEMPERATURE", 0.0, "temperature must be > 0"),
        ("luminet", "MODEL.DISTILL.LUMINET.EPS", 0.0, "eps must be > 0, got 0.0"),
        ("luminet", "MODEL.DISTILL.LUMINET.STATS", "roi", "stats must be one of"),
    ],
)
def test_loss_errors_name_their_config_key(teacher, loss, key, value, message):
    """Errors of the loss's own checks are mapped back to the config key that set the value."""
    cfg = tiny_distill_cfg(teacher["config"], teacher["weights"], loss=loss)
    cfg.merge_from_list([key, str(value)])
    with pytest.raises(ValueError) as e:
        build_model(cfg)
    assert str(e.value).startswith(f"{key} {value!r}: distillation loss {loss!r}: ")
    assert message in str(e.value)


def test_teacher_that_is_not_a_faster_rcnn(teacher, tmp_path):
    cfg = tiny_rcnn_cfg(**{"MODEL.META_ARCHITECTURE": "DistillRCNN"})
    path = tmp_path / "distill_teacher.yaml"
    path.write_text(cfg.dump())
    with pytest.raises(ValueError, match="META_ARCHITECTURE 'DistillRCNN'; the teacher must be"):
        build_model(tiny_distill_cfg(str(path), teacher["weights"]))


def test_cascade_teacher_for_a_single_stage_student_needs_the_teacher_stage(tmp_path):
    """Cascade teachers are supported (tests/test_cascade_distill.py); for a Faster R-CNN
    student the config must say which teacher stage scores its ROIs."""
    cascade = {
        "MODEL.ROI_HEADS.NAME": "CascadeROIHeads",
        "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG": True,
    }
    config, weights, _ = write_teacher(str(tmp_path), seed=1, **cascade)
    with pytest.raises(ValueError, match="set MODEL.DISTILL.CASCADE_TEACHER_STAGE to the teacher"):
        build_model(tiny_distill_cfg(config, weights))


def test_unsupported_input_format_pair(teacher, tmp_path):
    cfg = tiny_distill_cfg(teacher["config"], teacher["weights"])
    cfg.INPUT.FORMAT = "L"
    with pytest.raises(ValueError, match="student's INPUT.FORMAT 'L' to the teacher's 'BGR'"):
        build_model(cfg)


def test_checkpointer_round_trip_writes_no_teacher(teacher, tmp_path):
    model = build_model(tiny_distill_cfg(teacher["config"], teacher["weights"]))
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("ckpt")
    saved = torch.load(tmp_path / "ckpt.pth", weights_only=False)["model"]
    assert set(saved) == set(model.state_dict())
    assert len(saved) == len(teacher["model"].state_dict())


def test_teacher_in_model_zoo_pkl_format(teacher, tmp_path):
    """detectron2 model-zoo teachers are pickles of numpy arrays with an "__author__" entry."""
    import pickle

    state = {k: v.numpy() for k, v in teacher["model"].state_dict().items()}
    path = tmp_path / "model_final.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": state, "__author__": "Detectron2 Model Zoo"}, f)
    model = build_model(tiny_distill_cfg(teacher["config"], str(path)))
    for k, v in teacher["model"].state_dict().items():
        assert torch.equal(model.teacher.model.state_dict()[k], v), k
