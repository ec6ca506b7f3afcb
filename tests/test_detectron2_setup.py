"""detectron2 as installed here: the installer's routes and fixes, a stock train step and a COCO
evaluation."""

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from tool_scripts import load_tool

REPO = Path(__file__).resolve().parent.parent
COMMIT = "02b5c4e295e990042a714712c21dc79b731e8833"

MODEL_ZOO_WITH_PKG_RESOURCES = (
    "import os\nfrom typing import Optional\nimport pkg_resources\nimport torch\n\n"
    "def get_config_file(config_path):\n"
    "    cfg_file = pkg_resources.resource_filename(\n"
    '        "detectron2.model_zoo", os.path.join("configs", config_path)\n'
    "    )\n"
    "    return cfg_file\n"
)


@pytest.fixture
def installer(monkeypatch):
    """The installer script as a module, with none of its environment variables set (under
    `make`, DETECTRON2_SOURCE and DETECTRON2_BUILD are)."""
    for var in ("DETECTRON2_SOURCE", "DETECTRON2_BUILD", "LUMINET_D2_ROUTE"):
        monkeypatch.delenv(var, raising=False)
    return load_tool("install_detectron2")


def test_compat_fixes_rewrite_only_what_they_should(tmp_path, installer):
    pkg = tmp_path / "detectron2"
    (pkg / "model_zoo").mkdir(parents=True)
    (pkg / "a.py").write_text(
        "x = Image.LINEAR\n"
        "a = np.int(3); b = np.float; c = np.bool\n"
        "keep = (np.int64, np.float32, np.bool_, np.integer)\n"
    )
    (pkg / "model_zoo" / "model_zoo.py").write_text(MODEL_ZOO_WITH_PKG_RESOURCES)
    changed = installer.apply_compat_fixes(pkg)

    text = (pkg / "a.py").read_text()
    assert "Image.BILINEAR" in text and "Image.LINEAR" not in text
    assert "a = int(3); b = float; c = bool" in text
    assert "keep = (np.int64, np.float32, np.bool_, np.integer)" in text
    zoo = (pkg / "model_zoo" / "model_zoo.py").read_text()
    assert "pkg_resources" not in zoo and "os.path.dirname(os.path.abspath(__file__))" in zoo
    assert "from typing import Optional\nimport torch\n" in zoo
    assert len(changed) == 2
    assert not (pkg / "_C.py").exists()  # the stand-in is for Python-only builds alone
    # sources without the old spellings (upstream main once it drops pkg_resources): unchanged
    assert installer.apply_compat_fixes(pkg) == []


def test_compat_fixes_refuse_unknown_model_zoo_source(tmp_path, installer):
    pkg = tmp_path / "detectron2"
    (pkg / "model_zoo").mkdir(parents=True)
    (pkg / "model_zoo" / "model_zoo.py").write_text("import pkg_resources\npkg_resources.x()\n")
    with pytest.raises(RuntimeError, match="could not remove pkg_resources"):
        installer.apply_compat_fixes(pkg)


def _fake_upstream(root: Path, version: str = "0.6") -> Path:
    """A miniature detectron2 repository: what the installer reads of upstream's layout."""
    (root / "detectron2" / "model_zoo").mkdir(parents=True)
    (root / "detectron2" / "layers" / "csrc").mkdir(parents=True)
    (root / "detectron2" / "__init__.py").write_text(f'__version__ = "{version}"\n')
    (root / "detectron2" / "model_zoo" / "__init__.py").write_text("")
    (root / "detectron2" / "model_zoo" / "model_zoo.py").write_text(MODEL_ZOO_WITH_PKG_RESOURCES)
    (root / "detectron2" / "layers" / "__init__.py").write_text("")
    (root / "detectron2" / "layers" / "csrc" / "vision.cpp").write_text("// C++ op\n")
    (root / "configs" / "COCO-Detection").mkdir(parents=True)
    (root / "configs" / "COCO-Detection" / "x.yaml").write_text("MODEL: {}\n")
    (root / "projects" / "PointRend" / "point_rend").mkdir(parents=True)
    (root / "projects" / "PointRend" / "point_rend" / "__init__.py").write_text("P = 1\n")
    (root / "LICENSE").write_text("Apache-2.0\n")
    (root / "setup.py").write_text(
        "import torch\n"
        'PROJECTS = {"detectron2.projects.point_rend": "projects/PointRend/point_rend"}\n'
        'setup(name="detectron2", install_requires=["yacs>=0.1.8", "tabulate"])\n'
    )
    return root


def _tar(src: Path, dest: Path, commit: str | None) -> Path:
    """``git archive``-like: one top folder, the commit in the pax header's comment."""
    headers = {"comment": commit} if commit else {}
    with tarfile.open(dest, "w:gz", format=tarfile.PAX_FORMAT, pax_headers=headers) as tar:
        tar.add(src, arcname="detectron2-top")
    return dest


def test_source_labels_of_archives_and_folders(tmp_path, installer):
    tree = _fake_upstream(tmp_path / "tree")
    git_tar = installer.describe_source(_tar(tree, tmp_path / "a.tar.gz", COMMIT))
    assert git_tar.label == "git02b5c4e2" and git_tar.is_archive
    plain = installer.describe_source(_tar(tree, tmp_path / "b.tar.gz", None))
    assert plain.label == "src" + plain.digest[:10]
    assert plain.digest == installer._sha256_file(tmp_path / "b.tar.gz")

    folder = installer.describe_source(tree)
    assert folder.label.startswith("src") and not folder.is_archive
    # build outputs left in a folder do not change its identity; a source change does
    (tree / "build").mkdir()
    (tree / "build" / "x.o").write_text("x")
    (tree / "detectron2" / "_C.cpython-311-x86_64-linux-gnu.so").write_text("x")
    (tree / "detectron2" / "model_zoo" / "configs").symlink_to(tree / "configs")
    assert installer.describe_source(tree).digest == folder.digest
    (tree / "detectron2" / "layers" / "csrc" / "vision.cpp").write_text("// changed\n")
    assert installer.describe_source(tree).digest != folder.digest

    with zipfile.ZipFile(tmp_path / "c.zip", "w") as z:  # GitHub's "Download ZIP"
        z.writestr("detectron2-main/setup.py", "")
        z.comment = COMMIT.encode()
    assert installer.describe_source(tmp_path / "c.zip").label == "git02b5c4e2"
    for label in ("git02b5c4e2", "git02b5c4e2.pyonly", "pyonly", "src0123456789.pyonly"):
        assert installer.built_here(f"0.6+{label}")
    assert not installer.built_here("0.6") and not installer.built_here("0.6+cu121")


def test_clean_git_checkout_is_labelled_by_its_commit(tmp_path, installer):
    tree = _fake_upstream(tmp_path / "tree")
    git = ["git", "-C", str(tree), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip
    assert installer.describe_source(tree).label == f"git{head[:8]}"
    (tree / "setup.py").write_text("changed = True\n")
    assert installer.describe_source(tree).label.startswith("src")  # local changes


def test_bad_sources_are_named(tmp_path, installer):
    with pytest.raises(ValueError, match="DETECTRON2_SOURCE .*absent.* does not exist"):
        installer.describe_source(tmp_path / "absent")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file but not an archive"):
        installer.describe_source(tmp_path / "notes.txt")
    (tmp_path / "broken.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(ValueError, match="could not be read as an archive"):
        installer.describe_source(tmp_path / "broken.tar.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="without setup.py and detectron2/__init__.py"):
        installer.describe_source(tmp_path / "empty")
    # an archive without a repository inside
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "README").write_text("x")
    src = installer.describe_source(_tar(tmp_path / "other", tmp_path / "other.tar.gz", None))
    with pytest.raises(ValueError, match="holds no detectron2 repository"):
        installer.unpack_source(src, tmp_path / "work")


@pytest.mark.parametrize("form", ["archive", "folder"])
def test_python_only_wheel_from_a_source(tmp_path, monkeypatch, installer, form):
    tree = _fake_upstream(tmp_path / "tree", version="0.7")
    path = _tar(tree, tmp_path / "d2.tar.gz", COMMIT) if form == "archive" else tree
    monkeypatch.setattr(installer, "WHEEL_CACHE", tmp_path / "cache")
    source = installer.describe_source(path)
    wheel = installer.build_source_wheel(source, "python")
    assert wheel.parent.parent == tmp_path / "cache"
    assert installer.wheel_version(wheel) == f"0.7+{source.label}.pyonly"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        zoo = z.read("detectron2/model_zoo/model_zoo.py").decode()
        stand_in = z.read("detectron2/_C.py").decode()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "detectron2/model_zoo/configs/COCO-Detection/x.yaml" in names
    assert "detectron2/projects/point_rend/__init__.py" in names
    assert not any("csrc" in n for n in names)
    assert "pkg_resources" not in zoo and "PYTHON_ONLY_BUILD = True" in stand_in
    assert "Requires-Dist: yacs>=0.1.8" in meta and "Requires-Dist: tabulate" in meta
    # the same source and build: the cached wheel, no second build
    monkeypatch.setattr(installer, "pip", lambda *a, **k: pytest.fail("rebuilt a cached wheel"))
    assert installer.build_source_wheel(installer.describe_source(path), "python") == wheel
    # the user's folder is never written to (the build works on a copy)
    assert not (tree / "detectron2" / "_C.py").exists()
    assert "pkg_resources" in (tree / "detectron2" / "model_zoo" / "model_zoo.py").read_text()


class _Recorder:
    """Stands in for the installer's expensive steps; records what was built and installed."""

    def __init__(self, installer, monkeypatch, installed, github=None):
        self.installed, self.built, self.done = installed, [], []
        monkeypatch.setattr(installer, "installed_version", lambda: self.installed)
        monkeypatch.setattr(installer, "github_head", lambda timeout=30.0: github)
        monkeypatch.setattr(installer, "install_wheel", lambda w, t: self.done.append(w.name))

        def source_wheel(src, build):
            self.built.append(("source", src.label, build))
            suffix = ".pyonly" if build == "python" else ""
            return Path(f"detectron2-0.6+{src.label}{suffix}-py3-none-any.whl")

        def pyonly_wheel():
            self.built.append(("pyonly",))
            return Path("detectron2-0.6+pyonly-py3-none-any.whl")

        def github_wheel(build):
            self.built.append(("github", build))
            return Path(f"detectron2-0.6+git{github[:8]}-py3-none-any.whl")

        monkeypatch.setattr(installer, "build_source_wheel", source_wheel)
        monkeypatch.setattr(installer, "build_pyonly_06_wheel", pyonly_wheel)
        monkeypatch.setattr(installer, "build_github_wheel", github_wheel)


@pytest.fixture
def archive(tmp_path):
    return str(_tar(_fake_upstream(tmp_path / "tree"), tmp_path / "d2.tar.gz", COMMIT))


def test_route_order_and_when_an_installed_build_is_replaced(
    installer, monkeypatch, archive, capsys
):
    # nothing installed, no source, GitHub unreachable: the 0.6 build
    rec = _Recorder(installer, monkeypatch, installed=None)
    assert installer.main([]) == 0 and rec.built == [("pyonly",)]
    # nothing installed, a source (flag or environment): built from it, compiled by default
    rec = _Recorder(installer, monkeypatch, installed=None)
    assert installer.main(["--source", archive]) == 0
    assert rec.built == [("source", "git02b5c4e2", "compiled")]
    monkeypatch.setenv("DETECTRON2_SOURCE", archive)
    monkeypatch.setenv("DETECTRON2_BUILD", "python")
    rec = _Recorder(installer, monkeypatch, installed=None)
    assert installer.main([]) == 0 and rec.built == [("source", "git02b5c4e2", "python")]
    assert rec.done == ["detectron2-0.6+git02b5c4e2.pyonly-py3-none-any.whl"]
    monkeypatch.delenv("DETECTRON2_BUILD")
    # our 0.6 build is replaced when a source is named ...
    rec = _Recorder(installer, monkeypatch, installed="0.6+pyonly")
    assert installer.main([]) == 0 and rec.built == [("source", "git02b5c4e2", "compiled")]
    # ... but not when it already is that source's build
    rec = _Recorder(installer, monkeypatch, installed="0.6+git02b5c4e2")
    assert installer.main([]) == 0 and rec.built == []
    # a detectron2 installed some other way is never touched, and the log says so
    rec = _Recorder(installer, monkeypatch, installed="0.6")
    capsys.readouterr()
    assert installer.main([]) == 0 and rec.built == []
    assert "NOT applied" in capsys.readouterr().out
    monkeypatch.delenv("DETECTRON2_SOURCE")
    # without an explicit request, our build (whatever it is) is kept
    rec = _Recorder(installer, monkeypatch, installed="0.6+git02b5c4e2")
    assert installer.main([]) == 0 and rec.built == []
    # GitHub reachable: it comes before the 0.6 build, and is labelled by its commit
    rec = _Recorder(installer, monkeypatch, installed=None, github="ab" * 20)
    assert installer.main([]) == 0 and rec.built == [("github", "compiled")]
    rec = _Recorder(installer, monkeypatch, installed="0.6+gitabababab", github="ab" * 20)
    assert installer.main(["--route", "github"]) == 0 and rec.built == []
    # a GitHub build that fails falls back to the 0.6 build
    rec = _Recorder(installer, monkeypatch, installed=None, github="ab" * 20)

    def no_compiler(build):
        raise RuntimeError("no compiler")

    monkeypatch.setattr(installer, "build_github_wheel", no_compiler)
    assert installer.main([]) == 0 and rec.built == [("pyonly",)]


def test_a_named_source_that_fails_does_not_fall_back(installer, monkeypatch, archive, tmp_path):
    rec = _Recorder(installer, monkeypatch, installed=None, github="ab" * 20)

    def broken(src, build):
        rec.built.append("failed")
        raise RuntimeError("compiler error")

    monkeypatch.setattr(installer, "build_source_wheel", broken)
    assert installer.main(["--source", archive]) == 1
    assert rec.built == ["failed"] and rec.done == []
    assert installer.main(["--source", str(tmp_path / "absent.tar.gz")]) == 2
    with pytest.raises(SystemExit):
        installer.main(["--source", archive, "--route", "pyonly"])
    with pytest.raises(SystemExit):
        installer.main(["--route", "source"])


def test_make_reruns_setup_when_the_detectron2_source_changes(tmp_path):
    """The set-up stamp notices DETECTRON2_SOURCE / DETECTRON2_BUILD, and nothing else reruns it.

    ``make`` runs with a stand-in interpreter that logs its arguments instead of installing.
    """
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "calls.log"
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    python.chmod(0o755)

    def setup(**variables):
        args = [f"{k}={v}" for k, v in variables.items()]
        drop = ("DETECTRON2_SOURCE", "DETECTRON2_BUILD", "LUMINET_D2_ROUTE", "MAKEFLAGS")
        env = {k: v for k, v in os.environ.items() if k not in drop}
        before = log.read_text().count("install_detectron2.py") if log.exists() else 0
        out = subprocess.run(["make", "-s", "-C", str(REPO), f"VENV={venv}", "setup", *args],
                             capture_output=True, text=True, env=env)  # fmt: skip
        assert out.returncode == 0, out.stderr
        return log.read_text().count("install_detectron2.py") - before

    assert setup() == 1
    assert setup() == 0
    assert setup(DETECTRON2_SOURCE="a.tar.gz") == 1
    assert setup(DETECTRON2_SOURCE="a.tar.gz") == 0
    assert setup(DETECTRON2_SOURCE="a.tar.gz", DETECTRON2_BUILD="python") == 1
    assert setup() == 1


def test_installed_detectron2_is_the_one_the_setup_chose():
    """Under `make`/CI with DETECTRON2_SOURCE set, the tests run against that source's build."""
    source = os.environ.get("DETECTRON2_SOURCE")
    if not source:
        pytest.skip("DETECTRON2_SOURCE is not set")
    installer = load_tool("install_detectron2")
    version = metadata.version("detectron2")
    if not installer.built_here(version):
        pytest.skip(f"detectron2 {version} was installed outside tools/install_detectron2.py")
    label = installer.describe_source(source).label
    build = os.environ.get("DETECTRON2_BUILD") or "compiled"
    assert installer.local_label(version) == label + (".pyonly" if build == "python" else "")


def test_missing_compiled_ops_are_reported_clearly():
    from detectron2 import _C

    from luminet_det.evaluation import coco_fast_eval_available

    if not getattr(_C, "PYTHON_ONLY_BUILD", False):
        pytest.skip("detectron2 with compiled ops is installed")
    assert not hasattr(_C, "COCOevalEvaluateImages")
    assert not coco_fast_eval_available()
    with pytest.raises(AttributeError, match="without C\\+\\+/CUDA ops"):
        _C.nms_rotated  # noqa: B018


def test_compiled_ops_work_and_coco_evaluation_uses_them(tmp_path):
    from detectron2 import _C

    from luminet_det.evaluation import build_coco_evaluator, coco_fast_eval_available

    if getattr(_C, "PYTHON_ONLY_BUILD", False):
        pytest.skip("Python-only detectron2 build: no compiled ops")
    from detectron2.layers import nms_rotated

    boxes = torch.tensor([[10.0, 10.0, 8.0, 4.0, 0.0], [10.0, 10.0, 8.0, 4.0, 1.0],
                          [40.0, 40.0, 8.0, 4.0, 30.0]])  # fmt: skip
    keep = nms_rotated(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
    assert keep.tolist() == [0, 2]
    assert coco_fast_eval_available()
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances

    name = "luminet_test_setup_fast_eval"
    register_coco_instances(name, {}, str(_tiny_coco(tmp_path)), str(tmp_path))
    try:
        evaluator = build_coco_evaluator(name, output_dir=None)
        assert evaluator._use_fast_impl is True
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


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


def test_feature_report_of_the_installed_detectron2(capsys):
    """tools/detectron2_features.py: every row measured; upstream main's rows come together
    (FCOS is in 0.6 already)."""
    from detectron2 import _C

    features_tool = load_tool("detectron2_features")
    report = features_tool.measure()
    rows = report["features"]
    assert len(rows) == len(features_tool.FEATURES)
    assert report["version"] == metadata.version("detectron2")
    compiled = not getattr(_C, "PYTHON_ONLY_BUILD", False)
    for name in ("compiled C++ ops (`detectron2._C`)", "fast C++ COCO evaluation"):
        assert rows[name]["ok"] == compiled, rows[name]
    assert rows["`model_zoo` imports (setuptools >= 81)"]["ok"]  # the installer's fix
    main = rows["`padding_constraints` in preprocessing"]["ok"]
    for name in (
        "DefaultTrainer checkpoints hold the optimizer",
        "LRScheduler hook keeps a torch >= 2 scheduler's state",
        "MapDataset retries a failed sample (Python 3.11)",
        "`detectron2.export` imports",
        "ViT / SimpleFeaturePyramid backbones",
    ):
        assert rows[name]["ok"] == main, (name, rows[name])
    assert features_tool.main([]) == 0
    assert capsys.readouterr().out.count("\n| ") == len(rows)  # one line per row


def test_fast_coco_evaluation_gives_pycocotools_numbers(tmp_path):
    """detectron2's C++ COCOeval (used when compiled) and pycocotools' agree on all 12 stats, so
    switching the evaluator with the build does not move AP."""
    import contextlib
    import io

    from detectron2 import _C
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if getattr(_C, "PYTHON_ONLY_BUILD", False):
        pytest.skip("Python-only detectron2 build: no fast COCO evaluation")
    from detectron2.evaluation.fast_eval_api import COCOeval_opt

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(_tiny_coco(tmp_path, n_images=12)))
    rng = np.random.default_rng(0)
    preds = []
    for ann in gt.dataset["annotations"]:
        for _ in range(3):  # near hits, misses and duplicates, scores in random order
            x, y, w, h = np.asarray(ann["bbox"]) + rng.normal(0, 4, 4)
            box = [x, y, max(w, 2.0), max(h, 2.0)]
            preds.append(
                {"image_id": ann["image_id"], "category_id": 1, "bbox": box, "score": rng.random()}
            )
    stats = []
    for cocoeval in (COCOeval, COCOeval_opt):
        with contextlib.redirect_stdout(io.StringIO()):
            e = cocoeval(gt, gt.loadRes(preds), "bbox")
            e.evaluate()
            e.accumulate()
            e.summarize()
        stats.append(e.stats)
    assert 0.05 < stats[0][0] < 0.95  # a non-trivial AP
    np.testing.assert_allclose(stats[1], stats[0], atol=1e-12)
