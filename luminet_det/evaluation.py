"""COCO evaluation that works with and without detectron2's compiled ops."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

#: The compiled ops behind ``COCOEvaluator(use_fast_impl=True)``.
FAST_COCO_EVAL_OPS = ("COCOevalEvaluateImages", "COCOevalAccumulate")


def coco_fast_eval_available() -> bool:
    """True when detectron2's C++ COCO evaluation (``use_fast_impl=True``) can run here.

    A detectron2 built with its C++ ops has it (``_C.COCOevalEvaluateImages`` and
    ``_C.COCOevalAccumulate``, used by ``detectron2.evaluation.fast_eval_api``). The
    Python-only builds that ``tools/install_detectron2.py`` can make have no compiled ops;
    COCOEvaluator must then use pycocotools' own implementation (``use_fast_impl=False``).
    """
    try:
        from detectron2 import _C
    except ImportError:
        return False
    return all(hasattr(_C, op) for op in FAST_COCO_EVAL_OPS)


def build_coco_evaluator(dataset_name: str, output_dir: str | None = None, **kwargs):
    """``COCOEvaluator`` for ``dataset_name`` with ``use_fast_impl`` set to what is available."""
    from detectron2.evaluation import COCOEvaluator

    fast = kwargs.pop("use_fast_impl", None)
    if fast is None:
        fast = coco_fast_eval_available()
    elif fast and not coco_fast_eval_available():
        raise ValueError(
            "use_fast_impl=True needs detectron2's compiled ops, which this installation lacks; "
            "pass use_fast_impl=False (AP computed by pycocotools)"
        )
    return COCOEvaluator(dataset_name, output_dir=output_dir, use_fast_impl=fast, **kwargs)
