#!/usr/bin/env python
"""The demo: distil a Faster R-CNN on real digit scenes, on CPU, in minutes.

Stages (each prints progress with an ETA):

1. build the digit scenes (``luminet_det.data``; cached under ``datasets/generated``);
2. pretrain the R18 and R34 backbones as digit-crop classifiers (train split only; cached);
3. train the R34-FPN teacher (cached: the key hashes its config, the data, the pretrained
   backbone, the demo recipe version and the library versions; any change retrains);
4. train R18-FPN students with MODEL.DISTILL.LOSS none / kd / dkd / luminet: same config, same
   initial weights, same data order, per seed;
5. COCO AP/AP50/AP75 of every model on the val split; ``results.json``, a Markdown table,
   ``ap.png`` and ``perception.png`` under ``--output-dir``.

Usage::

    python tools/demo.py --seeds 1            # the default run (make demo)
    python tools/demo.py --seeds 3            # students repeated over seeds 0, 1, 2
    python tools/demo.py --quick              # a tiny end-to-end smoke run (tests)
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger("luminet_det.demo")

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "configs" / "demo"
TEACHER_CONFIG = CONFIG_DIR / "teacher_R34_FPN.yaml"
STUDENT_CONFIG = CONFIG_DIR / "student_R18_FPN.yaml"
# Backbone tags (cache file names) and the names used in logs, tables and plots.
TEACHER_BACKBONE, STUDENT_BACKBONE = "R34", "R18"
TEACHER_NAME, STUDENT_NAME = f"{TEACHER_BACKBONE}-FPN", f"{STUDENT_BACKBONE}-FPN"
LOSSES = ("none", "kd", "dkd", "luminet")
# Bump when the training recipe in this file changes in a way that changes a trained model.
DEMO_RECIPE_VERSION = 1
# Source files whose contents are part of the cache keys.
KEYED_SOURCES = ("luminet_det/pretrain.py", "luminet_det/data/digit_scenes.py")


# --------------------------------------------------------------------------- arguments
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, default=1, help="student seeds 0..N-1 (default 1)")
    p.add_argument("--output-dir", default="output/demo", help="results, plots and caches")
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny data and a few iterations per model: checks the pipeline, not the method",
    )
    p.add_argument(
        "--losses",
        default=",".join(LOSSES),
        help=f"comma-separated distillation losses of the students (default {','.join(LOSSES)})",
    )
    p.add_argument("--student-iters", type=int, default=None, help="override students' MAX_ITER")
    p.add_argument("--teacher-iters", type=int, default=None, help="override teacher's MAX_ITER")
    p.add_argument("--retrain-teacher", action="store_true", help="ignore the cached teacher")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--log-period", type=int, default=25, help="iterations between progress lines")
    p.add_argument(
        "--student-opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="KEY VALUE pairs merged into every student config (last argument), e.g. "
        "--student-opts MODEL.DISTILL.TEMPERATURE 2.0",
    )
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error(f"--seeds must be >= 1; got {args.seeds}")
    losses = [x.strip().lower() for x in args.losses.split(",") if x.strip()]
    bad = [x for x in losses if x not in LOSSES]
    if bad or not losses:
        p.error(f"--losses must be a subset of {LOSSES}; got {args.losses!r}")
    args.losses = losses
    if len(args.student_opts) % 2:
        p.error(f"--student-opts needs KEY VALUE pairs; got {args.student_opts}")
    return args


# --------------------------------------------------------------------------- helpers
def _sha(*parts: str) -> str:
    h = hashlib.sha1()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def _code_fingerprint() -> str:
    from importlib import metadata

    import detectron2

    # detectron2.__version__ is "0.6" for the 0.6 release and upstream main alike; the installed
    # distribution's version (e.g. 0.6+pyonly, 0.6+git02b5c4e2) tells them apart.
    try:
        d2_version = metadata.version("detectron2")
    except metadata.PackageNotFoundError:
        d2_version = detectron2.__version__
    sources = [(REPO / s).read_text() for s in KEYED_SOURCES]
    return _sha(str(DEMO_RECIPE_VERSION), torch.__version__, d2_version, *sources)


class Clock:
    """Wall-clock since the start of the demo, for progress lines."""

    def __init__(self):
        self.start = time.perf_counter()

    def __str__(self) -> str:
        s = time.perf_counter() - self.start
        return f"[{int(s // 60):02d}:{int(s % 60):02d}]"


def _setup_logging() -> None:
    from detectron2.utils.logger import setup_logger

    setup_logger(name="detectron2", abbrev_name="d2")
    setup_logger(name="luminet_det")
    logging.getLogger("detectron2").setLevel(logging.WARNING)
    logging.getLogger("fvcore").setLevel(logging.WARNING)
    # Digit-scene category ids are 0..9, mapped one-to-one; detectron2 warns about any id
    # outside 1..K.
    logging.getLogger("detectron2.data.datasets.coco").setLevel(logging.ERROR)


# --------------------------------------------------------------------------- configs
def quick_dataset_spec():
    from luminet_det.data import DigitScenesSpec

    return DigitScenesSpec(num_train=24, num_val=12)


def load_cfg(path: Path, datasets: dict[str, str], quick: bool, max_iter: int | None):
    """A detectron2 config from ``path`` with the demo's datasets and optional overrides."""
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


# --------------------------------------------------------------------------- stages
def pretrained_backbone(cfg, tag: str, cache: Path, quick: bool, clock: Clock) -> tuple[str, dict]:
    """Path of the cached (or newly trained) pretrained backbone of ``cfg``, and its stats."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from luminet_det.pretrain import PretrainSpec, pretrain_resnet

    spec = PretrainSpec(iters=30, batch_size=32, lr=0.02) if quick else PretrainSpec()
    train_name = cfg.DATASETS.TRAIN[0]
    meta = MetadataCatalog.get(train_name)
    keyed = {
        "resnets": cfg.MODEL.RESNETS.dump(),
        "pixel": [cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD, cfg.INPUT.FORMAT],
        "pretrain": dataclasses.asdict(spec),
        "data": meta.digit_scenes_spec.key(),
        "code": _code_fingerprint(),
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
    tmp = path.with_suffix(".tmp")
    torch.save({"model": state}, tmp)
    os.replace(tmp, path)
    stats_path.write_text(json.dumps(stats, indent=1))
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


def get_teacher(args, datasets, cache: Path, clock: Clock):
    """The cached teacher (weights, config, metrics), training it when the key changed."""
    from detectron2.checkpoint import DetectionCheckpointer  # noqa: F401  (format of the file)

    cfg = load_cfg(TEACHER_CONFIG, datasets, args.quick, args.teacher_iters)
    backbone, pre_stats = pretrained_backbone(cfg, TEACHER_BACKBONE, cache, args.quick, clock)
    cfg.MODEL.WEIGHTS = backbone
    key_cfg = cfg.clone()
    key_cfg.MODEL.WEIGHTS = Path(backbone).name  # the pretraining key, not the directory
    key = _sha(key_cfg.dump(), _code_fingerprint())
    tdir = cache / f"teacher_{key}"
    weights, cfg_file, metrics_file = (
        tdir / "model_final.pth",
        tdir / "config.yaml",
        tdir / "metrics.json",
    )
    if not args.retrain_teacher and metrics_file.is_file() and weights.is_file():
        logger.info("%s teacher: cached (%s)", clock, tdir)
        return str(weights), str(cfg_file), {**json.loads(metrics_file.read_text()), "cached": True}
    tdir.mkdir(parents=True, exist_ok=True)
    logger.info("%s teacher %s: training %d iterations", clock, TEACHER_NAME, cfg.SOLVER.MAX_ITER)
    model, seconds = train(cfg, backbone, f"teacher {TEACHER_NAME}", clock, args.log_period)
    torch.save({"model": model.state_dict()}, weights)
    cfg_file.write_text(cfg.dump())
    metrics = evaluate(model, cfg, tdir / "eval")
    metrics.update(
        iterations=cfg.SOLVER.MAX_ITER,
        seconds=round(seconds, 1),
        pretrain_seconds=round(pre_stats["seconds"], 1) if not pre_stats["cached"] else 0.0,
    )
    metrics_file.write_text(json.dumps(metrics, indent=1))
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
    key = _sha(init_cfg.dump(), str(seed), _code_fingerprint())
    path = cache / f"student_init_seed{seed}_{key}.pth"
    if not path.is_file():
        seed_all_rng(seed)
        model = build_model(init_cfg)
        DetectionCheckpointer(model).load(backbone)
        tmp = path.with_suffix(".tmp")
        torch.save({"model": model.state_dict()}, tmp)
        os.replace(tmp, path)
    return str(path)


def perception_figure(
    teacher_cfg_file: str, teacher_weights: str, val_name: str, out: Path
) -> dict:
    """perception.png: the teacher's logits for one real validation ROI, softened two ways."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
    from detectron2.modeling import build_model
    from detectron2.structures import Boxes, BoxMode, pairwise_iou

    from luminet_det import add_distill_config
    from luminet_det.visualize import plot_perception

    cfg = get_cfg()
    add_distill_config(cfg)
    cfg.merge_from_file(teacher_cfg_file)
    model = build_model(cfg)
    DetectionCheckpointer(model).load(teacher_weights)
    model.eval()
    dicts = DatasetCatalog.get(val_name)[:4]
    mapper = DatasetMapper(cfg, is_train=False)
    inputs = [mapper(d) for d in dicts]
    with torch.no_grad():
        images = model.preprocess_image(inputs)
        features = model.backbone(images.tensor)
        proposals, _ = model.proposal_generator(images, features, None)
        proposals = [p[:64] for p in proposals]
        heads = model.roi_heads
        boxes = [p.proposal_boxes for p in proposals]
        x = heads.box_pooler([features[f] for f in heads.box_in_features], boxes)
        logits = heads.box_predictor(heads.box_head(x))[0]
    # The ROI: among proposals that overlap a ground-truth digit (IoU >= 0.5) and that the
    # teacher classifies correctly, the one it is most confident about (a clear example, as in
    # the paper's Fig. 2); if there is none, the proposal that best overlaps any digit.
    best = None  # (score, image index, ROI index in the batch, ROI index in the image, IoU, ann)
    offset = 0
    probs = logits.softmax(dim=1)
    for i, d in enumerate(dicts):
        anns = d["annotations"]
        n = len(boxes[i])
        if anns and n:
            gt = Boxes(
                torch.tensor(
                    [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns],
                    dtype=torch.float32,
                )
            )
            iou_all = pairwise_iou(boxes[i], gt)
            iou_max, which = iou_all.max(dim=1)
            for r in range(n):
                ann = anns[int(which[r])]
                p_gt = float(probs[offset + r, ann["category_id"]])
                correct = int(probs[offset + r].argmax()) == ann["category_id"]
                ok = bool(iou_max[r] >= 0.5 and correct)
                score = (1.0 if ok else 0.0, p_gt if ok else float(iou_max[r]))
                if best is None or score > best[0]:
                    best = (score, i, offset + r, r, float(iou_max[r]), ann)
        offset += n
    if best is None:
        raise RuntimeError("no validation proposal overlaps a ground-truth digit")
    _, img_i, idx, local, iou_val, ann = best
    bx = boxes[img_i].tensor[local].round().int().tolist()
    from PIL import Image

    img = np.asarray(Image.open(dicts[img_i]["file_name"]).convert("RGB"))
    crop = img[max(0, bx[1]) : bx[3], max(0, bx[0]) : bx[2]]
    names = [*MetadataCatalog.get(val_name).thing_classes, "bg"]
    rows = plot_perception(
        logits,
        idx,
        names,
        out,
        temperature=4.0,
        crop=crop,
        caption=f"teacher {TEACHER_NAME}, val image {Path(dicts[img_i]['file_name']).name}, "
        f"ROI IoU {iou_val:.2f} with a ground-truth '{names[ann['category_id']]}' "
        "(bg = background)",
    )
    return {
        "roi_index": idx,
        "iou_with_gt": iou_val,
        "gt_class": names[ann["category_id"]],
        "num_rois": int(logits.shape[0]),
        **{k: [round(float(v), 4) for v in row] for k, row in rows.items()},
    }


# --------------------------------------------------------------------------- report
def _mean_std(runs: list[dict], key: str) -> tuple[float, float]:
    from luminet_det.visualize import sample_std

    vals = [r[key] for r in runs]
    return float(np.mean(vals)), sample_std(vals)


def markdown_table(results: dict) -> str:
    t = results["teacher"]
    n_seeds = results["settings"]["seeds"]
    lines = [
        "| model | distillation | AP | AP50 | AP75 | iterations | train s |",
        "|---|---|---|---|---|---|---|",
        f"| teacher {TEACHER_NAME} | - | {t['AP']:.2f} | {t['AP50']:.2f} | {t['AP75']:.2f} "
        f"| {t['iterations']} | {t['seconds']:.0f}{' (cached)' if t.get('cached') else ''} |",
    ]
    for loss, entry in results["students"].items():
        runs = entry["runs"]
        cells = []
        for m in ("AP", "AP50", "AP75"):
            mean, std = _mean_std(runs, m)
            cells.append(f"{mean:.2f} ± {std:.2f}" if n_seeds > 1 else f"{mean:.2f}")
        secs = np.mean([r["seconds"] for r in runs])
        lines.append(
            f"| student {STUDENT_NAME} | {loss} | {' | '.join(cells)} | {runs[0]['iterations']} "
            f"| {secs:.0f} |"
        )
    if n_seeds > 1:
        lines.append(f"\nStudents: mean ± sample std (n - 1) over seeds 0..{n_seeds - 1}.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    _setup_logging()
    clock = Clock()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache"
    cache.mkdir(exist_ok=True)

    from detectron2.data import DatasetCatalog

    import luminet_det  # noqa: F401  (registers DistillRCNN and the datasets)
    from luminet_det.data import register_digit_scenes
    from luminet_det.visualize import plot_ap_chart

    if args.quick:
        prefix = "digit_scenes_quick"
        if f"{prefix}_train" not in DatasetCatalog.list():
            register_digit_scenes(prefix, quick_dataset_spec(), root=cache / "data")
        datasets = {"train": f"{prefix}_train", "val": f"{prefix}_val"}
    else:
        datasets = {"train": "digit_scenes_train", "val": "digit_scenes_val"}
    t0 = time.perf_counter()
    for name in datasets.values():
        DatasetCatalog.get(name)
    logger.info("%s data ready (%.1fs): %s", clock, time.perf_counter() - t0, datasets)

    teacher_weights, teacher_cfg_file, teacher_metrics = get_teacher(args, datasets, cache, clock)

    base = load_cfg(STUDENT_CONFIG, datasets, args.quick, args.student_iters)
    backbone, _ = pretrained_backbone(base, STUDENT_BACKBONE, cache, args.quick, clock)
    students: dict[str, dict] = {loss: {"runs": []} for loss in args.losses}
    for seed in range(args.seeds):
        init = student_init(base, seed, backbone, cache)
        for loss in args.losses:
            cfg = base.clone()
            cfg.MODEL.META_ARCHITECTURE = "DistillRCNN"
            cfg.MODEL.DISTILL.LOSS = loss
            cfg.MODEL.DISTILL.TEACHER_CONFIG = teacher_cfg_file if loss != "none" else ""
            cfg.MODEL.DISTILL.TEACHER_WEIGHTS = teacher_weights if loss != "none" else ""
            cfg.merge_from_list(list(args.student_opts))
            cfg.SEED = seed
            name = f"student {STUDENT_NAME} {loss} seed {seed}"
            logger.info("%s %s: training %d iterations", clock, name, cfg.SOLVER.MAX_ITER)
            model, seconds = train(cfg, init, name, clock, args.log_period)
            metrics = evaluate(model, cfg, out / "eval" / f"{loss}_seed{seed}")
            logger.info(
                "%s %s: AP %.2f AP50 %.2f AP75 %.2f",
                clock,
                name,
                metrics["AP"],
                metrics["AP50"],
                metrics["AP75"],
            )
            students[loss]["runs"].append(
                {
                    "seed": seed,
                    **metrics,
                    "iterations": cfg.SOLVER.MAX_ITER,
                    "seconds": round(seconds, 1),
                }
            )
            student_cfg_dump = cfg.dump()
            del model
    for entry in students.values():
        for m in ("AP", "AP50", "AP75"):
            entry[f"{m}_mean"], entry[f"{m}_std"] = _mean_std(entry["runs"], m)

    perception_info = perception_figure(
        teacher_cfg_file, teacher_weights, datasets["val"], out / "perception.png"
    )
    plot_ap_chart(
        {k: v["runs"] for k, v in students.items()},
        teacher_metrics,
        out / "ap.png",
        title=f"Digit scenes val: {STUDENT_NAME} students of an {TEACHER_NAME} teacher",
    )
    results = {
        "teacher": {**teacher_metrics, "model": TEACHER_NAME},
        "students": students,
        "settings": {
            "seeds": args.seeds,
            "quick": args.quick,
            "datasets": datasets,
            "threads": args.threads,
            "student_opts": list(args.student_opts),
            "total_seconds": round(time.perf_counter() - clock.start, 1),
        },
        "perception_example": perception_info,
    }
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "student_config_last.yaml").write_text(student_cfg_dump)
    table = markdown_table(results)
    (out / "results.md").write_text(table + "\n")
    print("\n" + table + "\n", flush=True)
    logger.info("%s done: %s/{results.json,results.md,ap.png,perception.png}", clock, out)
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
