#!/usr/bin/env python
"""Report what the detectron2 importable here has and lacks, by trying each thing.

Every row is measured on the installed package (nothing is inferred from its version, which
is "0.6" for the 0.6 release and for upstream main alike)::

    python tools/detectron2_features.py            # markdown table
    python tools/detectron2_features.py --json     # {"version": ..., "features": {...}}
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import traceback
from collections.abc import Callable
from importlib import metadata
from importlib.machinery import EXTENSION_SUFFIXES


def _compiled_ops() -> bool:
    from detectron2 import _C

    return str(_C.__file__).endswith(tuple(EXTENSION_SUFFIXES))


def _rotated_nms() -> bool:
    import torch
    from detectron2.layers import nms_rotated

    boxes = torch.tensor([[10.0, 10.0, 8.0, 4.0, 0.0], [10.0, 10.0, 8.0, 4.0, 1.0]])
    return nms_rotated(boxes, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0]


def _fast_coco_eval() -> bool:
    from luminet_det.evaluation import coco_fast_eval_available

    return coco_fast_eval_available()


def _optimizer_in_checkpoints() -> bool:
    from detectron2.engine import DefaultTrainer

    return "state_dict" in DefaultTrainer.__dict__  # delegates to SimpleTrainer (optimizer)


def _torch2_scheduler_state() -> bool:
    import torch
    from detectron2.engine import hooks

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    hook = hooks.LRScheduler(opt, torch.optim.lr_scheduler.StepLR(opt, step_size=2))
    return bool(hook.state_dict())


def _map_dataset_retry() -> bool:
    from detectron2.data.common import MapDataset

    seen = []

    def fail_once(x):
        seen.append(x)
        return None if len(seen) == 1 else x

    return MapDataset(list(range(4)), fail_once)[0] is not None


def _padding_constraints() -> bool:
    from detectron2.structures import ImageList

    return "padding_constraints" in inspect.signature(ImageList.from_tensors).parameters


def _import(module: str, name: str | None = None) -> Callable[[], bool]:
    def check() -> bool:
        mod = __import__(module, fromlist=[name] if name else [])
        return name is None or hasattr(mod, name)

    return check


#: (row name, check); a check that raises counts as "no", with the error kept.
FEATURES: list[tuple[str, Callable[[], bool]]] = [
    ("compiled C++ ops (`detectron2._C`)", _compiled_ops),
    ("rotated-box NMS runs", _rotated_nms),
    ("fast C++ COCO evaluation", _fast_coco_eval),
    ("`model_zoo` imports (setuptools >= 81)", _import("detectron2.model_zoo", "get_config_file")),
    ("DefaultTrainer checkpoints hold the optimizer", _optimizer_in_checkpoints),
    ("LRScheduler hook keeps a torch >= 2 scheduler's state", _torch2_scheduler_state),
    ("MapDataset retries a failed sample (Python 3.11)", _map_dataset_retry),
    ("`padding_constraints` in preprocessing", _padding_constraints),
    ("`detectron2.export` imports", _import("detectron2.export", "TracingAdapter")),
    (
        "`detectron2.utils.analysis` imports",
        _import("detectron2.utils.analysis", "FlopCountAnalysis"),
    ),
    ("LazyConfig", _import("detectron2.config", "LazyConfig")),
    ("ViT / SimpleFeaturePyramid backbones", _import("detectron2.modeling.backbone.vit", "ViT")),
    ("MViTv2 backbone", _import("detectron2.modeling.backbone.mvit", "MViT")),
    ("Swin backbone", _import("detectron2.modeling.backbone.swin", "SwinTransformer")),
    ("FCOS", _import("detectron2.modeling.meta_arch.fcos", "FCOS")),
]


def measure() -> dict:
    """``{"version": <distribution version>, "features": {row: {"ok": bool, "error": str}}}``."""
    import detectron2

    try:
        version = metadata.version("detectron2")
    except metadata.PackageNotFoundError:
        version = f"{detectron2.__version__} (no distribution metadata)"
    features = {}
    for name, check in FEATURES:
        try:
            features[name] = {"ok": bool(check()), "error": ""}
        except Exception as e:  # a missing feature shows up as any kind of error
            last = traceback.extract_tb(e.__traceback__)[-1]
            features[name] = {"ok": False, "error": f"{type(e).__name__}: {e} ({last.name})"}
    return {"version": version, "features": features}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = parser.parse_args(argv)
    report = measure()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"| detectron2 {report['version']} | |\n|---|---|")
    for name, row in report["features"].items():
        print(f"| {name} | {'yes' if row['ok'] else 'no'} |")
    for name, row in report["features"].items():
        if row["error"]:
            print(f"\n{name}: {row['error'][:300]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
