"""Training machinery for detectron2 runs that survive a kill exactly.

Reusable by any detectron2 training entry point (``tools/train_net.py`` uses all of it):

* :class:`ResumableCheckpointer`: atomic checkpoints and ``last_checkpoint``, load reports;
* :class:`ResumableTrainLoader`: detectron2's training stream with a saveable position;
* :class:`ExactResumeHook`: checkpoints that hold optimizer, scheduler, grad scaler, iteration,
  random states and data positions of every process, restored on resume;
* :class:`ExactResumeTrainer`: DefaultTrainer with all of the above and a data check;
* :func:`claim_output_dir`: the run lock and the refusal to retrain a finished run;
* :func:`restore_setup_rng`, :func:`attach_project_loggers`, :func:`load_weights_for_evaluation`,
  :func:`register_coco_datasets`.
"""

from .checkpointer import LAST_CHECKPOINT_FILE, ResumableCheckpointer, WeightsLoadReport
from .coco_datasets import register_coco_datasets
from .logs import attach_project_loggers
from .output_dir import FINAL_CHECKPOINT, claim_output_dir, prepare_output_dir, truncate_metrics
from .resume_hook import ExactResumeHook
from .resume_state import RESUME_STATE_KEY, read_last_resume_state, restore_setup_rng
from .train_loader import ResumableTrainLoader
from .trainer import DATA_CHECK_FILE, ExactResumeTrainer
from .weights_check import MIN_MATCHED_FRACTION, check_weights_fit, load_weights_for_evaluation

__all__ = [
    "ResumableCheckpointer",
    "WeightsLoadReport",
    "LAST_CHECKPOINT_FILE",
    "FINAL_CHECKPOINT",
    "ResumableTrainLoader",
    "ExactResumeHook",
    "ExactResumeTrainer",
    "DATA_CHECK_FILE",
    "RESUME_STATE_KEY",
    "read_last_resume_state",
    "restore_setup_rng",
    "claim_output_dir",
    "prepare_output_dir",
    "truncate_metrics",
    "attach_project_loggers",
    "register_coco_datasets",
    "MIN_MATCHED_FRACTION",
    "check_weights_fit",
    "load_weights_for_evaluation",
]
