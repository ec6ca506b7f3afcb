"""Training and evaluation of the classification distiller."""

from luminet.rng_state import get_rng_state, set_rng_state

from .comm import get_rank, get_world_size, init_distributed, is_main_process, select_device
from .evaluator import evaluate, topk_correct
from .logger import setup_logging
from .trainer import BEST_FILE, LAST_FILE, METRICS_FILE, RESUME_FILE, ClsTrainer, seed_everything

__all__ = [
    "ClsTrainer",
    "seed_everything",
    "evaluate",
    "setup_logging",
    "topk_correct",
    "get_rng_state",
    "set_rng_state",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_main_process",
    "select_device",
    "RESUME_FILE",
    "LAST_FILE",
    "BEST_FILE",
    "METRICS_FILE",
]
