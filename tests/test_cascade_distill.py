"""Cascade R-CNN distillation with DistillRCNN: per-stage logits, stage weights, mixed pairs
(tiny R18-FPN models, CPU, random init; detectron2 0.6 and upstream main)."""

from pathlib import Path

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import GeneralizedRCNN, build_model
from detectron2.modeling.roi_heads import CascadeROIHeads, StandardROIHeads
from detectron2.utils.events import EventStorage
from tool_scripts import load_tool

import luminet_det  # noqa: F401  (registers DistillRCNN)
from luminet.losses import luminet_loss
from luminet_det import DistillRCNN, add_distill_config, load_teacher_config
from luminet_det.cascade import record_box_stages
from luminet_det.testing import (
    TINY_CASCADE_OPTS,
    random_batch,
    tiny_distill_cfg,
    tiny_rcnn_cfg,
    write_teacher,
)

REPO = Path(__file__).resolve().parent.parent
FROZEN_BN = {"MODEL.RESNETS.NORM": "FrozenBN"}
TWO_STAGES = {
    "MODEL.ROI_BOX_CASCADE_HEAD.IOUS": [0.5, 0.6],
    "MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS": [[10.0, 10.0, 5.0, 5.0], [20.0, 20.0, 10, 10]],
}


@pytest.fixture(scope="module")
def cascade_teacher(tmp_path_factory):
    config, weights, _ = write_teacher(
        str(tmp_path_factory.mktemp("cascade_teacher")), seed=1, **TINY_CASCADE_OPTS
    )
    return config, weights


@pytest.fixture(scope="module")
def faster_teacher(tmp_path_factory):
    config, weights, _ = write_teacher(str(tmp_path_factory.mktemp("faster_teacher")), seed=1)
    return config, weights


@pytest.fixture(scope="module")
def frozen_bn_cascade_teacher(tmp_path_factory):
    return write_teacher(
        str(tmp_path_factory.mktemp("cascade_teacher_fbn")),
        seed=2,
        **TINY_CASCADE_OPTS,
        **FROZEN_BN,
    )


def _build(cfg, seed=0):
    torch.manual_seed(seed)
    return build_model(cfg).train()


def _step(model, batch, it=0, seed=None):
    if seed is not None:
        torch.manual_seed(seed)  # the same RPN/ROI sampling in runs to compare
    with EventStorage(it):
        return model(batch)


def _copy_of(frozen_bn_cascade_teacher, **overrides):
    """A Cascade student that is an exact copy of the FrozenBN Cascade teacher."""
    config, weights, teacher_model = frozen_bn_cascade_teacher
    cfg = tiny_distill_cfg(config, weights, **TINY_CASCADE_OPTS, **FROZEN_BN, **overrides)
    cfg.INPUT.FORMAT = "BGR"  # the teacher's channel order and mean/std
    model = _build(cfg)
    model.load_state_dict(teacher_model.state_dict(), strict=True)
    return model


def _assert_trains_with_frozen_teacher(model, steps=2):
    """A few steps: finite positive distillation loss, gradient only in the student."""
    teacher = model.teacher
    assert not teacher.training and not teacher.model.training and model.training
    assert all(not p.requires_grad for p in teacher.parameters())
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for it in range(steps):
        losses = _step(model, random_batch(2, seed=it), it)
        distill = losses["loss_luminet"]
        assert torch.isfinite(distill) and distill > 0 and distill.requires_grad
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        model.train()  # what a trainer does: the teacher stays in eval mode
        assert not any(m.training for m in teacher.modules())
    assert all(p.grad is None for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), f"teacher tensor {k} changed"
    assert not {id(p) for p in teacher.parameters()} & {id(p) for p in model.parameters()}
    return losses


def test_cascade_pair_trains_per_stage_with_a_frozen_teacher(cascade_teacher):
    model = _build(tiny_distill_cfg(*cascade_teacher, **TINY_CASCADE_OPTS))
    assert isinstance(model.roi_heads, CascadeROIHeads)
    assert model.stage_weights == (1 / 3, 1 / 3, 1 / 3) and model.teacher_stages == (0, 1, 2)
    losses = _assert_trains_with_frozen_teacher(model)
    assert {f"loss_cls_stage{k}" for k in range(3)} <= set(losses)
    # the distillation term alone reaches every stage's classifier
    model.zero_grad()
    losses = _step(model, random_batch(2, seed=9))
    losses["loss_luminet"].backward()
    for k in range(3):
        grad = model.roi_heads.box_predictor[k].cls_score.weight.grad
        assert grad is not None and grad.abs().sum() > 0, f"no distillation gradient in stage {k}"


def test_copies_give_exactly_zero_per_stage_on_the_same_stage_proposals(
    frozen_bn_cascade_teacher,
):
    model = _copy_of(frozen_bn_cascade_teacher)
    batch = random_batch(2, seed=3)
    images = model.preprocess_image(batch)
    gt = [x["instances"] for x in batch]
    torch.manual_seed(4)
    with EventStorage(0):
        features = model.backbone(images.tensor)
        proposals, _ = model.proposal_generator(images, features, gt)
        with record_box_stages(model.roi_heads) as stages:
            model.roi_heads(images, features, proposals, gt)
    assert len(stages) == 3
    boxes = [[p.proposal_boxes for p in s.proposals] for s in stages]
    # later stages see other boxes than stage 0 (the refined boxes of the previous stage)
    assert not torch.equal(boxes[0][0].tensor, boxes[1][0].tensor)
    teacher = model.teacher.roi_logits_per_stage(batch, boxes, [0, 1, 2])
    for k, stage in enumerate(stages):
        assert stage.logits.shape == teacher[k].shape == (sum(len(b) for b in boxes[k]), 4)
        assert torch.equal(stage.logits, teacher[k]), f"stage {k} logits differ"
        assert luminet_loss(stage.logits, teacher[k]).item() == 0.0
    assert _step(model, batch, seed=4)["loss_luminet"].item() == 0.0

    # a different last stage: positive, unless its weight is 0 (then it is not distilled)
    with torch.no_grad():
        model.roi_heads.box_predictor[2].cls_score.weight.mul_(-1.5)
    assert _step(model, batch, seed=4)["loss_luminet"].item() > 0
    skip_last = _copy_of(
        frozen_bn_cascade_teacher, **{"MODEL.DISTILL.CASCADE_STAGE_WEIGHTS": [1, 1, 0]}
    )
    with torch.no_grad():
        skip_last.roi_heads.box_predictor[2].cls_score.weight.mul_(-1.5)
    assert _step(skip_last, batch, seed=4)["loss_luminet"].item() == 0.0


def test_stage_weights_give_the_weighted_mean_of_the_stage_losses(cascade_teacher):
    batch = random_batch(2, seed=6)

    def loss_with(weights):
        cfg = tiny_distill_cfg(
            *cascade_teacher,
            **TINY_CASCADE_OPTS,
            **{"MODEL.DISTILL.CASCADE_STAGE_WEIGHTS": weights},
        )
        return _step(_build(cfg), batch, seed=8)["loss_luminet"].item()

    per_stage = [loss_with(w) for w in ([1, 0, 0], [0, 1, 0], [0, 0, 1])]
    assert all(v > 0 for v in per_stage) and len(set(per_stage)) == 3
    assert loss_with([]) == pytest.approx(sum(per_stage) / 3, rel=1e-6)
    assert loss_with([1, 2, 1]) == pytest.approx(
        (per_stage[0] + 2 * per_stage[1] + per_stage[2]) / 4, rel=1e-6
    )


def test_each_stage_head_runs_once_in_student_and_teacher(cascade_teacher):
    model = _build(tiny_distill_cfg(*cascade_teacher, **TINY_CASCADE_OPTS))
    calls = {}
    for role, heads in (("student", model.roi_heads), ("teacher", model.teacher.model.roi_heads)):
        for k, head in enumerate(heads.box_head):
            head.register_forward_hook(
                lambda *a, key=(role, k): calls.setdefault(key, []).append(1)
            )
    backbone_calls = []
    model.teacher.model.backbone.register_forward_hook(lambda *a: backbone_calls.append(1))
    _step(model, random_batch(2, seed=1))
    assert {key: len(v) for key, v in calls.items()} == {
        (role, k): 1 for role in ("student", "teacher") for k in range(3)
    }
    assert len(backbone_calls) == 1


def test_faster_teacher_scores_every_stage_of_a_cascade_student(faster_teacher):
    model = _build(tiny_distill_cfg(*faster_teacher, **TINY_CASCADE_OPTS))
    assert isinstance(model.roi_heads, CascadeROIHeads)
    assert type(model.teacher.model.roi_heads) is StandardROIHeads
    assert model.teacher_stages == (0, 0, 0)
    _assert_trains_with_frozen_teacher(model)


def test_cascade_teacher_for_a_faster_student_needs_the_teacher_stage(cascade_teacher):
    with pytest.raises(ValueError, match="CASCADE_TEACHER_STAGE -1 matches.* 3 stages and the"):
        _build(tiny_distill_cfg(*cascade_teacher))
    model = _build(tiny_distill_cfg(*cascade_teacher, **{"MODEL.DISTILL.CASCADE_TEACHER_STAGE": 2}))
    assert type(model.roi_heads) is StandardROIHeads and model.teacher_stages == (2,)
    _assert_trains_with_frozen_teacher(model)
    # the chosen teacher stage is the one that scores the student's ROIs
    batch = random_batch(2, seed=2)
    boxes = [x["instances"].gt_boxes for x in batch]
    seen = []
    model.teacher.model.roi_heads.box_predictor[2].register_forward_hook(
        lambda _m, _i, out: seen.append(out[0])
    )
    model.teacher.roi_logits(batch, boxes, stage=2)
    assert len(seen) == 1


def test_cascade_teacher_with_other_stage_count(tmp_path):
    config, weights, _ = write_teacher(str(tmp_path), seed=3, **TINY_CASCADE_OPTS, **TWO_STAGES)
    with pytest.raises(ValueError, match="Cascade teacher has 2 stages and the student 3"):
        _build(tiny_distill_cfg(config, weights, **TINY_CASCADE_OPTS))
    model = _build(
        tiny_distill_cfg(
            config, weights, **TINY_CASCADE_OPTS, **{"MODEL.DISTILL.CASCADE_TEACHER_STAGE": 1}
        )
    )
    assert model.teacher_stages == (1, 1, 1)
    losses = _step(model, random_batch(2, seed=0))
    assert torch.isfinite(losses["loss_luminet"]) and losses["loss_luminet"] > 0


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"MODEL.DISTILL.CASCADE_STAGE_WEIGHTS": [1.0, 1.0]}, "has 2 weights .* 3 box stage"),
        ({"MODEL.DISTILL.CASCADE_STAGE_WEIGHTS": [1.0, -0.5, 1.0]}, "finite and >= 0"),
        ({"MODEL.DISTILL.CASCADE_STAGE_WEIGHTS": [1.0, float("nan"), 1.0]}, "finite and >= 0"),
        ({"MODEL.DISTILL.CASCADE_STAGE_WEIGHTS": [0.0, 0.0, 0.0]}, "are all zero"),
        ({"MODEL.DISTILL.CASCADE_TEACHER_STAGE": 3}, r"stage of the Cascade teacher \(0..2\)"),
        ({"MODEL.DISTILL.CASCADE_TEACHER_STAGE": -2}, r"stage of the Cascade teacher \(0..2\)"),
    ],
)
def test_bad_cascade_values_name_their_key(cascade_teacher, overrides, match):
    key = next(iter(overrides))
    cfg = tiny_distill_cfg(*cascade_teacher, **TINY_CASCADE_OPTS, **overrides)
    with pytest.raises(ValueError, match=match) as info:
        build_model(cfg)
    assert key in str(info.value)


def test_bad_values_for_other_students_and_teachers(faster_teacher):
    # a single-stage student takes one weight or none
    with pytest.raises(ValueError, match="CASCADE_STAGE_WEIGHTS has 3 weights .* 1 box stage"):
        build_model(
            tiny_distill_cfg(*faster_teacher, **{"MODEL.DISTILL.CASCADE_STAGE_WEIGHTS": [1, 1, 1]})
        )
    # a teacher stage asked of a teacher with a single box head
    with pytest.raises(
        ValueError, match="CASCADE_TEACHER_STAGE is 0, but the teacher has a single"
    ):
        build_model(
            tiny_distill_cfg(
                *faster_teacher, **TINY_CASCADE_OPTS, **{"MODEL.DISTILL.CASCADE_TEACHER_STAGE": 0}
            )
        )
    # ... or of no teacher at all
    with pytest.raises(ValueError, match="CASCADE_TEACHER_STAGE is set but there is no teacher"):
        build_model(
            tiny_distill_cfg(
                *faster_teacher,
                loss="none",
                **TINY_CASCADE_OPTS,
                **{"MODEL.DISTILL.CASCADE_TEACHER_STAGE": 0},
            )
        )


def test_student_checkpoint_loads_strictly_into_a_stock_cascade_rcnn(cascade_teacher, tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer

    model = _build(tiny_distill_cfg(*cascade_teacher, **TINY_CASCADE_OPTS))
    _step(model, random_batch(2))
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("model_final")
    stock_cfg = tiny_rcnn_cfg(**TINY_CASCADE_OPTS)
    stock = build_model(stock_cfg)
    assert type(stock) is GeneralizedRCNN and isinstance(stock.roi_heads, CascadeROIHeads)
    saved = torch.load(tmp_path / "model_final.pth", weights_only=False)["model"]
    stock.load_state_dict(saved, strict=True)
    # the same through the extraction tool's strict verification
    config_file = tmp_path / "student.yaml"
    config_file.write_text(stock_cfg.dump())
    extract = load_tool("extract_student")
    out = tmp_path / "student.pth"
    assert (
        extract.main(
            [str(tmp_path / "model_final.pth"), str(out), "--config-file", str(config_file)]
        )
        == 0
    )
    # inference of the stock model with the distilled weights
    stock.eval()
    with torch.no_grad():
        assert "instances" in stock([{"image": random_batch(1)[0]["image"]}])[0]
    assert isinstance(model, DistillRCNN)


def test_shipped_cascade_config_resolves_and_builds():
    train_net = load_tool("train_net")
    path = REPO / "configs" / "coco" / "cascade_r50_r18_luminet.yaml"
    cfg = get_cfg()
    add_distill_config(cfg)
    cfg.merge_from_file(str(path))
    assert cfg.MODEL.META_ARCHITECTURE == "DistillRCNN"
    assert cfg.MODEL.ROI_HEADS.NAME == "CascadeROIHeads" and not cfg.MODEL.MASK_ON
    assert list(cfg.MODEL.DISTILL.CASCADE_STAGE_WEIGHTS) == []
    assert cfg.MODEL.DISTILL.CASCADE_TEACHER_STAGE == -1
    teacher_cfg = load_teacher_config(cfg)  # zoo:// config, resolved without a download
    assert teacher_cfg.MODEL.ROI_HEADS.NAME == "CascadeROIHeads"
    assert len(teacher_cfg.MODEL.ROI_BOX_CASCADE_HEAD.IOUS) == len(
        cfg.MODEL.ROI_BOX_CASCADE_HEAD.IOUS
    )
    assert teacher_cfg.MODEL.ROI_HEADS.NUM_CLASSES == cfg.MODEL.ROI_HEADS.NUM_CLASSES == 80
    assert "cascade_mask_rcnn_R_50_FPN_3x" in cfg.MODEL.DISTILL.TEACHER_WEIGHTS
    cfg = train_net.student_only_cfg(cfg).clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    student = build_model(cfg)
    assert isinstance(student.roi_heads, CascadeROIHeads) and student.teacher is None
    assert student.backbone.bottom_up.stem.conv1.weight.shape[0] == 64  # R18


def test_cascade_step_on_images_without_annotations(cascade_teacher):
    model = _build(tiny_distill_cfg(*cascade_teacher, **TINY_CASCADE_OPTS))
    losses = _step(model, random_batch(2, seed=1, boxes_per_image=0))
    distill = losses["loss_luminet"]
    assert torch.isfinite(distill) and distill.requires_grad
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize(
    "loss, overrides",
    [("kd", {}), ("dkd", {}), ("luminet", {"MODEL.DISTILL.LUMINET.STATS": "image"})],
)
def test_cascade_stages_with_other_losses_and_statistics(
    cascade_teacher, monkeypatch, loss, overrides
):
    """Each stage's loss gets that stage's gt classes (DKD) and per-image groups (STATS image)."""
    import luminet_det.distill_rcnn as distill_rcnn

    cfg = tiny_distill_cfg(*cascade_teacher, loss=loss, **TINY_CASCADE_OPTS, **overrides)
    model = _build(cfg)
    seen = []
    original = distill_rcnn.apply_distill_loss

    def spy(loss_fn, student, teacher, target, group_sizes):
        assert student.shape == teacher.shape and target.shape == (student.shape[0],)
        assert sum(group_sizes) == student.shape[0] and len(group_sizes) == 2
        seen.append(student.shape[0])
        return original(loss_fn, student, teacher, target, group_sizes=group_sizes)

    monkeypatch.setattr(distill_rcnn, "apply_distill_loss", spy)
    losses = _step(model, random_batch(2, seed=2), seed=3)
    assert torch.isfinite(losses[f"loss_{loss}"]) and losses[f"loss_{loss}"] > 0
    assert len(seen) == 3  # one call per stage


def test_stage_recording_checks_that_each_stage_ran_and_cleans_up(cascade_teacher):
    model = _build(tiny_distill_cfg(*cascade_teacher, **TINY_CASCADE_OPTS))
    with pytest.raises(RuntimeError, match="stage 0 to run once .* ran 0 times"):
        with record_box_stages(model.roi_heads):
            pass  # no forward: nothing recorded
    for predictor in model.roi_heads.box_predictor:
        assert "losses" not in vars(predictor) and not predictor._forward_hooks


@pytest.mark.parametrize(
    "teacher_autocast, expected", [("", torch.bfloat16), ("fp32", torch.float32)]
)
def test_cascade_under_ambient_autocast_like_the_amp_trainer(
    cascade_teacher, teacher_autocast, expected
):
    """SOLVER.AMP.ENABLED runs the model under autocast: every teacher stage inherits it or
    opts out, and the per-stage losses compute in float32."""
    cfg = tiny_distill_cfg(*cascade_teacher, **TINY_CASCADE_OPTS)
    cfg.MODEL.DISTILL.TEACHER_AUTOCAST = teacher_autocast
    model = _build(cfg)
    seen = []
    for predictor in model.teacher.model.roi_heads.box_predictor:
        predictor.register_forward_hook(lambda _m, _i, out: seen.append(out[0].dtype))
    with EventStorage(0), torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(random_batch(2, seed=13))
    assert seen == [expected] * 3
    assert losses["loss_luminet"].dtype == torch.float32
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for predictor in model.roi_heads.box_predictor:
        assert all(
            p.grad is not None and torch.isfinite(p.grad).all() for p in predictor.parameters()
        )
