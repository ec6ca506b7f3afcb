"""detectron2 as installed here: the compat fixes, a stock train step and a COCO evaluation."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tool_scripts import load_tool


def test_compat_fixes_rewrite_only_what_they_should(tmp_path):
    pkg = tmp_path / "detectron2"
    (pkg / "model_zoo").mkdir(parents=True)
    (pkg / "a.py").write_text(
        "x = Image.LINEAR\n"
        "a = np.int(3); b = np.float; c = np.bool\n"
        "keep = (np.int64, np.float32, np.bool_, np.integer)\n"
    )
    (pkg / "model_zoo" / "model_zoo.py").write_text(
        "import os\nimport pkg_resources\n\n"
        "def get_config_file(config_path):\n"
        "    cfg_file = pkg_resources.resource_filename(\n"
        '        "detectron2.model_zoo", os.path.join("configs", config_path)\n'
        "    )\n"
        "    return cfg_file\n"
    )
    changed = load_tool("install_detectron2").apply_compat_fixes(pkg)

    text = (pkg / "a.py").read_text()
    assert "Image.BILINEAR" in text and "Image.LINEAR" not in text
    assert "a = int(3); b = float; c = bool" in text
    assert "keep = (np.int64, np.float32, np.bool_, np.integer)" in text
    zoo = (pkg / "model_zoo" / "model_zoo.py").read_text()
    assert "pkg_resources" not in zoo and "os.path.dirname(os.path.abspath(__file__))" in zoo
    assert (pkg / "_C.py").is_file()
    assert len(changed) == 3


def test_compat_fixes_refuse_unknown_model_zoo_source(tmp_path):
    pkg = tmp_path / "detectron2"
    (pkg / "model_zoo").mkdir(parents=True)
    (pkg / "model_zoo" / "model_zoo.py").write_text("import pkg_resources\npkg_resources.x()\n")
    with pytest.raises(RuntimeError, match="could not remove pkg_resources"):
        load_tool("install_detectron2").apply_compat_fixes(pkg)


def test_missing_compiled_ops_are_reported_clearly():
    from detectron2 import _C

    if not getattr(_C, "PYTHON_ONLY_BUILD", False):
        pytest.skip("detectron2 with compiled ops is installed")
    assert not hasattr(_C, "COCOevalAsNativeEvaluate")
    with pytest.raises(AttributeError, match="without C\\+\\+/CUDA ops"):
        _C.nms_rotated  # noqa: B018


def test_model_zoo_configs_resolve():
    from detectron2 import model_zoo

    path = Path(model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml"))
    assert path.is_file()


def _tiny_coco(root: Path, n_images: int = 4, size: int = 128) -> Path:
    rng = np.random.default_rng(0)
    from PIL import Image

    images, annotations = [], []
    for i in range(n_images):
        img = (rng.random((size, size, 3)) * 60).astype(np.uint8)
        x, y, w, h = (int(v) for v in rng.integers(10, 50, size=4))
        img[y : y + h, x : x + w] = 220
        Image.fromarray(img).save(root / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "height": size, "width": size})
        annotations.append(
            {"id": i + 1, "image_id": i, "category_id": 1, "bbox": [x, y, w, h],
             "area": w * h, "iscrowd": 0}
        )  # fmt: skip
    ann = {"images": images, "annotations": annotations,
           "categories": [{"id": 1, "name": "box"}]}  # fmt: skip
    path = root / "ann.json"
    path.write_text(json.dumps(ann))
    return path


@pytest.mark.slow
def test_stock_faster_rcnn_trains_and_evaluates(tmp_path):
    """The foundation promise: a Faster-RCNN-FPN train step and a COCOEvaluator run."""
    from detectron2 import model_zoo
    from detectron2.config import get_cfg
    from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
    from detectron2.data.datasets import register_coco_instances
    from detectron2.evaluation import COCOEvaluator, inference_on_dataset
    from detectron2.modeling import build_model
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.events import EventStorage

    from luminet_det.evaluation import coco_fast_eval_available

    name = "luminet_test_setup_tiny_coco"
    ann = _tiny_coco(tmp_path)
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, str(ann), str(tmp_path))

    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 1
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 64
    cfg.INPUT.MIN_SIZE_TEST = 128
    cfg.INPUT.MAX_SIZE_TEST = 128
    cfg.DATASETS.TEST = (name,)
    cfg.DATALOADER.NUM_WORKERS = 0
    model = build_model(cfg)

    inst = Instances((128, 128))
    inst.gt_boxes = Boxes(torch.tensor([[10.0, 20.0, 60.0, 70.0]]))
    inst.gt_classes = torch.tensor([0])
    batch = [{"image": torch.rand(3, 128, 128) * 255, "instances": inst}]
    opt = torch.optim.SGD(model.parameters(), lr=5e-4)
    with EventStorage():
        losses = model(batch)
        assert {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"} <= set(losses)
        total = sum(losses.values())
        assert torch.isfinite(total)
        total.backward()
        opt.step()

    evaluator = COCOEvaluator(
        name, output_dir=str(tmp_path / "eval"), use_fast_impl=coco_fast_eval_available()
    )
    results = inference_on_dataset(model, build_detection_test_loader(cfg, name), evaluator)
    assert set(results["bbox"]) >= {"AP", "AP50", "AP75"}
    assert all(np.isfinite(v) or np.isnan(v) for v in results["bbox"].values())
    DatasetCatalog.remove(name)


def test_python_is_supported():
    assert sys.version_info >= (3, 10)
