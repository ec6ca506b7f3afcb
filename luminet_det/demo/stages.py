"""The demo's stages: configs, backbone pretraining, teacher training, student init, training
and evaluation. Every trained artefact is cached under a key of everything that shapes it.

Each function is usable on its own (``tools/demo.py`` chains them; a study can reuse them).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from luminet.atomic_io import atomic_torch_save, atomic_write

logger = logging.getLogger(__name__)

__all__ = [
    "CONFIG_DIR",
    "TEACHER_CONFIG",
    "STUDENT_CONFIG",
    "TEACHER_BACKBONE",
    "STUDENT_BACKBONE",
    "TEACHER_NAME",
    "STUDENT_NAME",
    "LOSSES",
    "DEMO_RECIPE_VERSION",
    "Clock",
    "code_fingerprint",
    "quick_dataset_spec",
    "load_cfg",
    "pretrained_backbone",
    "train",
    "train_loader",
    "evaluate",
    "get_teacher",
    "student_init",
    "write_text_atomic",
]

#: ``configs/demo`` of a source checkout.
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "demo"
TEACHER_CONFIG = CONFIG_DIR / "teacher_R34_FPN.yaml"
STUDENT_CONFIG = CONFIG_DIR / "student_R18_FPN.yaml"
# Backbone tags (cache file names) and the names used in logs, tables and plots.
TEACHER_BACKBONE, STUDENT_BACKBONE = "R34", "R18"
TEACHER_NAME, STUDENT_NAME = f"{TEACHER_BACKBONE}-FPN", f"{STUDENT_BACKBONE}-FPN"
LOSSES = ("none", "kd", "dkd", "luminet")
# Bump when the training recipe in this package changes in a way that changes a trained model.
DEMO_RECIPE_VERSION = 1
# Source files (in this package) whose contents are part of the cache keys.
KEYED_SOURCES = ("pretrain.py", "digit_scenes.py")


def _sha(*parts: str) -> str:
    h = hashlib.sha1()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def code_fingerprint() -> str:
    """Hash of the recipe version, torch/detectron2 versions and the keyed source files."""
    from importlib import metadata

    import detectron2

    # detectron2.__version__ is "0.6" for the 0.6 release and upstream main alike; the installed
    # distribution's version (e.g. 0.6+pyonly, 0.6+git02b5c4e2) tells them apart.
    try:
        d2_version = metadata.version("detectron2")
    except metadata.PackageNotFoundError:
        d2_version = detectron2.__version__
    here = Path(__file__).resolve().parent
    sources = [(here / s).read_text() for s in KEYED_SOURCES]
    return _sha(str(DEMO_RECIPE_VERSION), torch.__version__, d2_version, *sources)


class Clock:
    """Wall-clock since the start of the demo, for progress lines."""

    def __init__(self):
        self.start = time.perf_counter()

    def __str__(self) -> str:
        s = time.perf_counter() - self.start
        return f"[{int(s // 60):02d}:{int(s % 60):02d}]"


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a crash leaves the old file or the new one)."""
    with atomic_write(path, "w") as f:
        f.write(text)


def quick_dataset_spec():
    """The tiny digit-scene spec of ``--quick`` runs."""
    from .digit_scenes import DigitScenesSpec

    return DigitScenesSpec(num_train=24, num_val=12)


def load_cfg(path: Path, datasets: dict[str, str], quick: bool, max_iter: int | None):
    """A detectron2 config from ``path`` with the demo's datasets and optional overrides.

    Args:
        path: a config of ``configs/demo``.
        datasets: ``{"train": name, "val": name}`` of registered datasets.
        quick: a few iterations with small batches (pipeline checks).
        max_iter: overrides ``SOLVER.MAX_ITER`` (LR steps scaled along).

    Raises:
        ValueError: when ``max_iter`` < 1.
    """
    from detectron2.config import get_cfg

    from luminet_det import add_distill_config

    cfg = get_cfg()
    add_distill_config(cfg)
    cfg.merge_from_file(str(path))
    cfg.DATASETS.TRAIN = (datasets["train"],)
    cfg.DATASETS.TEST = (datasets["val"],)
    if quick:
        cfg.SOLVER.MAX_ITER = 4
        cfg.SOLVER.STEPS = (3,)
        cfg.SOLVER.WARMUP_ITERS = 1
        cfg.SOLVER.IMS_PER_BATCH = 2
        cfg.SOLVER.BASE_LR = 0.001
    if max_iter is not None:
        if max_iter < 1:
            raise ValueError(f"iterations must be >= 1; got {max_iter}")
        cfg.SOLVER.STEPS = tuple(int(s * max_iter / cfg.SOLVER.MAX_ITER) for s in cfg.SOLVER.STEPS)
        cfg.SOLVER.WARMUP_ITERS = min(cfg.SOLVER.WARMUP_ITERS, max_iter)
        cfg.SOLVER.MAX_ITER = max_iter
    return cfg


def pretrained_backbone(cfg, tag: str, cache: Path, quick: bool, clock: Clock) -> tuple[str, dict]:
    """Path of the cached (or newly trained) pretrained backbone of ``cfg``, and its stats."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from .pretrain import PretrainSpec, pretrain_resnet

    spec = PretrainSpec(iters=30, batch_size=32, lr=0.02) if quick else PretrainSpec()
    train_name = cfg.DATASETS.TRAIN[0]
    meta = MetadataCatalog.get(train_name)
    keyed = {
        "resnets": cfg.MODEL.RESNETS.dump(),
        "pixel": [cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD, cfg.INPUT.FORMAT],
        "pretrain": dataclasses.asdict(spec),
        "data": meta.digit_scenes_spec.key(),
        "code": code_fingerprint(),
    }
    key = _sha(json.dumps(keyed, sort_keys=True))
    path = cache / f"pretrained_{tag}_{key}.pth"
    stats_path = path.with_suffix(".json")
    if path.is_file() and stats_path.is_file():
        stats = json.loads(stats_path.read_text())
        logger.info("%s pretrained %s backbone: cached (%s)", clock, tag, path)
        return str(path), {**stats, "cached": True}
    DatasetCatalog.get(train_name)  # builds the data if needed
    logger.info(
        "%s pretraining the %s backbone on train digit crops (%d iters)", clock, tag, spec.iters
    )
    state, stats = pretrain_resnet(cfg, meta.json_file, meta.image_root, spec)
    atomic_torch_save({"model": state}, path)
    write_text_atomic(stats_path, json.dumps(stats, indent=1))
    return str(path), {**stats, "cached": False}


def train_loader(cfg):
    """detectron2's training loader for ``cfg``, its sampler seeded from the global RNG.

    That is what detectron2 0.6 does by default; upstream main seeds the sampler with
    ``cfg.SEED`` instead, another data order for the same seed. Passing the sampler gives the same
    order, and the same demo numbers, on both.
    """
    from detectron2.data import build_detection_train_loader, get_detection_dataset_dicts
    from detectron2.data.samplers import TrainingSampler

    dataset = get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
    )
    return build_detection_train_loader(cfg, dataset=dataset, sampler=TrainingSampler(len(dataset)))


def train(cfg, init_weights: str, name: str, clock: Clock, log_period: int):
    """Train ``cfg``'s model from ``init_weights`` with a compact, seeded loop.

    Returns:
        ``(model, seconds)``.

    Raises:
        FloatingPointError: when the loss stops being finite.
    """
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model
    from detectron2.solver import build_lr_scheduler, build_optimizer
    from detectron2.utils.env import seed_all_rng
    from detectron2.utils.events import EventStorage

    seed_all_rng(cfg.SEED)
    model = build_model(cfg)
    DetectionCheckpointer(model).load(init_weights)
    seed_all_rng(cfg.SEED)  # the data order must not depend on what the model build consumed
    loader = train_loader(cfg)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer)
    max_iter = cfg.SOLVER.MAX_ITER
    model.train()
    start = time.perf_counter()
    with EventStorage(0) as storage:
        for it, data in zip(range(max_iter), loader):
            storage.iter = it
            loss_dict = model(data)
            losses = sum(loss_dict.values())
            if not torch.isfinite(losses):
                raise FloatingPointError(
                    f"{name}: loss became {losses.item()} at iteration {it}: "
                    + ", ".join(f"{k}={v.item():.4g}" for k, v in loss_dict.items())
                )
            optimizer.zero_grad(set_to_none=True)
            losses.backward()
            optimizer.step()
            scheduler.step()
            done = it + 1
            if done % log_period == 0 or done == max_iter:
                elapsed = time.perf_counter() - start
                eta = elapsed / done * (max_iter - done)
                parts = " ".join(
                    f"{k[5:] if k.startswith('loss_') else k}={v.item():.3f}"
                    for k, v in loss_dict.items()
                )
                logger.info(
                    "%s %s iter %d/%d  loss %.3f (%s)  %.2fs/it  ETA %ds",
                    clock,
                    name,
                    done,
                    max_iter,
                    losses.item(),
                    parts,
                    elapsed / done,
                    int(eta),
                )
    return model, time.perf_counter() - start


def evaluate(model, cfg, out_dir: Path) -> dict[str, float]:
    """COCO bbox AP/AP50/AP75 (percent) of ``model`` on ``cfg.DATASETS.TEST[0]``."""
    from detectron2.data import build_detection_test_loader
    from detectron2.evaluation import inference_on_dataset

    from luminet_det.evaluation import build_coco_evaluator

    name = cfg.DATASETS.TEST[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    evaluator = build_coco_evaluator(name, output_dir=str(out_dir), distributed=False)
    model.eval()
    loader = build_detection_test_loader(cfg, name)
    results = inference_on_dataset(model, loader, evaluator)
    bbox = results["bbox"]
    # COCOeval gives NaN when a model detects nothing at all; report that as 0 AP.
    return {k: float(bbox[k]) if np.isfinite(bbox[k]) else 0.0 for k in ("AP", "AP50", "AP75")}


def get_teacher(settings, datasets: dict[str, str], cache: Path, clock: Clock):
    """The cached teacher (weights, config, metrics), training it when the key changed.

    Args:
        settings: an object with ``quick``, ``teacher_iters``, ``retrain_teacher`` and
            ``log_period`` (e.g. :class:`~luminet_det.demo.DemoSettings`).
        datasets: ``{"train": name, "val": name}``.
        cache: cache folder.
        clock: for progress lines.

    Returns:
        ``(weights_path, config_path, metrics)``.
    """
    cfg = load_cfg(TEACHER_CONFIG, datasets, settings.quick, settings.teacher_iters)
    backbone, pre_stats = pretrained_backbone(cfg, TEACHER_BACKBONE, cache, settings.quick, clock)
    cfg.MODEL.WEIGHTS = backbone
    key_cfg = cfg.clone()
    key_cfg.MODEL.WEIGHTS = Path(backbone).name  # the pretraining key, not the directory
    key = _sha(key_cfg.dump(), code_fingerprint())
    tdir = cache / f"teacher_{key}"
    weights, cfg_file, metrics_file = (
        tdir / "model_final.pth",
        tdir / "config.yaml",
        tdir / "metrics.json",
    )
    if not settings.retrain_teacher and metrics_file.is_file() and weights.is_file():
        logger.info("%s teacher: cached (%s)", clock, tdir)
        return str(weights), str(cfg_file), {**json.loads(metrics_file.read_text()), "cached": True}
    tdir.mkdir(parents=True, exist_ok=True)
    logger.info("%s teacher %s: training %d iterations", clock, TEACHER_NAME, cfg.SOLVER.MAX_ITER)
    model, seconds = train(cfg, backbone, f"teacher {TEACHER_NAME}", clock, settings.log_period)
    atomic_torch_save({"model": model.state_dict()}, weights)
    write_text_atomic(cfg_file, cfg.dump())
    metrics = evaluate(model, cfg, tdir / "eval")
    metrics.update(
        iterations=cfg.SOLVER.MAX_ITER,
        seconds=round(seconds, 1),
        pretrain_seconds=round(pre_stats["seconds"], 1) if not pre_stats["cached"] else 0.0,
    )
    write_text_atomic(metrics_file, json.dumps(metrics, indent=1))
    logger.info(
        "%s teacher: AP %.2f AP50 %.2f AP75 %.2f",
        clock,
        metrics["AP"],
        metrics["AP50"],
        metrics["AP75"],
    )
    return str(weights), str(cfg_file), {**metrics, "cached": False}


def student_init(cfg, seed: int, backbone: str, cache: Path) -> str:
    """Initial student weights for ``seed``: pretrained R18 plus seeded FPN/heads; shared by
    every loss so that the students differ only in the distillation term."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model
    from detectron2.utils.env import seed_all_rng

    init_cfg = cfg.clone()
    init_cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    init_cfg.MODEL.WEIGHTS = backbone
    key = _sha(init_cfg.dump(), str(seed), code_fingerprint())
    path = cache / f"student_init_seed{seed}_{key}.pth"
    if not path.is_file():
        seed_all_rng(seed)
        model = build_model(init_cfg)
        DetectionCheckpointer(model).load(backbone)
        atomic_torch_save({"model": model.state_dict()}, path)
    return str(path)
