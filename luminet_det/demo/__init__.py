"""The demo (``make demo``): distil a Faster R-CNN on real digit scenes, on CPU, in minutes.

Demo code only, kept apart from the library: nothing here is imported by ``import luminet_det``
and nothing is registered at import; :func:`register_digit_scenes` / :func:`ensure_digit_scenes`
register the digit-scene datasets on use. ``tools/demo.py`` is the command; the stages are
public so that other tools (e.g. a hyperparameter study) can reuse them:

* data: :func:`build_digit_scenes`, :func:`register_digit_scenes`, :func:`ensure_digit_scenes`;
* backbone pretraining: :func:`pretrain_resnet`, cached by :func:`pretrained_backbone`;
* teacher training: :func:`get_teacher` (cached); student init: :func:`student_init`;
* training and evaluation: :func:`load_cfg`, :func:`train`, :func:`evaluate`;
* report: :func:`markdown_table`, :func:`perception_figure`, :func:`plot_ap_chart`;
* everything: :func:`run_demo`.
"""

from .catalog import (
    DEFAULT_DIGIT_SCENES,
    ensure_digit_scenes,
    generated_root,
    register_digit_scenes,
)
from .digit_scenes import CLASS_NAMES, DigitScenesSpec, build_digit_scenes, split_digit_indices
from .pretrain import PretrainSpec, pretrain_resnet
from .report import markdown_table, mean_std, perception_figure
from .run import DemoSettings, demo_datasets, run_demo, setup_demo_logging
from .stages import (
    LOSSES,
    STUDENT_BACKBONE,
    STUDENT_CONFIG,
    STUDENT_NAME,
    TEACHER_BACKBONE,
    TEACHER_CONFIG,
    TEACHER_NAME,
    Clock,
    evaluate,
    get_teacher,
    load_cfg,
    pretrained_backbone,
    quick_dataset_spec,
    student_init,
    train,
    train_loader,
)
from .visualize import plot_ap_chart, plot_perception, sample_std

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_DIGIT_SCENES",
    "DigitScenesSpec",
    "build_digit_scenes",
    "ensure_digit_scenes",
    "generated_root",
    "register_digit_scenes",
    "split_digit_indices",
    "PretrainSpec",
    "pretrain_resnet",
    "markdown_table",
    "mean_std",
    "perception_figure",
    "DemoSettings",
    "demo_datasets",
    "run_demo",
    "setup_demo_logging",
    "LOSSES",
    "STUDENT_BACKBONE",
    "STUDENT_CONFIG",
    "STUDENT_NAME",
    "TEACHER_BACKBONE",
    "TEACHER_CONFIG",
    "TEACHER_NAME",
    "Clock",
    "evaluate",
    "get_teacher",
    "load_cfg",
    "pretrained_backbone",
    "quick_dataset_spec",
    "student_init",
    "train",
    "train_loader",
    "plot_ap_chart",
    "plot_perception",
    "sample_std",
]
