"""Check a detection dataset before training on it: images, sizes, boxes, categories.

Run by ``tools/check_dataset.py NAME...`` and, before step 0, by ``tools/train_net.py``
(``DATALOADER.CHECK.*``). Every problem is reported with its file name:

========================================  ========  =============================================
problem                                   severity  what training would have done
========================================  ========  =============================================
image missing, unreadable or damaged      error     crash mid-run, or train on garbage pixels
decoded size differs from the json        error     crash mid-run (``SizeMismatchError``)
box with NaN or infinite coordinates      error     NaN losses
category id outside ``[0, NUM_CLASSES)``  error     crash or wrong class
no usable box in the whole dataset        error     train without ground truth, AP nan
box of zero or negative area              warning   box dropped
box entirely outside the image            warning   box dropped (clipped to nothing)
box partly outside the image              warning   box clipped
image without any usable box              warning   background-only image
========================================  ========  =============================================

``mode="full"`` decodes every image completely (with :func:`luminet_det.image_files.
read_image_checked`, which also verifies PNG checksums); ``mode="headers"`` only opens each
file's header (existence, format, size): fast enough for COCO-sized sets, and training then
relies on the verifying reader (``DATALOADER.CHECK.VERIFY_ON_READ``) for damaged pixel data.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from detectron2.config import CfgNode as CN
from detectron2.structures import BoxMode

from .image_files import ImageFileError, image_header_size, read_image_checked

__all__ = [
    "CHECK_MODES",
    "DatasetProblem",
    "DatasetReport",
    "DatasetCheckError",
    "add_data_check_config",
    "check_detection_dataset",
    "resolve_check_mode",
    "num_classes_of",
]

logger = logging.getLogger(__name__)

#: Values of ``DATALOADER.CHECK.MODE``.
CHECK_MODES = ("auto", "full", "headers", "off")


def add_data_check_config(cfg: CN) -> CN:
    """Add ``DATALOADER.CHECK.*`` to ``cfg`` (in place; calling it twice is harmless)."""
    if "CHECK" in cfg.DATALOADER:
        return cfg
    cfg.DATALOADER.CHECK = CN()
    # Check the training set before step 0 (as tools/check_dataset.py does): "full" decodes
    # every image, "headers" opens only file headers, "auto" is "full" for at most
    # FULL_MAX_IMAGES training images and "headers" above, "off" skips the check.
    cfg.DATALOADER.CHECK.MODE = "auto"
    # Largest training set that "auto" decodes completely: 10k COCO-sized JPEGs take about
    # 30-60 s on a 2-core CPU (tools/time_dataset_check.py; docs/detection.md), COCO train2017
    # (118k images) about 6-11 min, so it gets the header check (about 35 s).
    cfg.DATALOADER.CHECK.FULL_MAX_IMAGES = 10000
    # Threads of the check; 0 = max(1, DATALOADER.NUM_WORKERS).
    cfg.DATALOADER.CHECK.THREADS = 0
    # During training, verify every image file's integrity (PNG chunk checksums) before the
    # mapper decodes it, so a damaged image is an error naming the file, never garbage pixels.
    cfg.DATALOADER.CHECK.VERIFY_ON_READ = True
    return cfg


@dataclasses.dataclass
class DatasetProblem:
    """One finding: ``severity`` is "error" or "warning"; ``file`` the image it concerns."""

    severity: str
    kind: str
    file: str
    detail: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.kind}: {self.file}: {self.detail}"


@dataclasses.dataclass
class DatasetReport:
    """Result of :func:`check_detection_dataset`."""

    name: str
    mode: str
    images: int
    usable_boxes: int
    images_without_usable_box: int
    problems: list[DatasetProblem]
    seconds: float

    @property
    def errors(self) -> list[DatasetProblem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[DatasetProblem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def trainable(self) -> bool:
        """False when training on the dataset would crash or be meaningless."""
        return not self.errors

    def summary(self) -> str:
        kinds = Counter(f"{p.severity} {p.kind}" for p in self.problems)
        listed = "; ".join(f"{n} x {k}" for k, n in sorted(kinds.items())) or "no problems"
        return (
            f"dataset {self.name}: {self.images} images checked ({self.mode}) in "
            f"{self.seconds:.1f} s, {self.usable_boxes} usable boxes, "
            f"{self.images_without_usable_box} images without a usable box; {listed}"
        )


class DatasetCheckError(ValueError):
    """The training set would crash training or make it meaningless (see ``reports``)."""

    def __init__(self, message: str, reports: Sequence[DatasetReport] = ()):
        super().__init__(message)
        self.reports = list(reports)

    @classmethod
    def from_reports(cls, reports: Sequence[DatasetReport], max_listed: int = 20):
        """The error for failed ``reports``, listing up to ``max_listed`` errors of each."""
        lines = []
        for r in reports:
            lines.append(r.summary())
            lines += [f"  {p}" for p in r.errors[:max_listed]]
            if len(r.errors) > max_listed:
                lines.append(f"  ... and {len(r.errors) - max_listed} more errors")
        return cls(
            "the training data failed the check (DATALOADER.CHECK.MODE; tools/check_dataset.py "
            "lists every problem):\n" + "\n".join(lines),
            reports,
        )


def num_classes_of(cfg: CN) -> int | None:
    """The number of classes the model of ``cfg`` predicts (None when unknown)."""
    arch = str(cfg.MODEL.META_ARCHITECTURE)
    if "RetinaNet" in arch:
        return int(cfg.MODEL.RETINANET.NUM_CLASSES)
    if "FCOS" in arch and "FCOS" in cfg.MODEL:
        return int(cfg.MODEL.FCOS.NUM_CLASSES)
    return int(cfg.MODEL.ROI_HEADS.NUM_CLASSES)


def resolve_check_mode(mode: str, num_images: int, full_max_images: int) -> str:
    """``DATALOADER.CHECK.MODE`` with "auto" resolved for a training set of ``num_images``.

    Raises:
        ValueError: unknown mode.
    """
    mode = str(mode).lower()
    if mode not in CHECK_MODES:
        raise ValueError(f"DATALOADER.CHECK.MODE must be one of {CHECK_MODES}; got {mode!r}")
    if mode == "auto":
        return "full" if num_images <= full_max_images else "headers"
    return mode


def _check_boxes(d: dict, width: int | None, height: int | None, num_classes: int | None):
    problems, usable = [], 0
    file = d.get("file_name", "<no file_name>")
    for k, ann in enumerate(d.get("annotations", [])):
        if ann.get("iscrowd", 0):
            continue
        where = f"annotation {k}"
        bbox, mode = ann.get("bbox"), ann.get("bbox_mode", BoxMode.XYWH_ABS)
        try:
            coords = [float(v) for v in bbox]
            if len(coords) != 4:
                raise ValueError
        except (TypeError, ValueError):
            problems.append(DatasetProblem("error", "bad box", file, f"{where}: bbox {bbox!r}"))
            continue
        if not all(math.isfinite(v) for v in coords):
            problems.append(DatasetProblem("error", "NaN box", file, f"{where}: bbox {coords}"))
            continue
        category = ann.get("category_id")
        if (
            not isinstance(category, numbers.Integral)
            or category < 0
            or (num_classes is not None and category >= num_classes)
        ):
            problems.append(
                DatasetProblem(
                    "error",
                    "bad category",
                    file,
                    f"{where}: category_id {category!r} outside [0, {num_classes})",
                )
            )
            continue
        if mode in (BoxMode.XYWH_ABS, BoxMode.XYXY_ABS):
            x0, y0, x1, y1 = BoxMode.convert(coords, mode, BoxMode.XYXY_ABS)
        else:  # relative or rotated boxes: checked by their own code paths
            usable += 1
            continue
        if x1 <= x0 or y1 <= y0:
            problems.append(
                DatasetProblem("warning", "zero-area box", file, f"{where}: bbox {coords}")
            )
            continue
        if width is not None and height is not None:
            cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
            if cx1 <= cx0 or cy1 <= cy0:
                problems.append(
                    DatasetProblem(
                        "warning",
                        "box outside the image",
                        file,
                        f"{where}: bbox {coords} in a {width}x{height} image",
                    )
                )
                continue
            if x0 < -1 or y0 < -1 or x1 > width + 1 or y1 > height + 1:
                problems.append(
                    DatasetProblem(
                        "warning",
                        "box partly outside the image",
                        file,
                        f"{where}: bbox {coords} in a {width}x{height} image (clipped)",
                    )
                )
        usable += 1
    return problems, usable


def _check_one(d: dict, mode: str, num_classes: int | None):
    problems = []
    file = d.get("file_name")
    if not file:
        return [DatasetProblem("error", "no file_name", "<no file_name>", repr(d)[:200])], 0
    width, height = d.get("width"), d.get("height")
    try:
        if mode == "full":
            shape = read_image_checked(file).shape
            size = (int(shape[1]), int(shape[0]))
        else:
            size = image_header_size(file)
    except ImageFileError as e:
        problems.append(DatasetProblem("error", "unreadable image", file, str(e)))
        size = None
    if size is not None and width is not None and height is not None:
        if size != (int(width), int(height)):
            problems.append(
                DatasetProblem(
                    "error",
                    "size mismatch",
                    file,
                    f"the file is {size[0]}x{size[1]}, the annotations say {width}x{height}",
                )
            )
    elif size is not None:
        width, height = size
    box_problems, usable = _check_boxes(d, width, height, num_classes)
    return problems + box_problems, usable


def check_detection_dataset(
    dataset_dicts: Iterable[dict] | Sequence[dict],
    name: str = "dataset",
    *,
    mode: str = "full",
    num_classes: int | None = None,
    threads: int = 1,
    progress_seconds: float = 10.0,
) -> DatasetReport:
    """Check every image and annotation of ``dataset_dicts`` (detectron2 dataset format).

    Args:
        dataset_dicts: e.g. ``DatasetCatalog.get(name)``, or anything with ``len`` and integer
            indexing (e.g. detectron2's ``DatasetFromList``), which is read chunk by chunk.
        name: for the report.
        mode: "full" (decode every image) or "headers" (open file headers only).
        num_classes: valid category ids are ``[0, num_classes)``; None: only ``>= 0``.
        threads: images checked in parallel (decoding releases the GIL).
        progress_seconds: interval of progress lines on the log.

    Returns:
        The report; ``report.trainable`` is False when there is an error-level problem or no
        usable box at all.

    Raises:
        ValueError: unknown mode.
    """
    if mode not in ("full", "headers"):
        raise ValueError(f"mode must be 'full' or 'headers'; got {mode!r}")
    if not (hasattr(dataset_dicts, "__len__") and hasattr(dataset_dicts, "__getitem__")):
        dataset_dicts = list(dataset_dicts)
    total = len(dataset_dicts)
    t0 = last = time.perf_counter()
    problems: list[DatasetProblem] = []
    usable_total, empty_images = 0, 0
    chunk = 1024  # never all dicts at once: a COCO-sized list of dicts is large
    with ThreadPoolExecutor(max(1, int(threads))) as pool:
        for start in range(0, total, chunk):
            dicts = [dataset_dicts[i] for i in range(start, min(start + chunk, total))]
            results = pool.map(lambda d: _check_one(d, mode, num_classes), dicts)
            for d, (found, usable) in zip(dicts, results):
                problems += found
                usable_total += usable
                if usable == 0:
                    empty_images += 1
                    problems.append(
                        DatasetProblem("warning", "no usable box", d.get("file_name", "?"), "image")
                    )
            done = min(start + chunk, total)
            now = time.perf_counter()
            if now - last >= progress_seconds:
                rate = done / (now - t0)
                logger.info(
                    "checking %s (%s): %d/%d images, %.0f images/s, about %.0f s left",
                    name, mode, done, total, rate, (total - done) / max(rate, 1e-9),
                )  # fmt: skip
                last = now
    if total and usable_total == 0:
        problems.append(
            DatasetProblem(
                "error",
                "no usable box at all",
                name,
                f"none of the {total} images has a usable box: training would have no ground truth",
            )
        )
    if not total:
        problems.append(DatasetProblem("error", "empty dataset", name, "no images"))
    return DatasetReport(
        name=name,
        mode=mode,
        images=total,
        usable_boxes=usable_total,
        images_without_usable_box=empty_images,
        problems=problems,
        seconds=time.perf_counter() - t0,
    )
