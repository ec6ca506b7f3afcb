"""Per-stage distillation of Cascade R-CNN: the student's stage outputs, stage weights and
which teacher stage scores each student stage.

Stage k of a Cascade student samples its own proposals (the boxes predicted by stage k-1,
relabelled with stage k's IoU threshold) and scores them with its own head. Both are kept from
the student's own training forward (:func:`record_box_stages`): each stage's box predictor runs
once, as in stock training. The teacher then scores the same stage-k proposals with its stage
k (a Cascade teacher with as many stages), a chosen stage of a Cascade teacher
(``MODEL.DISTILL.CASCADE_TEACHER_STAGE``), or its single box head (Faster/Mask R-CNN).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from detectron2.structures import Instances
from torch import nn

from .box_head import box_stage_predictors

logger = logging.getLogger(__name__)

__all__ = [
    "BoxStageOutput",
    "record_box_stages",
    "normalized_stage_weights",
    "teacher_stage_map",
    "STAGE_WEIGHTS_KEY",
    "TEACHER_STAGE_KEY",
]

#: Config key of the per-stage weights.
STAGE_WEIGHTS_KEY = "MODEL.DISTILL.CASCADE_STAGE_WEIGHTS"
#: Config key of the teacher stage that scores every student stage (-1: stage k for stage k).
TEACHER_STAGE_KEY = "MODEL.DISTILL.CASCADE_TEACHER_STAGE"


@dataclass
class BoxStageOutput:
    """What one box stage of the student's training forward saw and predicted.

    Attributes:
        logits: (R, K+1) class logits of the stage's box predictor (with gradient).
        proposals: the stage's proposals, one ``Instances`` per image, with ``proposal_boxes``
            and ``gt_classes`` (the stage's own labels), in the order of ``logits``' rows.
    """

    logits: torch.Tensor
    proposals: list[Instances]


@contextlib.contextmanager
def record_box_stages(roi_heads: nn.Module) -> Iterator[list[BoxStageOutput]]:
    """Record each box stage's logits and labelled proposals during a training forward.

    While the context is open, the ``losses`` method of each stage's box predictor is wrapped
    (on the instance, removed on exit) to keep the ``(predictions, proposals)`` that the ROI
    heads pass to it: exactly what the student is trained on, with no extra head pass. A forward
    hook checks that each predictor ran once and that the recorded logits are its output.

    Args:
        roi_heads: standard or Cascade ROI heads.

    Yields:
        A list filled on exit of the ``with`` body's forward, one :class:`BoxStageOutput` per
        stage in stage order.

    Raises:
        RuntimeError: (on exit) when a predictor did not run exactly once, or its ``losses`` was
            not called on its own output.
    """
    predictors = box_stage_predictors(roi_heads)
    stages: list[BoxStageOutput] = []
    recorded: list[list[BoxStageOutput]] = [[] for _ in predictors]
    outputs: list[list[torch.Tensor]] = [[] for _ in predictors]
    handles = []
    for k, predictor in enumerate(predictors):
        original = predictor.losses

        def losses(predictions, proposals, *args, _k=k, _original=original, **kwargs):
            recorded[_k].append(BoxStageOutput(predictions[0], list(proposals)))
            return _original(predictions, proposals, *args, **kwargs)

        predictor.losses = losses
        handles.append(
            predictor.register_forward_hook(lambda _m, _i, out, _k=k: outputs[_k].append(out[0]))
        )
    try:
        yield stages
    finally:
        for predictor, handle in zip(predictors, handles):
            handle.remove()
            del predictor.losses
    for k, (rec, out) in enumerate(zip(recorded, outputs)):
        if len(out) != 1 or len(rec) != 1 or rec[0].logits is not out[0]:
            raise RuntimeError(
                f"expected the student's box predictor of stage {k} to run once and be trained "
                f"on its own output; it ran {len(out)} times and its losses were computed "
                f"{len(rec)} times"
            )
        stages.append(rec[0])


def normalized_stage_weights(weights: Sequence[float], num_stages: int) -> tuple[float, ...]:
    """The per-stage weights of ``MODEL.DISTILL.CASCADE_STAGE_WEIGHTS``, normalised to sum 1.

    Args:
        weights: one weight >= 0 per student box stage (not all zero); empty for all stages
            weighted equally (the mean over stages). A stage of weight 0 is not distilled.
        num_stages: the student's box stages (1 for Faster/Mask R-CNN).

    Raises:
        ValueError: naming the key, for a wrong length, a negative or non-finite weight, or
            all weights zero.
    """
    if len(weights) == 0:
        return tuple(1.0 / num_stages for _ in range(num_stages))
    w = [float(x) for x in weights]
    if len(w) != num_stages:
        raise ValueError(
            f"{STAGE_WEIGHTS_KEY} has {len(w)} weights {w}, but the student has {num_stages} "
            "box stage(s) (MODEL.ROI_BOX_CASCADE_HEAD.IOUS for a Cascade student, 1 otherwise); "
            "give one weight per stage, or none for the mean over all stages"
        )
    if any(not (x >= 0 and x < float("inf")) for x in w):
        raise ValueError(f"{STAGE_WEIGHTS_KEY} must be finite and >= 0; got {w}")
    total = sum(w)
    if total == 0:
        raise ValueError(f"{STAGE_WEIGHTS_KEY} are all zero ({w}): no stage would be distilled")
    return tuple(x / total for x in w)


def teacher_stage_map(
    student_stages: int, teacher_stages: int, teacher_stage: int = -1
) -> tuple[int, ...]:
    """Which teacher box stage scores the proposals of each student stage.

    Args:
        student_stages: the student's box stages.
        teacher_stages: the teacher's box stages (1 for a single box head).
        teacher_stage: ``MODEL.DISTILL.CASCADE_TEACHER_STAGE``: -1 matches stage k to stage k
            when the teacher is a Cascade with as many stages, and every student stage to the
            single head of a non-Cascade teacher; ``s >= 0`` uses the Cascade teacher's stage
            ``s`` for every student stage.

    Returns:
        One teacher stage per student stage.

    Raises:
        ValueError: naming the key, when per-stage matching is asked of a Cascade teacher with
            another number of stages, when the stage does not exist, or when a stage is given
            for a single-head teacher.
    """
    if teacher_stage == -1:
        if teacher_stages == 1:
            return (0,) * student_stages
        if teacher_stages != student_stages:
            raise ValueError(
                f"{TEACHER_STAGE_KEY} -1 matches student stage k to teacher stage k, but the "
                f"Cascade teacher has {teacher_stages} stages and the student {student_stages}; "
                f"set {TEACHER_STAGE_KEY} to the teacher stage (0..{teacher_stages - 1}) that "
                "scores every student stage"
            )
        return tuple(range(student_stages))
    if teacher_stages == 1:
        raise ValueError(
            f"{TEACHER_STAGE_KEY} is {teacher_stage}, but the teacher has a single box head (not "
            "a Cascade); leave it at -1"
        )
    if not 0 <= teacher_stage < teacher_stages:
        raise ValueError(
            f"{TEACHER_STAGE_KEY} must be -1 or a stage of the Cascade teacher "
            f"(0..{teacher_stages - 1}); got {teacher_stage}"
        )
    return (teacher_stage,) * student_stages
