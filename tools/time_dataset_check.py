#!/usr/bin/env python
"""Time the dataset check (``luminet_det.dataset_check``) per 1000 images on this machine.

Writes a COCO-format set of ``--images`` images into a temporary folder (or ``--workdir``) and
checks it in "full" and "headers" mode with each ``--threads`` value:

* ``png128``: 128x128 PNGs (like the demo's digit scenes);
* ``jpeg640``: 640x480 JPEGs of quality 90 cut from scikit-image's sample photographs (COCO's
  typical size and compression).

Example::

    python tools/time_dataset_check.py --kind png128 jpeg640 --images 1000 --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
from PIL import Image

from luminet_det.dataset_check import check_detection_dataset


def _photos() -> list[np.ndarray]:
    from skimage import data

    photos = []
    for name in (
        "astronaut",
        "coffee",
        "chelsea",
        "rocket",
        "hubble_deep_field",
        "immunohistochemistry",
    ):
        img = getattr(data, name)()
        if img.ndim == 3 and img.shape[2] == 3:
            photos.append(np.asarray(Image.fromarray(img).resize((800, 600))))
    return photos


def write_images(folder: str, kind: str, n: int, seed: int = 0) -> list[dict]:
    """``n`` images of ``kind`` in ``folder`` and their detectron2 dataset dicts."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = _photos() if kind == "jpeg640" else []
    dicts = []
    for i in range(n):
        if kind == "png128":
            w = h = 128
            img = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
            img[20:60, 30:90] = rng.integers(0, 256, 3)
            path = os.path.join(folder, f"{i:06d}.png")
            Image.fromarray(img).save(path)
        else:
            w, h = 640, 480
            photo = photos[i % len(photos)]
            y, x = rng.integers(0, photo.shape[0] - h), rng.integers(0, photo.shape[1] - w)
            path = os.path.join(folder, f"{i:06d}.jpg")
            Image.fromarray(photo[y : y + h, x : x + w]).save(path, quality=90)
        dicts.append(
            {
                "file_name": path,
                "image_id": i,
                "width": w,
                "height": h,
                "annotations": [{"bbox": [10, 10, 40, 30], "bbox_mode": 1, "category_id": 0}],
            }
        )
    return dicts


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", nargs="+", choices=("png128", "jpeg640"), default=["png128"])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workdir", help="folder for the images (default: a temporary one)")
    parser.add_argument("--json", help="write the timings to this file")
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kind:
            folder = os.path.join(args.workdir or tmp, kind)
            dicts = write_images(folder, kind, args.images)
            mib = sum(os.path.getsize(d["file_name"]) for d in dicts) / 2**20
            for mode in ("full", "headers"):
                for threads in args.threads:
                    check_detection_dataset(dicts[:20], mode=mode, threads=threads)  # warm-up
                    t0 = time.perf_counter()
                    report = check_detection_dataset(dicts, kind, mode=mode, threads=threads)
                    seconds = time.perf_counter() - t0
                    assert report.trainable, report.summary()
                    per_1000 = seconds * 1000 / len(dicts)
                    results[f"{kind}/{mode}/{threads}"] = per_1000
                    print(
                        f"{kind:8s} {mode:8s} threads {threads}: {per_1000:6.2f} s per 1000 images "
                        f"({len(dicts)} images, {mib:.1f} MiB)"
                    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
