#!/usr/bin/env python
"""Train or evaluate a DistillRCNN described by a LazyConfig (Python) config.

The config has detectron2's LazyConfig layout (``model``, ``dataloader.{train,test,evaluator}``,
``optimizer``, ``lr_multiplier``, ``train`` as in the model zoo's ``common/train.py``); its
``model`` is usually ``L(distill_rcnn_from_student)(student=..., teacher=..., loss=...)`` (see
``luminet_det.lazy`` and ``configs/coco/lazy/``).

Examples::

    python tools/lazy_train_net.py --config-file configs/coco/lazy/r101_r18_luminet.py
    # evaluate the student (the teacher is not built)
    python tools/lazy_train_net.py --config-file configs/coco/lazy/r101_r18_luminet.py \\
        --eval-only train.init_checkpoint=output/lazy_r101_r18_luminet/model_final.pth
    # continue a run; 8 GPUs through detectron2's launch; AMP
    python tools/lazy_train_net.py --config-file ... --resume --num-gpus 8 train.amp.enabled=True

Extra datasets in COCO json format are registered with ``--coco-dataset NAME JSON IMAGE_DIR``.
Checkpoints hold the student only (the teacher is outside the module tree) and load strictly
into the stock student model (``model.student``); they are written atomically. One run per
``train.output_dir`` (a lock file); a folder of an earlier run is trained into again only with
``--resume`` or ``--overwrite``. ``--resume`` continues from the last checkpoint as upstream's
``lazyconfig_train_net.py`` does (model, optimizer, scheduler, iteration, grad scaler); unlike
``tools/train_net.py`` it does not restore random states and data position (not bit-exact) and
runs no data check before step 0 (see docs/detection.md).
"""

from __future__ import annotations

import logging

import detectron2.utils.comm as comm
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import (
    AMPTrainer,
    SimpleTrainer,
    default_argument_parser,
    default_setup,
    default_writers,
    hooks,
    launch,
)
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import inference_on_dataset, print_csv_format

from luminet_det.engine import (
    ResumableCheckpointer,
    attach_project_loggers,
    claim_output_dir,
    load_weights_for_evaluation,
    prepare_output_dir,
    register_coco_datasets,
)

logger = logging.getLogger("luminet_det.lazy_train_net")

#: Keys of ``cfg.train`` this tool reads (those of the model zoo's ``common/train.py``).
REQUIRED_TRAIN_KEYS = ("output_dir", "max_iter", "device", "amp", "checkpointer", "eval_period")


def check_config(cfg, training: bool) -> None:
    """Refuse a config that lacks what this run reads, before anything is built.

    Raises:
        ValueError: naming the missing key.
    """
    needed = ["model", "train", "dataloader"] + (["optimizer", "lr_multiplier"] if training else [])
    for key in needed:
        if key not in cfg:
            raise ValueError(f"the LazyConfig has no {key!r}; see configs/coco/lazy/")
    for key in REQUIRED_TRAIN_KEYS:
        if key not in cfg.train:
            raise ValueError(f"the LazyConfig has no train.{key} (see common/train.py)")
    for key in ("train", "test", "evaluator") if training else ("test", "evaluator"):
        if key not in cfg.dataloader:
            raise ValueError(f"the LazyConfig has no dataloader.{key}")


def evaluation_model_node(cfg):
    """The node evaluation builds: the stock student when ``model`` distils (no teacher)."""
    return cfg.model.student if "student" in cfg.model else cfg.model


def load_student_for_evaluation(model, cfg, resume: bool = False) -> str:
    """Load ``train.init_checkpoint`` (with ``resume``: the last checkpoint of
    ``train.output_dir``) into ``model`` and refuse weights that fill less than half of it
    (:func:`luminet_det.engine.load_weights_for_evaluation`).

    Raises:
        ValueError: no weights, or weights that do not fit; naming ``train.init_checkpoint``.
    """
    try:
        return load_weights_for_evaluation(
            model, cfg.train.get("init_checkpoint", ""), cfg.train.output_dir, resume=resume
        )
    except ValueError as e:  # its messages name the yacs key
        raise ValueError(str(e).replace("MODEL.WEIGHTS", "train.init_checkpoint")) from e


def ddp_arguments(cfg) -> dict:
    """``train.ddp`` for ``create_ddp_model``; CPU processes (gloo) take no ``device_ids``."""
    kwargs = dict(cfg.train.get("ddp", {}))
    if str(cfg.train.device).startswith("cpu"):
        kwargs.setdefault("device_ids", None)
    return kwargs


def do_test(cfg, model) -> dict:
    """COCO (or the configured) evaluation of ``model`` on ``dataloader.test``."""
    results = inference_on_dataset(
        model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator)
    )
    if comm.is_main_process():
        print_csv_format(results)
    return results


def do_train(args, cfg) -> dict | None:
    """Train ``cfg.model`` (see the module docstring); returns the last evaluation's results."""
    model = instantiate(cfg.model)
    logger.info("Model:\n%s", model)
    model.to(cfg.train.device)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)
    model = create_ddp_model(model, **ddp_arguments(cfg))
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(
        model, train_loader, optimizer
    )
    checkpointer = ResumableCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    last_eval: dict = {}

    def evaluate():
        last_eval.clear()
        last_eval.update(do_test(cfg, model))
        return last_eval

    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer)
            if comm.is_main_process()
            else None,
            hooks.EvalHook(cfg.train.eval_period, evaluate),
            hooks.PeriodicWriter(
                default_writers(cfg.train.output_dir, cfg.train.max_iter),
                period=cfg.train.get("log_period", 20),
            )
            if comm.is_main_process()
            else None,
        ]
    )
    checkpointer.resume_or_load(cfg.train.get("init_checkpoint", ""), resume=args.resume)
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)
    return dict(last_eval) or None


def main(args) -> dict | None:
    register_coco_datasets(args.coco_dataset)
    cfg = LazyConfig.load(args.config_file)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    training = not args.eval_only
    check_config(cfg, training)
    lock = claim_output_dir(
        cfg.train.output_dir,
        resume=args.resume and training,
        overwrite=args.overwrite and training,
        train=training,
    )
    try:
        default_setup(cfg, args)
        attach_project_loggers()
        prepare_output_dir(cfg.train.output_dir, overwrite=args.overwrite and training)
        if not training:
            model = instantiate(evaluation_model_node(cfg)).to(cfg.train.device)
            load_student_for_evaluation(model, cfg, resume=args.resume)
            return do_test(cfg, create_ddp_model(model, **ddp_arguments(cfg)))
        return do_train(args, cfg)
    finally:
        if lock is not None:
            lock.release()


def build_parser():
    parser = default_argument_parser()
    parser.add_argument(
        "--coco-dataset",
        nargs=3,
        action="append",
        metavar=("NAME", "JSON", "IMAGE_DIR"),
        help="register a COCO-format dataset under NAME before building (repeatable)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="train from scratch into a train.output_dir that holds an earlier run",
    )
    return parser


if __name__ == "__main__":
    args = build_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
