"""The loss as someone else's Detectron2 project would use it: by config, or from model code."""

import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from torch import nn

from luminet.losses import (
    available_distill_losses,
    build_distill_loss,
    register_distill_loss,
    unregister_distill_loss,
)
from luminet_det import add_distill_config, build_distill_loss_from_cfg
from luminet_det.testing import random_batch, tiny_rcnn_cfg, write_teacher


class TinyROIClassifier(nn.Module):
    """A third party's own ROI classification head: pooled ROI features -> K+1 class logits."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.cls_score = nn.Linear(hidden, num_classes + 1)

    def forward(self, roi_features):
        return self.cls_score(self.fc(roi_features))


def _reference_luminet(s, t, temperature):
    """LumiNet written out independently: standardise each class over the ROIs, then KL."""

    def standardise(z):
        return (z - z.mean(0)) / (z.var(0, unbiased=False) + 1e-5).sqrt()

    p_t = F.softmax(standardise(t) / temperature, dim=1)
    log_p_s = F.log_softmax(standardise(s) / temperature, dim=1)
    return (p_t * (p_t.log() - log_p_s)).sum(1).mean()


def test_loss_from_model_code_on_roi_logits():
    torch.manual_seed(0)
    num_classes, n_rois = 5, 48
    student = TinyROIClassifier(32, num_classes, hidden=16)
    teacher = TinyROIClassifier(32, num_classes, hidden=64).eval().requires_grad_(False)
    roi_features = torch.randn(n_rois, 32)
    gt_classes = torch.randint(0, num_classes + 1, (n_rois,))  # background = num_classes

    logits_s = student(roi_features)
    with torch.no_grad():
        logits_t = teacher(roi_features)
    distill = build_distill_loss("luminet", temperature=2.0)
    loss = distill(logits_s, logits_t)
    torch.testing.assert_close(loss, _reference_luminet(logits_s, logits_t, 2.0))
    total = F.cross_entropy(logits_s, gt_classes) + 1.0 * loss
    total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())

    # DKD needs the ROI targets; the same call shape covers it
    dkd = build_distill_loss("dkd", alpha=1.0, beta=0.25, temperature=1.0)
    assert torch.isfinite(dkd(logits_s.detach(), logits_t, gt_classes))


class ScaledL2Logits(nn.Module):
    """A new loss registered by name, with its config section: scale * mean squared difference
    of the logits."""

    calls = []

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def forward(self, logits_student, logits_teacher, target=None):
        ScaledL2Logits.calls.append((tuple(logits_student.shape), target is not None))
        return self.scale * (logits_student - logits_teacher).pow(2).mean()


@pytest.fixture(autouse=True, scope="module")
def registered_losses():
    """The third party's losses, registered for this module's tests only (configs dumped by
    other tests must not carry their sections)."""
    register_distill_loss("test_scaled_l2", ScaledL2Logits, config={"SCALE": 1.0})
    yield
    unregister_distill_loss("test_scaled_l2")


def test_switch_an_existing_project_to_distillation_by_config(tmp_path):
    """A user's stock Faster R-CNN config becomes a distilled one by config keys only."""
    assert "test_scaled_l2" in available_distill_losses()
    teacher_cfg, teacher_weights, _ = write_teacher(str(tmp_path), seed=3)

    cfg = tiny_rcnn_cfg()  # "their" GeneralizedRCNN config
    add_distill_config(cfg)  # idempotent
    assert cfg.MODEL.DISTILL.TEST_SCALED_L2.SCALE == 1.0  # the section declared at registration
    cfg.merge_from_list(
        ["MODEL.META_ARCHITECTURE", "DistillRCNN",
         "MODEL.DISTILL.TEACHER_CONFIG", teacher_cfg,
         "MODEL.DISTILL.TEACHER_WEIGHTS", teacher_weights,
         "MODEL.DISTILL.LOSS", "test_scaled_l2",
         "MODEL.DISTILL.TEST_SCALED_L2.SCALE", "3.0",
         "MODEL.DISTILL.LOSS_WEIGHT", "0.5"]
    )  # fmt: skip

    torch.manual_seed(0)
    model = build_model(cfg).train()
    assert model.distill_loss.scale == 3.0
    ScaledL2Logits.calls.clear()
    batch = random_batch(2, seed=1)
    with EventStorage(0):
        torch.manual_seed(5)
        losses = model(batch)
    assert ScaledL2Logits.calls == [((2 * 32, 4), True)]  # 32 sampled ROIs per image, K+1 = 4
    value = losses["loss_test_scaled_l2"]
    assert torch.isfinite(value) and value > 0

    # the same number, recomputed from the public pieces of the model
    with EventStorage(0):
        torch.manual_seed(5)
        images = model.preprocess_image(batch)
        features = model.backbone(images.tensor)
        gt = [b["instances"] for b in batch]
        proposals, _ = model.proposal_generator(images, features, gt)
        sampled = model.roi_heads.label_and_sample_proposals(proposals, gt)
        boxes = [p.proposal_boxes for p in sampled]
        s = model.student_roi_logits(features, boxes)
        t = model.teacher.roi_logits(batch, boxes)
    torch.testing.assert_close(value, 0.5 * 3.0 * (s - t).pow(2).mean())


class KDSigmoid(nn.Module):
    """A dense-head style loss (per-class sigmoid KD) registered by a third party, with a
    temperature (shared key) and a focusing parameter of its own."""

    def __init__(self, temperature: float = 1.0, gamma: float = 2.0):
        super().__init__()
        if not gamma >= 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.temperature, self.gamma = temperature, gamma

    def forward(self, logits_student, logits_teacher, target=None):
        p_t = torch.sigmoid(logits_teacher.detach().float() / self.temperature)
        s = logits_student.float() / self.temperature
        ce = F.binary_cross_entropy_with_logits(s, p_t, reduction="none")
        return (ce * (p_t - torch.sigmoid(s)).abs().pow(self.gamma)).mean()


def test_third_party_loss_gets_its_own_config_section(tmp_path):
    """``register_distill_loss(name, factory, config=...)``: section MODEL.DISTILL.<NAME>, keys
    lower-cased are the keyword arguments, checked against the signature; errors name the key."""
    register_distill_loss("test_kd_sigmoid", KDSigmoid, config={"GAMMA": 2.0})
    try:
        _check_kd_sigmoid_sections(tmp_path)
    finally:
        unregister_distill_loss("test_kd_sigmoid")
    cfg = tiny_rcnn_cfg()
    add_distill_config(cfg)
    assert "TEST_KD_SIGMOID" not in cfg.MODEL.DISTILL


def _check_kd_sigmoid_sections(tmp_path):
    teacher_cfg, teacher_weights, _ = write_teacher(str(tmp_path), seed=3)

    def cfg_with(*opts):
        cfg = tiny_rcnn_cfg()
        add_distill_config(cfg)
        cfg.merge_from_list(
            ["MODEL.META_ARCHITECTURE", "DistillRCNN",
             "MODEL.DISTILL.TEACHER_CONFIG", teacher_cfg,
             "MODEL.DISTILL.TEACHER_WEIGHTS", teacher_weights,
             "MODEL.DISTILL.LOSS", "test_kd_sigmoid", *opts]
        )  # fmt: skip
        return cfg

    loss = build_distill_loss_from_cfg(
        cfg_with("MODEL.DISTILL.TEST_KD_SIGMOID.GAMMA", "0.5", "MODEL.DISTILL.TEMPERATURE", "2.0")
    )
    assert isinstance(loss, KDSigmoid) and (loss.gamma, loss.temperature) == (0.5, 2.0)
    with pytest.raises(ValueError, match=r"^MODEL.DISTILL.TEST_KD_SIGMOID.GAMMA -1.0: .*gamma"):
        build_distill_loss_from_cfg(cfg_with("MODEL.DISTILL.TEST_KD_SIGMOID.GAMMA", "-1.0"))
    # a key the loss does not take, added by hand, is named
    cfg = cfg_with()
    cfg.MODEL.DISTILL.TEST_KD_SIGMOID.ALPHA = 1.0
    with pytest.raises(ValueError, match="MODEL.DISTILL.TEST_KD_SIGMOID.ALPHA is not an argument"):
        build_distill_loss_from_cfg(cfg)
    # a loss without a temperature: the shared TEMPERATURE must stay at its default
    cfg = cfg_with("MODEL.DISTILL.LOSS", "test_scaled_l2", "MODEL.DISTILL.TEMPERATURE", "4.0")
    with pytest.raises(
        ValueError, match="MODEL.DISTILL.TEMPERATURE is 4.0, but .* no 'temperature'"
    ):
        build_distill_loss_from_cfg(cfg)
    # a declared key that is not an argument of the factory is refused at registration
    with pytest.raises(ValueError, match="'BETA' .* is not a keyword argument"):
        register_distill_loss("test_kd_sigmoid_bad", KDSigmoid, config={"BETA": 1.0})

    # the whole model trains with it
    torch.manual_seed(0)
    model = build_model(cfg_with()).train()
    with EventStorage(0):
        losses = model(random_batch(2, seed=2))
    assert torch.isfinite(losses["loss_test_kd_sigmoid"]) and losses["loss_test_kd_sigmoid"] > 0
