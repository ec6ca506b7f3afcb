#!/usr/bin/env python
"""Train or evaluate a DistillRCNN (LumiNet / KD / DKD distillation of Faster R-CNN).

Examples::

    # train (checkpoints hold the student only; they load into a stock GeneralizedRCNN)
    python tools/train_net.py --config-file configs/coco/r101_r18_luminet.yaml
    # evaluate the student
    python tools/train_net.py --config-file configs/coco/r101_r18_luminet.yaml \\
        --eval-only MODEL.WEIGHTS output/r101_r18_luminet/model_final.pth
    # evaluate the teacher alone (from MODEL.DISTILL.TEACHER_CONFIG/TEACHER_WEIGHTS)
    python tools/train_net.py --config-file configs/coco/r101_r18_luminet.yaml --eval-teacher
    # 8 GPUs on one machine, through detectron2's launch
    python tools/train_net.py --config-file configs/coco/r101_r18_luminet.yaml --num-gpus 8

Extra datasets in COCO json format are registered with ``--coco-dataset NAME JSON IMAGE_DIR``.

Runs survive a kill: ``--resume`` continues from the last checkpoint bit for bit (optimizer,
scheduler, random states and data position are in every checkpoint; see
``luminet_det.engine``). One run per OUTPUT_DIR (a lock file); a folder of an earlier run is
trained into again only with ``--resume`` or ``--overwrite``. The training data is checked before
step 0 (``DATALOADER.CHECK.*``; ``tools/check_dataset.py`` runs the same check alone).
"""

from __future__ import annotations

import logging
import os

import detectron2.utils.comm as comm
from detectron2.config import CfgNode, get_cfg
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.evaluation import verify_results

from luminet_det import add_distill_config, build_teacher
from luminet_det.config import ZOO_PREFIX, resolve_teacher_config_path
from luminet_det.engine import (
    ExactResumeTrainer,
    attach_project_loggers,
    claim_output_dir,
    load_weights_for_evaluation,
    prepare_output_dir,
    register_coco_datasets,
    restore_setup_rng,
)
from luminet_det.evaluation import build_coco_evaluator

logger = logging.getLogger("luminet_det.train_net")


class Trainer(ExactResumeTrainer):
    """ExactResumeTrainer with COCO evaluation (pycocotools when the compiled one is absent)."""

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_coco_evaluator(dataset_name, output_dir=output_folder)


def needs_teacher(cfg: CfgNode, args) -> bool:
    """Whether this run builds the teacher (training with a loss, or ``--eval-teacher``)."""
    if args.eval_teacher:
        return True
    return not args.eval_only and str(cfg.MODEL.DISTILL.LOSS).lower() != "none"


def setup(args) -> CfgNode:
    """Config from ``args.config_file`` and ``args.opts`` (frozen; nothing written yet).

    When the run builds a teacher, a relative ``MODEL.DISTILL.TEACHER_CONFIG`` is resolved here,
    once, against the config file's folder (then the working directory), and the absolute path
    is what the frozen config (and ``config.yaml`` in ``OUTPUT_DIR``) holds.

    Raises:
        ValueError: when the teacher config is needed and cannot be found.
    """
    cfg = get_cfg()
    add_distill_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    teacher_config = cfg.MODEL.DISTILL.TEACHER_CONFIG
    if needs_teacher(cfg, args) and not teacher_config.startswith(ZOO_PREFIX):
        cfg.MODEL.DISTILL.TEACHER_CONFIG = resolve_teacher_config_path(
            teacher_config, args.config_file
        )
    cfg.freeze()
    return cfg


def student_only_cfg(cfg: CfgNode) -> CfgNode:
    """``cfg`` without the teacher: the student is all that evaluation needs."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DISTILL.LOSS = "none"
    cfg.freeze()
    return cfg


def teacher_eval_cfg(cfg: CfgNode, teacher_cfg: CfgNode) -> CfgNode:
    """The teacher's own config, evaluated on the student's test sets, test sizes and loader."""
    tcfg = teacher_cfg.clone()
    tcfg.defrost()
    tcfg.DATASETS.TEST = cfg.DATASETS.TEST
    tcfg.INPUT.MIN_SIZE_TEST = cfg.INPUT.MIN_SIZE_TEST
    tcfg.INPUT.MAX_SIZE_TEST = cfg.INPUT.MAX_SIZE_TEST
    tcfg.DATALOADER.NUM_WORKERS = cfg.DATALOADER.NUM_WORKERS
    test = cfg.TEST.clone()
    test.defrost()
    test.EXPECTED_RESULTS = []  # those are the student's
    tcfg.TEST = test
    tcfg.OUTPUT_DIR = os.path.join(cfg.OUTPUT_DIR, "teacher_eval")
    tcfg.freeze()
    return tcfg


def run(args, cfg: CfgNode):
    """The command, once OUTPUT_DIR is claimed and logging is set up."""
    if args.eval_teacher:
        teacher = build_teacher(cfg)  # the same teacher object DistillRCNN trains against
        tcfg = teacher_eval_cfg(cfg, teacher.cfg)
        logger.info("Evaluating the teacher %s", tcfg.MODEL.WEIGHTS)
        res = Trainer.test(tcfg, teacher.model)
        if comm.is_main_process():
            verify_results(tcfg, res)
        return res

    if args.eval_only:
        model = Trainer.build_model(student_only_cfg(cfg))
        load_weights_for_evaluation(model, cfg.MODEL.WEIGHTS, cfg.OUTPUT_DIR, resume=args.resume)
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res

    if args.resume:
        restore_setup_rng(cfg.OUTPUT_DIR)  # before anything is built: the same set-up draws
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    # the results of the last evaluation (TEST.EVAL_PERIOD > 0), for programmatic callers
    return getattr(trainer, "_last_eval_results", None)


def main(args):
    register_coco_datasets(args.coco_dataset)
    cfg = setup(args)
    training = not (args.eval_only or args.eval_teacher)
    lock = claim_output_dir(
        cfg.OUTPUT_DIR, resume=args.resume and training, overwrite=args.overwrite, train=training
    )
    try:
        default_setup(cfg, args)
        attach_project_loggers()  # luminet_det / luminet records on the console and in log.txt
        prepare_output_dir(cfg.OUTPUT_DIR, overwrite=args.overwrite and training)
        return run(args, cfg)
    finally:
        if lock is not None:
            lock.release()


def build_parser():
    parser = default_argument_parser()
    parser.add_argument(
        "--eval-teacher",
        action="store_true",
        help="evaluate the teacher (MODEL.DISTILL.TEACHER_CONFIG + TEACHER_WEIGHTS) alone",
    )
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
        help="train from scratch into an OUTPUT_DIR that holds an earlier run (its "
        "last_checkpoint and metrics.json are removed; without this flag such a folder is "
        "refused unless --resume is given)",
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
