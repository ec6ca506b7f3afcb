"""Read training images loudly: a damaged file is an error that names it, never garbage pixels.

detectron2's ``read_image`` decodes a PNG whose compressed data was overwritten into a garbage
image without any error, and reports a truncated file as ``OSError: image file is truncated``
without its name. :func:`verify_image_file` checks a file's integrity first (for PNG: the CRC
of every chunk, without decoding pixels); :class:`VerifyingMapper` does that before each
training image is mapped and puts the file name into every error of the mapper.

JPEG has no checksums: truncated or undecodable JPEGs are caught, but a byte changed inside the
compressed data can still decode into a wrong-looking image without any error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from detectron2.data.detection_utils import read_image
from detectron2.utils.file_io import PathManager
from PIL import Image

__all__ = [
    "ImageFileError",
    "TrainingImageError",
    "verify_image_file",
    "image_header_size",
    "read_image_checked",
    "VerifyingMapper",
]

logger = logging.getLogger(__name__)

_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}  # rotate by 90 or 270 degrees: width and height swap


class ImageFileError(OSError):
    """An image file is missing, unreadable or damaged (the message names the file)."""


class TrainingImageError(RuntimeError):
    """Mapping a training image failed (the message names the file)."""


def _open_error(path: str, e: Exception) -> ImageFileError:
    if isinstance(e, FileNotFoundError):
        return ImageFileError(f"image file {path} does not exist")
    return ImageFileError(f"image file {path} is damaged or unreadable: {type(e).__name__}: {e}")


def verify_image_file(path: str) -> None:
    """Check the file's integrity without decoding its pixels (PIL ``verify``: for PNG every
    chunk's CRC, which catches overwritten bytes).

    Raises:
        ImageFileError: missing, unreadable or damaged file.
    """
    try:
        with PathManager.open(path, "rb") as f:
            with Image.open(f) as im:
                im.verify()
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, struct.error ...
        raise _open_error(path, e) from e


def image_header_size(path: str) -> tuple[int, int]:
    """``(width, height)`` from the file header, after EXIF orientation (as detectron2 reads it).

    Raises:
        ImageFileError: missing file or unreadable header.
    """
    try:
        with PathManager.open(path, "rb") as f:
            with Image.open(f) as im:
                w, h = im.size
                orientation = _header_orientation(im)
    except Exception as e:
        raise _open_error(path, e) from e
    return (h, w) if orientation in _TRANSPOSING_ORIENTATIONS else (w, h)


def _header_orientation(im: Image.Image) -> int | None:
    if im.format == "PNG":
        # PIL's getexif() decodes a whole PNG; only an eXIf chunk before the pixels is read here.
        raw = im.info.get("exif")
        if not raw:
            return None
        exif = Image.Exif()
        exif.load(raw)
        return exif.get(_EXIF_ORIENTATION)
    return im.getexif().get(_EXIF_ORIENTATION)


def read_image_checked(path: str, format: str | None = None) -> np.ndarray:
    """detectron2's ``read_image(path, format)`` after :func:`verify_image_file`, with every
    error naming the file.

    Raises:
        ImageFileError: missing, damaged or undecodable (e.g. truncated) file.
    """
    verify_image_file(path)
    try:
        return read_image(path, format=format)
    except Exception as e:
        raise _open_error(path, e) from e


class VerifyingMapper:
    """Wrap a dataset mapper: verify each image file first, name the file in every error.

    Args:
        mapper: e.g. ``DatasetMapper(cfg, is_train=True)``; called unchanged on valid files, so
            the mapped data (and its random augmentations) are exactly the mapper's.
        verify: run :func:`verify_image_file` before mapping (``DATALOADER.CHECK.VERIFY_ON_READ``).
    """

    def __init__(self, mapper: Callable[[dict], Any], verify: bool = True):
        self.mapper = mapper
        self.verify = bool(verify)

    def __call__(self, dataset_dict: dict) -> Any:
        path = dataset_dict.get("file_name", "<no file_name>")
        if self.verify:
            verify_image_file(path)
        try:
            return self.mapper(dataset_dict)
        except ImageFileError:
            raise
        except Exception as e:
            raise TrainingImageError(
                f"mapping training image {path} failed: {type(e).__name__}: {e}"
            ) from e

    def __repr__(self) -> str:
        return f"VerifyingMapper({self.mapper!r}, verify={self.verify})"
