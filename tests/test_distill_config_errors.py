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
    assert "does the checkpoint belong to the teacher config" in msg


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


def test_unused_missing_and_unexpected_keys_are_reported_not_fatal(teacher, tmp_path, caplog):
    state = dict(teacher["model"].state_dict())
    state = {k: v for k, v in state.items() if not k.startswith("proposal_generator.")}
    state["roi_heads.mask_head.extra.weight"] = torch.zeros(1)
    path = _save_state(tmp_path / "partial.pth", state)
    with caplog.at_level(logging.WARNING, logger="luminet_det.teacher"):
        model = build_model(tiny_distill_cfg(teacher["config"], path))
    assert model.teacher is not None
    n_rpn = sum(1 for k in teacher["model"].state_dict() if k.startswith("proposal_generator."))
    assert n_rpn == 6
    assert "6 missing key(s), 1 unexpected key(s), 0 key(s) with a wrong shape" in caplog.text
    assert "none of them is used by the distillation" in caplog.text


def test_teacher_and_student_with_different_classes(teacher, tmp_path):
    config, weights, _ = write_teacher(
        str(tmp_path / "t5"), seed=1, **{"MODEL.ROI_HEADS.NUM_CLASSES": 5}
    )
    with pytest.raises(ValueError, match="NUM_CLASSES 5, the student config 3"):
        build_model(tiny_distill_cfg(config, weights))
    # the COCO model-zoo teacher (80 classes) is resolved without any download, then refused
    with pytest.raises(ValueError, match="NUM_CLASSES 80, the student config 3"):
        build_model(tiny_distill_cfg("zoo://COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml", "x.pkl"))
    # the checkpoint's classifier has 5 + 1 rows while the teacher config says 3
    with pytest.raises(ValueError, match="box predictor .*cls_score.* wrong shape"):
        build_model(tiny_distill_cfg(teacher["config"], weights))


def test_unknown_loss_and_bad_loss_options(teacher):
    with pytest.raises(KeyError, match="MODEL.DISTILL.LOSS: unknown distillation loss 'lumi'"):
        build_model(tiny_distill_cfg(teacher["config"], teacher["weights"], loss="lumi"))
    cfg = tiny_distill_cfg(teacher["config"], teacher["weights"], loss="kd")
    cfg.MODEL.DISTILL.GATHER_STATS = True
    with pytest.raises(ValueError, match="GATHER_STATS applies to the 'luminet' loss only"):
        build_model(cfg)
    cfg = tiny_distill_cfg(teacher["config"], teacher["weights"])
    cfg.MODEL.DISTILL.TEACHER_AUTOCAST = "fp8"
    with pytest.raises(ValueError, match="TEACHER_AUTOCAST must be one of .* got 'fp8'"):
        build_model(cfg)
    cfg = tiny_distill_cfg(teacher["config"], teacher["weights"])
    cfg.MODEL.DISTILL.LOSS_KWARGS = "{temperature: 2"
    with pytest.raises(ValueError, match="LOSS_KWARGS must be a JSON object string"):
        build_model(cfg)
    cfg = tiny_distill_cfg(teacher["config"], teacher["weights"])
    cfg.MODEL.DISTILL.LOSS_KWARGS = '{"margin": 1}'
    with pytest.raises(ValueError, match=r"'luminet'.* does not take \['margin'\]"):
        build_model(cfg)
    cfg = tiny_distill_cfg(teacher["config"], teacher["weights"])
    cfg.MODEL.DISTILL.TEMPERATURE = 0.0
    with pytest.raises(ValueError, match="temperature must be > 0, got 0.0"):
        build_model(cfg)


def test_teacher_that_is_not_a_faster_rcnn(teacher, tmp_path):
    cfg = tiny_rcnn_cfg(**{"MODEL.META_ARCHITECTURE": "DistillRCNN"})
    path = tmp_path / "distill_teacher.yaml"
    path.write_text(cfg.dump())
    with pytest.raises(ValueError, match="META_ARCHITECTURE 'DistillRCNN'; the teacher must be"):
        build_model(tiny_distill_cfg(str(path), teacher["weights"]))
    cfg = tiny_rcnn_cfg(
        **{
            "MODEL.ROI_HEADS.NAME": "CascadeROIHeads",
            "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG": True,
        }
    )
    path = tmp_path / "cascade_teacher.yaml"
    path.write_text(cfg.dump())
    with pytest.raises(ValueError, match="cascade heads are not supported"):
        build_model(tiny_distill_cfg(str(path), teacher["weights"]))


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
        assert torch.equal(model.teacher.state_dict()[k], v), k
