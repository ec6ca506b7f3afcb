"""Refuse to evaluate a model that ``MODEL.WEIGHTS`` left mostly random.

detectron2 loads whatever keys of a checkpoint match and only logs the rest, so evaluating a
checkpoint whose keys are all prefixed (``student.backbone...``, ``teacher.*``) silently
evaluates a randomly initialised model (AP 0.0). At evaluation time, weights that fill less than
:data:`MIN_MATCHED_FRACTION` of the model are an error; smaller gaps are a warning.
"""

from __future__ import annotations

import logging
from collections import Counter

import torch

from .checkpointer import ResumableCheckpointer, WeightsLoadReport

__all__ = ["MIN_MATCHED_FRACTION", "check_weights_fit", "load_weights_for_evaluation"]

logger = logging.getLogger(__name__)

#: Below this fraction of the model's keys filled by the checkpoint, evaluation is refused.
MIN_MATCHED_FRACTION = 0.5


def _prefix_hint(file_keys: list[str], model_keys: list[str]) -> str:
    firsts = Counter(k.split(".", 1)[0] for k in file_keys)
    model_firsts = {k.split(".", 1)[0] for k in model_keys}
    foreign = {p: n for p, n in firsts.items() if p not in model_firsts}
    if not foreign:
        return ""
    top = ", ".join(f"'{p}.' ({n} keys)" for p, n in Counter(foreign).most_common(3))
    return (
        f"; the file's keys start with {top}, which this model does not have: a checkpoint of "
        "a student inside a distillation wrapper? Extract the student with "
        "`python tools/extract_student.py IN.pth OUT.pth --config-file CONFIG` and evaluate OUT.pth"
    )


def check_weights_fit(report: WeightsLoadReport, key: str = "MODEL.WEIGHTS") -> None:
    """Raise when ``report`` shows that most of the model was not loaded; warn on any gap.

    Args:
        report: the report of the load (see :class:`ResumableCheckpointer`).
        key: the config key or option that named the weights, for the message.

    Raises:
        ValueError: fewer than :data:`MIN_MATCHED_FRACTION` of the model's keys matched.
    """
    total = len(report.model_keys)
    summary = (
        f"{key} {report.path!r}: {report.matched} of the model's {total} keys matched "
        f"({len(report.file_keys)} keys in the file; {len(report.missing)} missing, "
        f"{len(report.unexpected)} unexpected, {len(report.wrong_shape)} with a wrong shape)"
    )
    if total and report.matched < MIN_MATCHED_FRACTION * total:
        raise ValueError(
            f"{summary}: evaluating it would evaluate a mostly randomly initialised model. "
            f"Missing e.g. {report.missing[:3]}, unexpected e.g. {report.unexpected[:3]}"
            + _prefix_hint(report.file_keys, report.model_keys)
        )
    if report.missing or report.wrong_shape:
        logger.warning(
            "%s: the missing parts of the model keep their random initialisation (e.g. %s)",
            summary,
            report.missing[:5],
        )
    else:
        logger.info("%s", summary)


def load_weights_for_evaluation(
    model: torch.nn.Module, weights: str, output_dir: str, resume: bool = False
) -> str:
    """Load ``weights`` (or, with ``resume``, the last checkpoint of ``output_dir``) into
    ``model`` and check that they fit (see :func:`check_weights_fit`).

    Returns:
        The path that was loaded.

    Raises:
        ValueError: when no weights are given, or they fill less than half of the model.
    """
    checkpointer = ResumableCheckpointer(model, save_dir=output_dir)
    if resume and checkpointer.has_checkpoint():
        path, key = checkpointer.get_checkpoint_file(), "the last checkpoint"
    elif weights:
        path, key = weights, "MODEL.WEIGHTS"
    else:
        raise ValueError(
            "MODEL.WEIGHTS is empty: --eval-only would evaluate a randomly initialised model; "
            "pass MODEL.WEIGHTS path/to/model_final.pth"
        )
    checkpointer.load(path, checkpointables=[])
    if checkpointer.last_load_report is None:
        raise ValueError(f"{key} {path!r}: no model weights were read from it")
    check_weights_fit(checkpointer.last_load_report, key)
    return path
