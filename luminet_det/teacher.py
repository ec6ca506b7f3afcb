"""The frozen teacher: one object that builds, loads, freezes and feeds a detectron2 model.

:class:`Teacher` wraps any frozen detectron2 model that has ``preprocess_image``, ``backbone``
and ``input_format`` (``GeneralizedRCNN``, ``RetinaNet``, ``FCOS``, ...). It owns:

* **building and weights**: :meth:`Teacher.from_config` (a yacs config + weights),
  :meth:`Teacher.from_model` (an already built module, e.g. from a LazyConfig, + weights), and
  :func:`build_teacher` (``MODEL.DISTILL.*`` of a student config); the weights are checked key
  by key (:func:`~luminet_det.teacher_weights.load_teacher_weights`);
* **freezing**: ``requires_grad=False`` everywhere, eval mode, and :meth:`Teacher.train` keeps it
  in eval mode whatever a trainer calls;
* **input preparation**: :meth:`Teacher.prepare_images` converts the channel order of the raw
  images the student is fed (``image_format``) to the teacher's ``input_format`` and then calls
  the teacher's **own** ``preprocess_image``: pixel mean/std, size divisibility and, on detectron2
  versions that have them, ``padding_constraints`` (ViTDet's square padding) are exactly the
  teacher's, with no re-implementation to drift from detectron2;
* **running**: :meth:`Teacher.backbone_features` (no gradient, the teacher's autocast), the
  ROI-head family's use, :meth:`Teacher.roi_logits` (its box head on given boxes; per Cascade
  stage with :meth:`Teacher.roi_logits_per_stage`), and the dense family's,
  :meth:`Teacher.dense_logits` (its dense head's per-level class logits).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes, ImageList
from torch import nn

from .box_head import box_class_logits
from .config import add_distill_config, resolve_teacher_config_path
from .dense_head import dense_class_logits
from .teacher_weights import load_teacher_weights

logger = logging.getLogger(__name__)

__all__ = [
    "TEACHER_AUTOCAST_CHOICES",
    "Teacher",
    "build_teacher",
    "load_teacher_config",
    "channels_flipped",
]

#: Values of ``MODEL.DISTILL.TEACHER_AUTOCAST``: "" inherits the caller's autocast (e.g. the
#: AMP trainer's), "fp32" switches autocast off, "bf16"/"fp16" autocast to that dtype.
TEACHER_AUTOCAST_CHOICES = ("", "fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def channels_flipped(image_format: str, model_format: str) -> bool:
    """Whether images in ``image_format`` need their channels reversed for ``model_format``.

    Raises:
        ValueError: for formats other than RGB/BGR that differ.
    """
    if image_format == model_format:
        return False
    if {image_format, model_format} == {"RGB", "BGR"}:
        return True
    raise ValueError(
        f"cannot convert the student's INPUT.FORMAT {image_format!r} to the teacher's "
        f"{model_format!r}; supported: equal formats, or RGB <-> BGR"
    )


def load_teacher_config(student_cfg: CfgNode, config_file: str | None = None) -> CfgNode:
    """The teacher's own config, read from ``student_cfg.MODEL.DISTILL.TEACHER_CONFIG``.

    The teacher runs on the student's device; its ``MODEL.WEIGHTS`` is set to
    ``MODEL.DISTILL.TEACHER_WEIGHTS`` (for the record; :class:`Teacher` loads them).

    Args:
        student_cfg: the student's config.
        config_file: the file ``student_cfg`` was read from (relative teacher paths are tried
            against its folder first).

    Raises:
        ValueError: when the config is missing, unreadable, or describes a distilling model.
    """
    path = resolve_teacher_config_path(student_cfg.MODEL.DISTILL.TEACHER_CONFIG, config_file)
    cfg = get_cfg()
    add_distill_config(cfg)
    # A teacher does not distil: its MODEL.DISTILL is not read, so sections of losses that are
    # not registered in this process (a config dumped by a run with a plugin loss) are accepted.
    cfg.MODEL.DISTILL.set_new_allowed(True)
    try:
        cfg.merge_from_file(path)
    except Exception as e:  # yacs raises several types (KeyError, AssertionError, yaml errors)
        raise ValueError(
            f"MODEL.DISTILL.TEACHER_CONFIG {path!r} could not be read as a detectron2 config: "
            f"{type(e).__name__}: {e}"
        ) from e
    if cfg.MODEL.META_ARCHITECTURE in ("DistillRCNN", "DistillRetinaNet"):
        raise ValueError(
            f"the teacher config {path!r} has META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE!r}; "
            "the teacher must be a plain detector (e.g. GeneralizedRCNN), not a distilling one"
        )
    cfg.MODEL.DEVICE = student_cfg.MODEL.DEVICE
    cfg.MODEL.WEIGHTS = student_cfg.MODEL.DISTILL.TEACHER_WEIGHTS
    cfg.freeze()
    return cfg


class Teacher(nn.Module):
    """A frozen detectron2 model fed the student's raw images (see the module docstring).

    Args:
        model: the teacher, weights already loaded (use :meth:`from_model` / :meth:`from_config`
            to load and verify them); it is frozen and put in eval mode here.
        image_format: channel order of the images in the ``batched_inputs`` it will be given
            (the student's ``INPUT.FORMAT``); None: the model's own ``input_format``.
        autocast: one of :data:`TEACHER_AUTOCAST_CHOICES`.
        cfg: the teacher's own config, if it was built from one (kept for evaluation).

    Raises:
        ValueError: a model without ``preprocess_image``/``input_format``, an unsupported pair of
            formats, or an unknown ``autocast``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        image_format: str | None = None,
        autocast: str = "",
        cfg: CfgNode | None = None,
    ):
        super().__init__()
        missing = [
            a for a in ("preprocess_image", "backbone", "input_format") if not hasattr(model, a)
        ]
        if missing:
            raise ValueError(
                f"a teacher must be a detectron2 detector with preprocess_image, backbone and "
                f"input_format; {type(model).__name__} lacks {missing}"
            )
        self.model = model
        self.cfg = cfg
        self.image_format = model.input_format if image_format is None else image_format
        self.flip_channels = channels_flipped(self.image_format, model.input_format)
        self.autocast = autocast
        for p in model.parameters():
            p.requires_grad_(False)
        super().train(False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        weights: str,
        *,
        image_format: str | None = None,
        autocast: str = "",
        cfg: CfgNode | None = None,
        weights_key: str = "MODEL.DISTILL.TEACHER_WEIGHTS",
        config_name: str = "",
    ) -> Teacher:
        """Freeze the built ``model`` and load ``weights`` into it, checked key by key.

        The formats and ``autocast`` are checked first, so a bad setting fails before any
        download.

        Args:
            model: the teacher with random weights, e.g. ``instantiate(lazy_cfg.model)``.
            weights: a checkpoint path or URL (``detectron2://...``).
            image_format, autocast, cfg: as for :class:`Teacher`.
            weights_key: the config key of ``weights``, for messages.
            config_name: the teacher's config, for messages.

        Raises:
            ValueError: bad settings, or weights that are missing, unreadable or do not fit.
        """
        teacher = cls(model, image_format=image_format, autocast=autocast, cfg=cfg)
        load_teacher_weights(model, weights, key=weights_key, config_name=config_name)
        return teacher

    @classmethod
    def from_config(
        cls,
        cfg: CfgNode,
        weights: str,
        *,
        image_format: str | None = None,
        autocast: str = "",
        weights_key: str = "MODEL.DISTILL.TEACHER_WEIGHTS",
        config_name: str = "",
    ) -> Teacher:
        """Build the teacher from its own detectron2 config, load and check ``weights`` (see
        :meth:`from_model`)."""
        return cls.from_model(
            build_model(cfg),
            weights,
            image_format=image_format,
            autocast=autocast,
            cfg=cfg,
            weights_key=weights_key,
            config_name=config_name,
        )

    # ------------------------------------------------------------------ state
    @property
    def autocast(self) -> str:
        """The teacher's autocast mode (one of :data:`TEACHER_AUTOCAST_CHOICES`)."""
        return self._autocast

    @autocast.setter
    def autocast(self, mode: str) -> None:
        if mode not in TEACHER_AUTOCAST_CHOICES:
            raise ValueError(
                f"MODEL.DISTILL.TEACHER_AUTOCAST must be one of {TEACHER_AUTOCAST_CHOICES}; "
                f"got {mode!r}"
            )
        self._autocast = mode

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def input_format(self) -> str:
        """The teacher model's own channel order."""
        return self.model.input_format

    def train(self, mode: bool = True) -> Teacher:
        """Always eval mode: BatchNorm statistics, dropout and the heads' inference paths stay
        fixed whatever a trainer asks."""
        return super().train(False)

    def extra_repr(self) -> str:
        return (
            f"images {self.image_format} -> teacher {self.input_format}, "
            f"autocast={self.autocast or 'inherit'}, frozen"
        )

    # ------------------------------------------------------------------ running
    def autocast_context(self) -> contextlib.AbstractContextManager:
        """The context of :attr:`autocast` for the teacher's device."""
        if self._autocast == "":
            return contextlib.nullcontext()
        device_type = self.device.type
        if self._autocast == "fp32":
            return torch.autocast(device_type, enabled=False)
        return torch.autocast(device_type, dtype=_AUTOCAST_DTYPES[self._autocast])

    def prepare_images(self, batched_inputs: list[dict]) -> ImageList:
        """The teacher's input for the student's ``batched_inputs``: the teacher model's own
        ``preprocess_image`` of the images in the teacher's channel order."""
        if self.flip_channels:
            batched_inputs = [{"image": x["image"].to(self.device).flip(0)} for x in batched_inputs]
        return self.model.preprocess_image(batched_inputs)

    @torch.no_grad()
    def backbone_features(self, images: ImageList) -> dict[str, torch.Tensor]:
        """The teacher backbone's features of prepared ``images`` (no gradient, its autocast)."""
        if self.model.training:  # someone called model.train() on the wrapped model directly
            self.model.eval()
        with self.autocast_context():
            return self.model.backbone(images.tensor)

    @torch.no_grad()
    def roi_logits(
        self, batched_inputs: list[dict], boxes: list[Boxes], stage: int = 0
    ) -> torch.Tensor:
        """Class logits (R, K+1), float32, of the teacher's box head for ``boxes``.

        The teacher runs its backbone on its own preparation of the same images, then its box
        head on ``boxes`` (coordinates of the resized input, shared with the student); its RPN
        does not run. For ``GeneralizedRCNN`` teachers with a standard or Cascade box head.

        Args:
            batched_inputs: the student's inputs (raw images in :attr:`image_format`).
            boxes: one ``Boxes`` per image.
            stage: the box stage of a Cascade teacher (0 for a single box head).
        """
        return self.roi_logits_per_stage(batched_inputs, [boxes], [stage])[0]

    @torch.no_grad()
    def roi_logits_per_stage(
        self,
        batched_inputs: list[dict],
        boxes_per_stage: Sequence[list[Boxes]],
        stages: Sequence[int],
    ) -> list[torch.Tensor]:
        """Class logits (float32) of several box stages, each on its own boxes, with one
        backbone pass (see :meth:`roi_logits`).

        Args:
            batched_inputs: the student's inputs.
            boxes_per_stage: for each entry, one ``Boxes`` per image.
            stages: for each entry, the teacher box stage that scores those boxes.

        Returns:
            One (R_i, K+1) tensor per entry.
        """
        if len(boxes_per_stage) != len(stages):
            raise ValueError(f"{len(boxes_per_stage)} sets of boxes for {len(stages)} stages")
        features = self.backbone_features(self.prepare_images(batched_inputs))
        with self.autocast_context():
            return [
                box_class_logits(self.model.roi_heads, features, boxes, stage).float()
                for boxes, stage in zip(boxes_per_stage, stages)
            ]

    @torch.no_grad()
    def dense_logits(self, batched_inputs: list[dict]) -> list[torch.Tensor]:
        """Per-level class logits (N, A*K, H, W), float32, of the teacher's dense head.

        The teacher runs its backbone on its own preparation of the images, then the class
        branch of its head (:func:`~luminet_det.dense_head.dense_class_logits`). For dense
        detectors (``RetinaNet``, ``FCOS``).
        """
        features = self.backbone_features(self.prepare_images(batched_inputs))
        with self.autocast_context():
            logits = dense_class_logits(self.model, features)
        return [x.float() for x in logits]


def build_teacher(student_cfg: CfgNode, config_file: str | None = None) -> Teacher:
    """The teacher that ``student_cfg.MODEL.DISTILL`` describes.

    Reads ``TEACHER_CONFIG`` (:func:`load_teacher_config`), builds the model, loads and checks
    ``TEACHER_WEIGHTS``, and feeds it images in the student's ``INPUT.FORMAT`` under
    ``TEACHER_AUTOCAST``.

    Raises:
        ValueError: on any problem with the teacher config, formats or weights.
    """
    d = student_cfg.MODEL.DISTILL
    return Teacher.from_config(
        load_teacher_config(student_cfg, config_file),
        d.TEACHER_WEIGHTS,
        image_format=student_cfg.INPUT.FORMAT,
        autocast=d.TEACHER_AUTOCAST,
        config_name=d.TEACHER_CONFIG,
    )
