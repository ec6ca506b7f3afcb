"""The detection demo's stages that the study reuses, imported in this one place.

Data, backbone pretraining, teacher, seeded student initialisation, the training loop and the
COCO evaluation are those of the demo (``tools/demo.py``), so the study's students are trained
exactly like the demo's. ``tools/`` is not a package, so the script is loaded from its file;
when these functions move into a package, only the imports below change.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = [
    "REPO",
    "Clock",
    "TEACHER_CONFIG",
    "STUDENT_CONFIG",
    "TEACHER_BACKBONE",
    "STUDENT_BACKBONE",
    "TEACHER_NAME",
    "STUDENT_NAME",
    "evaluate",
    "get_teacher",
    "load_cfg",
    "pretrained_backbone",
    "student_init",
    "train",
]

REPO = Path(__file__).resolve().parents[2]


def _load_demo_script():
    path = REPO / "tools" / "demo.py"
    spec = importlib.util.spec_from_file_location("luminet_det_study_demo_script", path)
    if spec is None or spec.loader is None:  # pragma: no cover - a broken checkout
        raise ImportError(f"cannot load the demo's stages from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_demo = _load_demo_script()

Clock = _demo.Clock
TEACHER_CONFIG = _demo.TEACHER_CONFIG
STUDENT_CONFIG = _demo.STUDENT_CONFIG
TEACHER_BACKBONE = _demo.TEACHER_BACKBONE
STUDENT_BACKBONE = _demo.STUDENT_BACKBONE
TEACHER_NAME = _demo.TEACHER_NAME
STUDENT_NAME = _demo.STUDENT_NAME
evaluate = _demo.evaluate
get_teacher = _demo.get_teacher
load_cfg = _demo.load_cfg
pretrained_backbone = _demo.pretrained_backbone
student_init = _demo.student_init
train = _demo.train
