"""The pre-registered protocol of the comparison study, as data (docs/study_protocol.md).

Everything that decides what is trained, what is chosen and what is reported lives here, fixed
before any model is evaluated on a test split: the splits, the per-method settings grids (the
same number of settings for every method), the distillation warm-up (the same for every
distiller), the tuning and final seeds, the selection rule, the metrics, the compared pairs and
the bootstrap. ``tools/study.py`` only executes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from luminet_det.demo import DigitScenesSpec

__all__ = [
    "METHODS",
    "STUDY_SCENES",
    "Setting",
    "TaskProtocol",
    "BootstrapPlan",
    "DETECTION",
    "CLASSIFICATION",
    "BOOTSTRAP",
    "COMPARISONS",
    "select_setting",
]

METHODS: tuple[str, ...] = ("none", "kd", "dkd", "luminet")

# Paired differences reported with confidence intervals: (minuend, subtrahend). The first two
# are the study's primary questions; the rest put each method against the student alone.
COMPARISONS: tuple[tuple[str, str], ...] = (
    ("luminet", "dkd"),
    ("luminet", "kd"),
    ("dkd", "kd"),
    ("kd", "none"),
    ("dkd", "none"),
    ("luminet", "none"),
)


@dataclass(frozen=True)
class Setting:
    """One point of a method's settings grid.

    Args:
        method: ``none``, ``kd``, ``dkd`` or ``luminet``.
        overrides: config ``(KEY, VALUE)`` pairs applied on top of the method's base config.
    """

    method: str
    overrides: tuple[tuple[str, object], ...]

    @property
    def name(self) -> str:
        """A short readable label, e.g. ``LOSS_WEIGHT=2, TEMPERATURE=1``."""
        if not self.overrides:
            return "base"
        return ", ".join(f"{k.rsplit('.', 1)[-1]}={v:g}" for k, v in self.overrides)

    def opts(self) -> list[str]:
        """The overrides as a flat ``[KEY, VALUE, ...]`` list of strings."""
        return [str(x) for kv in self.overrides for x in kv]


def _grid(method: str, a: tuple[str, tuple], b: tuple[str, tuple]) -> tuple[Setting, ...]:
    """All pairs of ``a``'s and ``b``'s values, ``a`` varying fastest (the default first)."""
    (key_a, vals_a), (key_b, vals_b) = a, b
    return tuple(Setting(method, ((key_a, x), (key_b, y))) for y in vals_b for x in vals_a)


@dataclass(frozen=True)
class TaskProtocol:
    """The protocol of one task (detection or classification).

    Args:
        task: ``detection`` or ``classification``.
        grids: per method, its settings (equal counts).
        warmup: per distiller, the ``(KEY, VALUE)`` of its distillation warm-up (the same
            length for every distiller).
        tuning_seeds: seeds of the settings search on val.
        final_seeds: seeds of the chosen settings, evaluated on test.
        metrics: reported metrics; the first is the one the selection and the headline use.
    """

    task: str
    grids: dict[str, tuple[Setting, ...]]
    warmup: dict[str, tuple[str, object]]
    tuning_seeds: tuple[int, ...]
    final_seeds: tuple[int, ...]
    metrics: tuple[str, ...]

    def __post_init__(self):
        sizes = {m: len(g) for m, g in self.grids.items()}
        if set(sizes) != set(METHODS) or len(set(sizes.values())) != 1:
            raise ValueError(f"every method needs a grid of the same size; got {sizes}")
        if set(self.tuning_seeds) & set(self.final_seeds):
            raise ValueError("tuning and final seeds must be disjoint")
        if set(self.warmup) != set(METHODS) - {"none"}:
            raise ValueError(f"every distiller needs a warm-up; got {sorted(self.warmup)}")
        if len({v for _, v in self.warmup.values()}) != 1:
            raise ValueError(f"the warm-up must be the same for every distiller: {self.warmup}")

    def warmup_opts(self, method: str) -> list[str]:
        """``[KEY, VALUE]`` of ``method``'s warm-up (empty for the student alone)."""
        return [str(x) for x in self.warmup.get(method, ())]


def select_setting(scores: dict[Setting, float], grid: tuple[Setting, ...]) -> Setting:
    """The pre-registered rule: the setting with the highest mean val score over the tuning
    seeds; ties go to the setting listed first in the grid (the default is listed first).

    Args:
        scores: mean val score of each setting of ``grid``.
        grid: the method's settings, in protocol order.

    Raises:
        ValueError: if a setting of the grid has no score.
    """
    missing = [s.name for s in grid if s not in scores]
    if missing:
        raise ValueError(f"no val score for settings {missing}")
    best = max(scores[s] for s in grid)
    return next(s for s in grid if scores[s] == best)


# Digit scenes with a third split: 600 train / 200 val / 400 test scenes of 128 px; 60% / 20% /
# 20% of each class's digit scans and disjoint photographs per split.
STUDY_SCENES = DigitScenesSpec(num_train=600, num_val=200, num_test=400, test_fraction=0.2)

DETECTION = TaskProtocol(
    task="detection",
    grids={
        # The student alone has no distillation hyperparameter: its budget goes to the learning
        # rate (which the distillers keep at the base 0.01).
        "none": tuple(
            Setting("none", (("SOLVER.BASE_LR", lr),)) for lr in (0.01, 0.005, 0.015, 0.02)
        ),
        "kd": _grid(
            "kd",
            ("MODEL.DISTILL.LOSS_WEIGHT", (1.0, 2.0)),
            ("MODEL.DISTILL.TEMPERATURE", (1.0, 2.0)),
        ),
        "dkd": _grid(
            "dkd",
            ("MODEL.DISTILL.LOSS_WEIGHT", (1.0, 2.0)),
            ("MODEL.DISTILL.DKD.BETA", (0.25, 1.0)),
        ),
        "luminet": _grid(
            "luminet",
            ("MODEL.DISTILL.LOSS_WEIGHT", (1.0, 2.0)),
            ("MODEL.DISTILL.TEMPERATURE", (1.0, 2.0)),
        ),
    },
    # The distillation term ramps up over the same 50 iterations as the learning rate.
    warmup={m: ("MODEL.DISTILL.WARMUP_ITERS", 50) for m in ("kd", "dkd", "luminet")},
    tuning_seeds=(100, 101),
    final_seeds=(0, 1, 2, 3, 4),
    metrics=("AP", "AP50", "AP75"),
)

CLASSIFICATION = TaskProtocol(
    task="classification",
    grids={
        "none": tuple(Setting("none", (("SOLVER.LR", lr),)) for lr in (0.05, 0.1, 0.025, 0.2)),
        "kd": _grid("kd", ("KD.KD_WEIGHT", (0.9, 3.6)), ("KD.TEMPERATURE", (4.0, 2.0))),
        "dkd": _grid("dkd", ("DKD.BETA", (8.0, 2.0)), ("DKD.T", (4.0, 2.0))),
        "luminet": _grid("luminet", ("LUMINET.ALPHA", (8.0, 16.0)), ("LUMINET.T", (4.0, 2.0))),
    },
    # The distillation term ramps up over the first 2 of the 20 epochs.
    warmup={"kd": ("KD.WARMUP", 2), "dkd": ("DKD.WARMUP", 2), "luminet": ("LUMINET.WARMUP", 2)},
    tuning_seeds=(100, 101, 102),
    final_seeds=(0, 1, 2, 3, 4),
    metrics=("top1",),
)


@dataclass(frozen=True)
class BootstrapPlan:
    """The paired two-level bootstrap of the test results.

    Each replicate draws the test images (or crops) with replacement and, independently, the
    final seeds with replacement; every method is scored on the same drawn images and the same
    drawn seeds (a seed fixes the initial student weights and the data order for every method),
    and a difference is the difference of the methods' means over the drawn seeds. The interval
    is the percentile interval of the replicates.

    Args:
        replicates: number of bootstrap replicates.
        level: coverage of the intervals.
        seed: seed of the resampling.
    """

    replicates: int = 2000
    level: float = 0.95
    seed: int = 0


BOOTSTRAP = BootstrapPlan()
