"""A fair, pre-registered comparison of KD, DKD and LumiNet (``tools/study.py``).

The protocol is data (:mod:`.protocol`); :mod:`.runner` executes it with the detection demo's
stages (:mod:`.detection`) and the classification distiller (:mod:`.classification`), caches
every run (:mod:`.run_cache`), and reports paired differences with two-level bootstrap
intervals (:mod:`.bootstrap`, :mod:`.coco_matches`, :mod:`.report`).
"""

from .protocol import (
    BOOTSTRAP,
    CLASSIFICATION,
    COMPARISONS,
    DETECTION,
    METHODS,
    STUDY_SCENES,
    BootstrapPlan,
    Setting,
    TaskProtocol,
    select_setting,
)
from .run_cache import RunCache, config_hash

__all__ = [
    "BOOTSTRAP",
    "CLASSIFICATION",
    "COMPARISONS",
    "DETECTION",
    "METHODS",
    "STUDY_SCENES",
    "BootstrapPlan",
    "RunCache",
    "Setting",
    "TaskProtocol",
    "config_hash",
    "select_setting",
]
