"""Benchmark settings: named presets and the student/teacher configs they describe."""

from __future__ import annotations

import dataclasses
import logging
import os

from detectron2.config import CfgNode, get_cfg

from ..config import add_distill_config
from ..teacher import load_teacher_config
from ..testing import tiny_rcnn_cfg

logger = logging.getLogger(__name__)

__all__ = ["BenchSettings", "PRESETS", "get_preset", "build_bench_cfgs", "BENCH_CONFIG_DIR"]

#: ``configs/bench`` of a source checkout (the benchmark configs live next to the COCO ones).
BENCH_CONFIG_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "configs",
    "bench",
)


@dataclasses.dataclass
class BenchSettings:
    """What one benchmark run measures.

    Attributes:
        name: preset name (for the report).
        config: "tiny" (R18 -> R18 test model of :mod:`luminet_det.testing`) or a config file
            of the student (a DistillRCNN config whose ``MODEL.DISTILL.TEACHER_CONFIG`` names
            the teacher); a relative path is looked up in ``configs/bench`` first.
        images: images per batch.
        height, width: size of every (already resized) input image.
        rois: ``MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE`` (sampled ROIs per image); None keeps the
            config's value.
        steps: measured steps per variant (median/min/max over them).
        warmup: unmeasured steps per variant before the measured ones.
        device: "cpu" or "cuda".
        boxes_per_image: ground-truth boxes per synthetic image.
        memory_steps: steps each memory subprocess runs.
        seed: seed of the weights and of the synthetic batch.
    """

    name: str
    config: str
    images: int
    height: int
    width: int
    rois: int | None = None
    steps: int = 10
    warmup: int = 2
    device: str = "cpu"
    boxes_per_image: int = 4
    memory_steps: int = 2
    seed: int = 0

    def validate(self) -> BenchSettings:
        """Raise ValueError naming the first bad field; returns self."""
        for field in ("images", "height", "width", "steps", "memory_steps", "boxes_per_image"):
            if int(getattr(self, field)) < 1:
                raise ValueError(
                    f"benchmark setting {field} must be >= 1; got {getattr(self, field)}"
                )
        if self.warmup < 0:
            raise ValueError(f"benchmark setting warmup must be >= 0; got {self.warmup}")
        if self.rois is not None and self.rois < 1:
            raise ValueError(f"benchmark setting rois must be >= 1; got {self.rois}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"benchmark device must be 'cpu' or 'cuda'; got {self.device!r}")
        return self


PRESETS: dict[str, BenchSettings] = {
    # The smoke test: the tiny R18-FPN (64 channels, 3 classes) as both teacher and student.
    "tiny": BenchSettings(
        "tiny", "tiny", images=1, height=128, width=160, steps=2, warmup=1, memory_steps=1
    ),
    # The COCO R101 -> R18 pair at ~320 px, 2 images, 512 ROIs per image: minutes on 2 cores.
    "cpu-small": BenchSettings(
        "cpu-small", "r101_r18.yaml", images=2, height=320, width=427, steps=10, warmup=2
    ),
    # The paper's training setting: 800 x 1333, 8 images, 512 ROIs per image, on a GPU.
    "paper": BenchSettings(
        "paper",
        "r101_r18.yaml",
        images=8,
        height=800,
        width=1333,
        steps=20,
        warmup=5,
        device="cuda",
        boxes_per_image=7,
    ),
}


def get_preset(name: str) -> BenchSettings:
    """A copy of the preset ``name``.

    Raises:
        KeyError: unknown preset.
    """
    if name not in PRESETS:
        raise KeyError(f"unknown benchmark preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return dataclasses.replace(PRESETS[name])


def _resolve_config(path: str) -> str:
    for candidate in (os.path.join(BENCH_CONFIG_DIR, path), path):
        if os.path.isfile(candidate):
            return candidate
    raise ValueError(f"benchmark config {path!r} not found (looked in {BENCH_CONFIG_DIR} and cwd)")


def build_bench_cfgs(settings: BenchSettings) -> tuple[CfgNode, CfgNode]:
    """The student config (``LOSS`` left as in the file) and the teacher config of ``settings``.

    Both run on ``settings.device`` with random-init weights (``MODEL.WEIGHTS`` empty).

    Returns:
        ``(student_cfg, teacher_cfg)``, unfrozen.
    """
    if settings.config == "tiny":
        student = tiny_rcnn_cfg(**{"MODEL.META_ARCHITECTURE": "DistillRCNN"})
        teacher = tiny_rcnn_cfg()
    else:
        path = _resolve_config(settings.config)
        student = get_cfg()
        add_distill_config(student)
        student.merge_from_file(path)
        teacher = load_teacher_config(student, path).clone()
        teacher.defrost()
    for cfg in (student, teacher):
        cfg.MODEL.DEVICE = settings.device
        cfg.MODEL.WEIGHTS = ""
    if settings.rois is not None:
        student.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = int(settings.rois)
        # Enough proposals to sample that many ROIs per image.
        student.MODEL.RPN.POST_NMS_TOPK_TRAIN = max(
            student.MODEL.RPN.POST_NMS_TOPK_TRAIN, int(settings.rois)
        )
        student.MODEL.RPN.PRE_NMS_TOPK_TRAIN = max(
            student.MODEL.RPN.PRE_NMS_TOPK_TRAIN, 2 * int(settings.rois)
        )
    student.MODEL.DISTILL.WARMUP_ITERS = 0
    return student, teacher
