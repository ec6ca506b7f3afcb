"""Bad training data is caught before step 0 (or, in header mode, when it is read), naming files."""

import json
import os
import shutil

import pytest
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.data.datasets import load_coco_json, register_coco_instances
from tool_scripts import load_tool

from luminet_det.dataset_check import (
    DatasetCheckError,
    check_detection_dataset,
    resolve_check_mode,
)
from luminet_det.image_files import (
    ImageFileError,
    TrainingImageError,
    VerifyingMapper,
    image_header_size,
    read_image_checked,
)
from luminet_det.testing import tiny_distill_cfg, tiny_rcnn_cfg, write_teacher, write_tiny_coco


def _overwrite_2kb(path):
    data = bytearray(path.read_bytes())
    data[1000:3048] = bytes(range(256)) * 8  # inside the compressed pixel data
    path.write_bytes(bytes(data))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("data_check")
    json_path, image_root = write_tiny_coco(str(root / "clean"), n_images=6, size=128)
    return root, json_path, image_root


def _copy(clean, name):
    root, json_path, image_root = clean
    dst = root / name
    shutil.copytree(os.path.dirname(json_path), dst)
    return dst / "instances.json", dst / "images"


def _dicts(json_path, image_root):
    dicts = load_coco_json(str(json_path), str(image_root))
    for d in dicts:  # COCO ids 1..3 -> contiguous 0..2, as a registered dataset has them
        for ann in d["annotations"]:
            ann["category_id"] -= 1
    return dicts


def test_clean_data_passes(clean):
    _, json_path, image_root = clean
    for mode in ("full", "headers"):
        report = check_detection_dataset(_dicts(json_path, image_root), "clean", mode=mode,
                                         num_classes=3)  # fmt: skip
        assert report.trainable and not report.problems, report.summary()
        assert report.images == 6 and report.usable_boxes > 6


def test_damaged_truncated_and_missing_images_are_named(clean):
    json_path, images = _copy(clean, "damaged")
    _overwrite_2kb(images / "0001.png")  # before: decoded into garbage without any error
    _truncate(images / "0002.png")  # before: OSError mid-run without the file name
    (images / "0003.png").unlink()  # before: found at iteration 4
    report = check_detection_dataset(_dicts(json_path, images), "damaged", mode="full")
    assert not report.trainable
    bad = {os.path.basename(p.file): p.detail for p in report.errors}
    assert set(bad) == {"0001.png", "0002.png", "0003.png"}
    assert "bad header checksum" in bad["0001.png"]
    assert "does not exist" in bad["0003.png"]
    headers = check_detection_dataset(_dicts(json_path, images), "damaged", mode="headers")
    assert {os.path.basename(p.file) for p in headers.errors} == {"0003.png"}  # pixels unread
    # The training-time reader: a damaged image is an error naming it, never garbage pixels.
    cfg = tiny_rcnn_cfg()
    mapper = VerifyingMapper(DatasetMapper(cfg, is_train=True))
    dicts = {os.path.basename(d["file_name"]): d for d in _dicts(json_path, images)}
    for name, match in [("0001.png", "0001.png is damaged"), ("0002.png", "0002.png is damaged"),
                        ("0003.png", "0003.png does not exist")]:  # fmt: skip
        with pytest.raises(ImageFileError, match=match):
            mapper(dicts[name])
    assert mapper(dicts["0000.png"])["image"].shape[0] == 3
    with pytest.raises(ImageFileError, match="0002.png"):
        read_image_checked(str(images / "0002.png"))


def test_box_and_category_problems(clean):
    json_path, images = _copy(clean, "boxes")
    coco = json.loads(json_path.read_text())
    anns = coco["annotations"]
    anns[0]["bbox"][2] = 0  # zero width: dropped
    anns[1]["bbox"] = [500, 500, 10, 10]  # outside a 128 px image
    anns[2]["bbox"] = [100, 100, 60, 10]  # partly outside
    coco["images"][3]["width"] = 200  # the file is 128 px wide
    json_path.write_text(json.dumps(coco))
    dicts = _dicts(json_path, images)
    dicts[4]["annotations"][0]["bbox"][1] = float("nan")
    dicts[5]["annotations"][0]["category_id"] = 7
    report = check_detection_dataset(dicts, "boxes", mode="full", num_classes=3)
    kinds = {(p.severity, p.kind) for p in report.problems}
    assert {("warning", "zero-area box"), ("warning", "box outside the image"),
            ("warning", "box partly outside the image"), ("error", "size mismatch"),
            ("error", "NaN box"), ("error", "bad category")} <= kinds  # fmt: skip
    mismatch = [p for p in report.errors if p.kind == "size mismatch"][0]
    assert mismatch.file.endswith("0003.png") and "128x128" in mismatch.detail
    assert "200x128" in mismatch.detail


def test_no_usable_box_at_all_is_an_error(clean):
    # Before: trained with no ground truth, exited 0, AP nan.
    json_path, images = _copy(clean, "zero_width")
    coco = json.loads(json_path.read_text())
    for ann in coco["annotations"]:
        ann["bbox"][2] = 0
    json_path.write_text(json.dumps(coco))
    report = check_detection_dataset(_dicts(json_path, images), "zero_width", mode="headers")
    assert [p.kind for p in report.errors] == ["no usable box at all"]
    assert report.images_without_usable_box == 6
    tool = load_tool("check_dataset")
    name = "luminet_test_zero_width"
    assert tool.main([name, "--coco-dataset", name, str(json_path), str(images)]) == 1
    _, clean_json, clean_images = clean
    ok = "luminet_test_clean_tool"
    assert tool.main([ok, "--coco-dataset", ok, clean_json, clean_images]) == 0
    for n in (name, ok):
        DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)


def test_check_modes():
    assert resolve_check_mode("auto", 100, 10000) == "full"
    assert resolve_check_mode("auto", 10001, 10000) == "headers"
    assert resolve_check_mode("OFF", 5, 10) == "off"
    with pytest.raises(ValueError, match="DATALOADER.CHECK.MODE must be one of"):
        resolve_check_mode("fast", 5, 10)


def test_header_size_applies_exif_orientation(tmp_path):
    from PIL import Image

    img = Image.new("RGB", (40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated by 90 degrees
    img.save(tmp_path / "r.jpg", exif=exif)
    assert image_header_size(str(tmp_path / "r.jpg")) == (20, 40)
    assert read_image_checked(str(tmp_path / "r.jpg")).shape[:2] == (40, 20)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("check_teacher")
    write_teacher(str(d), seed=1)
    return d


def _train(teacher_dir, json_path, images, out, name, *opts):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, str(json_path), str(images))
    cfg = tiny_distill_cfg(str(teacher_dir / "teacher.yaml"), str(teacher_dir / "teacher.pth"))
    cfg.DATASETS.TRAIN = (name,)
    cfg.DATASETS.TEST = ()
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.SOLVER.BASE_LR = 5e-4
    cfg.SOLVER.MAX_ITER = 4
    cfg.OUTPUT_DIR = str(out)
    config = out.parent / f"{name}.yaml"
    config.write_text(cfg.dump())
    train_net = load_tool("train_net")
    try:
        return train_net.main(train_net.build_parser().parse_args(
            ["--config-file", str(config), *opts]))  # fmt: skip
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_train_net_refuses_bad_data_before_step_0(clean, teacher_dir, tmp_path):
    json_path, images = _copy(clean, "train_damaged")
    _overwrite_2kb(images / "0001.png")
    (images / "0003.png").unlink()
    with pytest.raises(DatasetCheckError, match=r"0001.png is damaged(.|\n)*0003.png does not"):
        _train(teacher_dir, json_path, images, tmp_path / "out", "luminet_test_damaged_train")
    made = sorted(os.listdir(tmp_path / "out"))
    assert "metrics.json" not in made and not [f for f in made if f.endswith(".pth")]
    assert "0001.png" in (tmp_path / "out" / "data_check.txt").read_text()


def test_header_mode_training_stops_at_the_damaged_image(clean, teacher_dir, tmp_path):
    # With the fast header check (large datasets) the damaged pixels are caught when read.
    json_path, images = _copy(clean, "train_damaged_headers")
    for i in range(6):
        if i != 0:
            _overwrite_2kb(images / f"{i:04d}.png")
    with pytest.raises((ImageFileError, TrainingImageError), match=r"\d{4}.png is damaged"):
        _train(teacher_dir, json_path, images, tmp_path / "out", "luminet_test_headers_train",
               "DATALOADER.CHECK.MODE", "headers")  # fmt: skip


def test_train_net_refuses_a_set_without_any_usable_box(clean, teacher_dir, tmp_path):
    json_path, images = _copy(clean, "train_zero_width")
    coco = json.loads(json_path.read_text())
    for ann in coco["annotations"]:
        ann["bbox"][2] = 0
    json_path.write_text(json.dumps(coco))
    with pytest.raises(DatasetCheckError, match="no usable box at all"):
        _train(teacher_dir, json_path, images, tmp_path / "out", "luminet_test_zero_train")


@pytest.mark.parametrize(
    "opts,match",
    [(["DATALOADER.CHECK.MODE", "fast"], "DATALOADER.CHECK.MODE must be one of"),
     (["SOLVER.CHECKPOINT_PERIOD", "0"], "SOLVER.CHECKPOINT_PERIOD must be > 0")],
)  # fmt: skip
def test_bad_keys_are_named_before_step_0(clean, teacher_dir, tmp_path, opts, match):
    _, json_path, image_root = clean
    with pytest.raises(ValueError, match=match):
        _train(teacher_dir, json_path, image_root, tmp_path / "out", "luminet_test_keys", *opts)
    assert not (tmp_path / "out" / "metrics.json").exists()
