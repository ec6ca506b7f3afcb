"""Config loading of the classification distiller: errors, and every shipped config builds."""

import glob
import os
import subprocess
import sys

import pytest
import torch

from luminet.config import load_config
from luminet.config.config import teacher_names
from luminet.distillers import build_distiller, build_student, build_teacher, distill_loss_settings
from luminet.losses import register_distill_loss, unregister_distill_loss

ROOT = os.path.join(os.path.dirname(__file__), "..")
CIFAR_CONFIGS = sorted(
    glob.glob(os.path.join(ROOT, "configs", "cifar100", "**", "*.yaml"), recursive=True)
)
IMAGENET_CONFIGS = sorted(
    glob.glob(os.path.join(ROOT, "configs", "imagenet", "**", "*.yaml"), recursive=True)
)
DIGITS_CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "digits", "*.yaml")))
TABLE1 = {
    "res56_res20", "res110_res32", "res32x4_res8x4", "wrn40_2_wrn16_2", "wrn40_2_wrn40_1",
    "vgg13_vgg8", "res32x4_shuv1", "wrn40_2_shuv1", "vgg13_mv2", "res50_mv2", "res32x4_shuv2",
}  # fmt: skip


def _rel(path):
    return os.path.relpath(path, ROOT)


def test_every_table1_pair_has_luminet_kd_dkd_configs():
    for kind in ("luminet", "kd", "dkd"):
        found = {os.path.basename(p)[:-5] for p in CIFAR_CONFIGS if f"/{kind}/" in p}
        assert found == TABLE1, kind
    for pair in ("r34_r18", "r50_mv1"):
        for kind in ("luminet", "kd", "dkd"):
            assert os.path.isfile(os.path.join(ROOT, "configs", "imagenet", pair, f"{kind}.yaml"))


@pytest.mark.parametrize("path", CIFAR_CONFIGS, ids=_rel)
def test_cifar_config_loads_and_builds(path):
    cfg = load_config(path)
    assert cfg.DATASET.TYPE == "cifar100"
    student = build_student(cfg, num_classes=100)
    assert student.model_name == cfg.DISTILLER.STUDENT
    kind, kwargs, ce, _, warmup = distill_loss_settings(cfg)
    if kind != "none":
        teacher = build_teacher(cfg, 100, load_weights=False)
        assert [m.model_name for m in teacher.members] == teacher_names(cfg)
        assert len(cfg.DISTILLER.TEACHER_WEIGHTS) == 1
        assert cfg.SOLVER.EPOCHS == 240 and cfg.SOLVER.BATCH_SIZE == 64
        assert list(cfg.SOLVER.LR_DECAY_STAGES) == [150, 180, 210]
    if kind in ("dkd", "luminet"):
        assert warmup == 20


def test_official_luminet_values():
    cfg = load_config(os.path.join(ROOT, "configs/cifar100/luminet/res32x4_res8x4.yaml"))
    assert (cfg.LUMINET.ALPHA, cfg.LUMINET.T, cfg.LUMINET.CE_WEIGHT, cfg.SOLVER.LR) == (
        33.0, 4.0, 2.0, 0.05)  # fmt: skip
    cfg = load_config(os.path.join(ROOT, "configs/cifar100/luminet/vgg13_vgg8.yaml"))
    assert (cfg.LUMINET.ALPHA, cfg.LUMINET.T, cfg.LUMINET.CE_WEIGHT) == (70.0, 8.0, 1.0)
    cfg = load_config(os.path.join(ROOT, "configs/imagenet/r50_mv1/luminet.yaml"))
    assert (cfg.SOLVER.BATCH_SIZE, cfg.SOLVER.LR, cfg.LUMINET.T, cfg.LUMINET.WARMUP) == (
        256, 0.1, 0.7, 1)  # fmt: skip


@pytest.mark.parametrize("path", IMAGENET_CONFIGS, ids=_rel)
def test_imagenet_config_loads_and_builds(path):
    cfg = load_config(path)
    if os.path.basename(path) == "base.yaml":
        return
    build_student(cfg, num_classes=1000)
    teacher = build_teacher(cfg, 1000, load_weights=False)
    assert teacher is not None and not any(p.requires_grad for p in teacher.parameters())


@pytest.mark.parametrize("path", DIGITS_CONFIGS, ids=_rel)
def test_digits_config_loads(path):
    cfg = load_config(path)
    assert cfg.DATASET.TYPE == "digits"
    build_student(cfg, num_classes=10, in_channels=1)


def test_unknown_key_in_file_names_key_and_suggests(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("SOLVER:\n  EPOCH: 3\n")
    with pytest.raises(KeyError, match=r"SOLVER\.EPOCH.*did you mean SOLVER\.EPOCHS"):
        load_config(bad)


def test_unknown_override_key():
    with pytest.raises(KeyError, match=r"unknown config key 'DATASET\.TYPO'"):
        load_config(None, ["DATASET.TYPO", "digits"])


def test_base_inheritance_and_override(tmp_path):
    (tmp_path / "base.yaml").write_text("SOLVER:\n  EPOCHS: 7\n  LR: 0.3\n")
    (tmp_path / "child.yaml").write_text('_BASE_: "base.yaml"\nSOLVER:\n  LR: 0.2\n')
    cfg = load_config(tmp_path / "child.yaml", ["SOLVER.EPOCHS", "9"])
    assert (cfg.SOLVER.EPOCHS, cfg.SOLVER.LR) == (9, 0.2)


@pytest.mark.parametrize(
    "opts, exc, pattern",
    [
        (["SOLVER.EPOCHS"], ValueError, "KEY VALUE pairs"),
        (["SOLVER.EPOCHS", "abc"], ValueError, "Type mismatch"),
        (["DISTILLER.TYPE", "fitnet"], KeyError, "unknown DISTILLER.TYPE 'fitnet'"),
        (["DISTILLER.TYPE", "kd"], ValueError, "needs a teacher"),
        (["DISTILLER.TEACHER", "a", "DISTILLER.TEACHERS", "['b']"], ValueError, "not both"),
        (
            ["DISTILLER.TEACHERS", "['a', 'b']", "DISTILLER.TEACHER_WEIGHTS", "['x']"],
            ValueError,
            "1 path.*2 teacher",
        ),
        (["SOLVER.LR_DECAY_STAGES", "[20, 10]"], ValueError, "increasing"),
        (["SOLVER.TYPE", "Adam"], ValueError, "only 'SGD'"),
    ],
)
def test_bad_values(opts, exc, pattern):
    with pytest.raises(exc, match=pattern):
        load_config(None, opts)


def test_unknown_model_name():
    cfg = load_config(None, ["DISTILLER.STUDENT", "resnet9000"])
    with pytest.raises(KeyError, match="unknown model 'resnet9000'"):
        build_student(cfg, 10)


def test_missing_teacher_weights_is_an_error():
    cfg = load_config(None, ["DISTILLER.TYPE", "kd", "DISTILLER.TEACHER", "resnet8"])
    with pytest.raises(ValueError, match="need one checkpoint each"):
        build_teacher(cfg, 10)


def test_classification_stack_does_not_import_detectron2():
    code = (
        "import sys, luminet.config, luminet.data, luminet.distillers, luminet.engine; "
        "from luminet.data.digit_crops import DigitCropsSpec, render_digit_crops; "
        "render_digit_crops(DigitCropsSpec(num_train=10, num_val=10, num_test=10)); "
        "assert 'detectron2' not in sys.modules, 'detectron2 imported'; "
        "assert 'luminet_det' not in sys.modules, 'luminet_det imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_official_key_names_through_the_alias_table():
    cfg = load_config(
        None, ["DISTILLER.TYPE", "luminet", "DISTILLER.TEACHER", "resnet8", "LUMINET.T", "2.0"]
    )
    kind, kwargs, ce, weight, warmup = distill_loss_settings(cfg)
    # LUMINET.T is the official name of the temperature; CE_WEIGHT and WARMUP are the trainer's
    assert kwargs == {"alpha": 31.0, "temperature": 2.0, "eps": 1e-5}
    assert (ce, weight, warmup) == (2.0, 1.0, 20.0)  # the official code's defaults
    cfg = load_config(None, ["DISTILLER.TYPE", "dkd", "DISTILLER.TEACHER", "resnet8"])
    assert distill_loss_settings(cfg)[1] == {"alpha": 1.0, "beta": 8.0, "temperature": 4.0}
    cfg = load_config(None, ["DISTILLER.TYPE", "kd", "DISTILLER.TEACHER", "resnet8"])
    assert distill_loss_settings(cfg)[1:4] == ({"temperature": 4.0}, 0.1, 0.9)


def test_loss_errors_name_the_config_key(tmp_path):
    cfg = load_config(
        None,
        ["DISTILLER.TYPE", "luminet", "DISTILLER.TEACHER", "resnet8", "LUMINET.T", "0.0",
         "DISTILLER.TEACHER_WEIGHTS", "['unused.pth']"],
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"^LUMINET.T 0.0: .*temperature must be > 0"):
        build_distiller(cfg, 10)


def test_third_party_loss_gets_its_own_config_section():
    """A loss registered with ``config={...}`` gets section ``NAME`` (with the trainer's
    CE_WEIGHT and WARMUP) in every config loaded afterwards."""

    @register_distill_loss("test_cls_margin", config={"MARGIN": 0.5})
    class MarginLoss(torch.nn.Module):
        def __init__(self, margin=0.5, temperature=1.0):
            super().__init__()
            self.margin, self.temperature = margin, temperature

        def forward(self, logits_student, logits_teacher, target=None):
            gap = (logits_student - logits_teacher.detach()).abs() - self.margin
            return gap.clamp_min(0).mean()

    try:
        _check_margin_section()
    finally:  # other tests dump configs with a section per registered loss
        unregister_distill_loss("test_cls_margin")
    assert "TEST_CLS_MARGIN" not in load_config(None)


def _check_margin_section():
    cfg = load_config(
        None,
        ["DISTILLER.TYPE", "test_cls_margin", "DISTILLER.TEACHER", "resnet8",
         "TEST_CLS_MARGIN.MARGIN", "0.25", "TEST_CLS_MARGIN.CE_WEIGHT", "0.5"],
    )  # fmt: skip
    assert set(cfg.TEST_CLS_MARGIN) == {"CE_WEIGHT", "WARMUP", "MARGIN"}
    assert distill_loss_settings(cfg) == ("test_cls_margin", {"margin": 0.25}, 0.5, 1.0, 0.0)
    with pytest.raises(KeyError, match="TEST_CLS_MARGIN.SCALE"):
        load_config(None, ["DISTILLER.TYPE", "test_cls_margin", "TEST_CLS_MARGIN.SCALE", "2"])


@pytest.mark.parametrize(
    "path", sorted(glob.glob(os.path.join(ROOT, "configs", "digit_crops", "*.yaml"))), ids=_rel
)
def test_digit_crops_config_loads(path):
    cfg = load_config(path)
    assert cfg.DATASET.TYPE == "digit_crops"
    build_student(cfg, num_classes=10, in_channels=3)
    name = os.path.basename(path)
    # Students learn from a subset; the teacher from every train crop.
    assert cfg.DATASET.DIGIT_CROPS.TRAIN_SUBSET == (0 if name == "teacher.yaml" else 2000)
    if name not in ("base.yaml", "teacher.yaml", "none.yaml"):
        assert cfg[cfg.DISTILLER.TYPE.upper()].WARMUP == 2  # the same warm-up for every distiller
