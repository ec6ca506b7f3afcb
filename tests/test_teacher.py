"""The teacher object: its input is exactly its own preprocessing, it stays frozen, and it is
built the same way from a config or from a module."""

import inspect

import numpy as np
import pytest
import torch
from detectron2.data import DatasetMapper
from detectron2.modeling import build_model
from detectron2.structures import ImageList
from PIL import Image

import luminet_det  # noqa: F401  (registers DistillRCNN)
from luminet_det import Teacher, build_teacher
from luminet_det.testing import tiny_distill_cfg, tiny_rcnn_cfg, write_teacher

#: detectron2 versions after 0.6 pass ``backbone.padding_constraints`` to ``ImageList``.
HAS_PADDING_CONSTRAINTS = (
    "padding_constraints" in inspect.signature(ImageList.from_tensors).parameters
)


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory):
    """A BGR teacher with BGR mean/std (the detectron2 model-zoo convention)."""
    config, weights, model = write_teacher(str(tmp_path_factory.mktemp("teacher")), seed=1)
    return config, weights, model


@pytest.fixture(scope="module")
def image_dicts(tmp_path_factory):
    """Two real image files of sizes that need padding (channels deliberately different)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    dicts = []
    for i, (h, w) in enumerate([(100, 130), (120, 90)]):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        rgb[..., 0] //= 2  # red and blue differ in distribution: a missed flip is visible
        path = root / f"{i}.png"
        Image.fromarray(rgb).save(path)
        dicts.append({"file_name": str(path), "height": h, "width": w, "image_id": i})
    return dicts


def _inputs(cfg, dicts):
    mapper = DatasetMapper(cfg, is_train=False)
    return [mapper(dict(d)) for d in dicts]


def test_rgb_student_bgr_teacher_input_equals_the_teachers_own_preprocessing(
    teacher_files, image_dicts
):
    config, weights, _ = teacher_files
    student_cfg = tiny_distill_cfg(config, weights)
    student_cfg.INPUT.FORMAT = "RGB"
    student_cfg.MODEL.PIXEL_MEAN = [123.675, 116.28, 103.53]
    student_cfg.MODEL.PIXEL_STD = [58.395, 57.12, 57.375]
    teacher = build_teacher(student_cfg)
    assert (teacher.image_format, teacher.input_format, teacher.flip_channels) == (
        "RGB",
        "BGR",
        True,
    )
    # What the teacher's own pipeline makes of the same files: its DatasetMapper (BGR), then
    # its own preprocess_image (mean/std, padding to the backbone's size divisibility).
    own = teacher.model.preprocess_image(_inputs(teacher.cfg, image_dicts))
    prepared = teacher.prepare_images(_inputs(student_cfg, image_dicts))
    assert prepared.image_sizes == own.image_sizes
    assert prepared.tensor.shape == own.tensor.shape
    assert any(h % 32 or w % 32 for h, w in own.image_sizes)  # padding was needed
    assert torch.equal(prepared.tensor, own.tensor)
    # The check can fail: without the channel flip the input differs.
    unflipped = teacher.model.preprocess_image(_inputs(student_cfg, image_dicts))
    assert not torch.allclose(unflipped.tensor, own.tensor)


def test_same_format_passes_the_images_through_the_teachers_preprocessing(teacher_files):
    _, _, model = teacher_files
    teacher = Teacher(build_model(tiny_rcnn_cfg()), image_format="BGR")
    batch = [{"image": torch.randint(0, 256, (3, 70, 90), dtype=torch.uint8)}]
    assert not teacher.flip_channels
    assert torch.equal(
        teacher.prepare_images(batch).tensor, teacher.model.preprocess_image(batch).tensor
    )


@pytest.mark.skipif(
    not HAS_PADDING_CONSTRAINTS,
    reason="the installed detectron2 (0.6) has no backbone.padding_constraints (square padding "
    "of ViTDet came after 0.6)",
)
def test_square_padding_teacher_input_equals_its_own_preprocessing(teacher_files, image_dicts):
    config, weights, _ = teacher_files
    student_cfg = tiny_distill_cfg(config, weights)
    student_cfg.INPUT.FORMAT = "RGB"
    teacher = build_teacher(student_cfg)
    backbone = teacher.model.backbone
    # A backbone that asks for square padding, as ViTDet's SimpleFeaturePyramid does.
    backbone.__class__ = type(
        "SquarePaddedFPN",
        (type(backbone),),
        {"padding_constraints": property(lambda self: {"square_size": 192})},
    )
    own = teacher.model.preprocess_image(_inputs(teacher.cfg, image_dicts))
    prepared = teacher.prepare_images(_inputs(student_cfg, image_dicts))
    assert prepared.tensor.shape == own.tensor.shape == (2, 3, 192, 192)
    assert torch.equal(prepared.tensor, own.tensor)


def test_from_model_equals_from_config_and_freezes(teacher_files):
    config, weights, saved = teacher_files
    student_cfg = tiny_distill_cfg(config, weights)
    from_cfg = build_teacher(student_cfg)
    module = build_model(tiny_rcnn_cfg())  # e.g. instantiate(lazy_cfg.model) for a LazyConfig
    module.train()
    from_module = Teacher.from_model(module, weights, image_format="BGR")
    for t in (from_cfg, from_module):
        assert not t.training and not t.model.training
        assert not any(p.requires_grad for p in t.parameters())
        for k, v in saved.state_dict().items():
            assert torch.equal(t.model.state_dict()[k], v), k
    assert from_cfg.cfg is not None and from_module.cfg is None


def test_bad_teacher_settings(teacher_files):
    _, weights, _ = teacher_files
    with pytest.raises(ValueError, match="TEACHER_AUTOCAST must be one of .* got 'fp8'"):
        Teacher(build_model(tiny_rcnn_cfg()), autocast="fp8")
    with pytest.raises(ValueError, match="student's INPUT.FORMAT 'L' to the teacher's 'BGR'"):
        Teacher(build_model(tiny_rcnn_cfg()), image_format="L")
    with pytest.raises(ValueError, match="lacks \\['preprocess_image', 'backbone'"):
        Teacher(torch.nn.Linear(2, 2))
    teacher = Teacher(build_model(tiny_rcnn_cfg()))
    with pytest.raises(ValueError, match="TEACHER_AUTOCAST"):
        teacher.autocast = "int8"
    teacher.autocast = "bf16"
    assert teacher.autocast == "bf16"


def test_teacher_config_with_sections_of_unregistered_losses_is_read(teacher_files, tmp_path):
    """A teacher config dumped by a run with a plugin loss holds its MODEL.DISTILL section; the
    teacher does not distil, so the section is accepted where the plugin is not registered."""
    config, weights, _ = teacher_files
    text = (
        open(config)
        .read()
        .replace("  DISTILL:\n", "  DISTILL:\n    SOME_PLUGIN_LOSS:\n      GAMMA: 2.0\n", 1)
    )
    assert "SOME_PLUGIN_LOSS" in text
    path = tmp_path / "teacher_with_plugin_section.yaml"
    path.write_text(text)
    teacher = build_teacher(tiny_distill_cfg(str(path), weights))
    assert teacher.cfg.MODEL.DISTILL.SOME_PLUGIN_LOSS.GAMMA == 2.0
    # the student's own config stays strict about unknown keys
    student = tiny_distill_cfg(str(path), weights)
    with pytest.raises(KeyError, match="MODEL.DISTILL.SOME_PLUGIN_LOSS"):
        student.merge_from_file(str(path))
