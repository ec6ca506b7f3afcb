"""The pre-registered protocol: equal budgets, defaults first, one warm-up, the selection rule."""

import dataclasses

import pytest

from luminet_det.study.protocol import (
    CLASSIFICATION,
    DETECTION,
    METHODS,
    STUDY_SCENES,
    Setting,
    select_setting,
)


@pytest.mark.parametrize("protocol", [DETECTION, CLASSIFICATION], ids=lambda p: p.task)
def test_every_method_gets_the_same_budget_and_warmup(protocol):
    sizes = {m: len(protocol.grids[m]) for m in METHODS}
    assert len(set(sizes.values())) == 1 and sizes["none"] >= 4
    assert len({s for m in METHODS for s in protocol.grids[m]}) == 4 * sizes["none"]
    assert all(s.method == m for m in METHODS for s in protocol.grids[m])
    assert len({v for _, v in protocol.warmup.values()}) == 1
    assert protocol.warmup_opts("none") == []
    assert not set(protocol.tuning_seeds) & set(protocol.final_seeds)
    assert len(protocol.final_seeds) == 5


def test_detection_grids_start_at_the_project_defaults():
    from detectron2.config import get_cfg

    from luminet_det import add_distill_config

    cfg = add_distill_config(get_cfg())
    cfg.merge_from_file("configs/demo/student_R18_FPN.yaml")
    for m in METHODS:
        first = dict(DETECTION.grids[m][0].overrides)
        for key, value in first.items():
            node = cfg
            for part in key.split(".")[:-1]:
                node = node[part]
            assert node[key.split(".")[-1]] == value, (m, key)
    assert DETECTION.warmup["kd"] == ("MODEL.DISTILL.WARMUP_ITERS", cfg.SOLVER.WARMUP_ITERS)
    assert STUDY_SCENES.splits() == ("train", "val", "test")


def test_classification_grids_start_at_the_config_files():
    from luminet.config import load_config

    for m in METHODS:
        cfg = load_config(f"configs/digit_crops/{m}.yaml")
        for key, value in CLASSIFICATION.grids[m][0].overrides:
            section, name = key.split(".")
            assert cfg[section][name] == value, (m, key)
        if m != "none":
            key, value = CLASSIFICATION.warmup[m]
            assert cfg[key.split(".")[0]].WARMUP == value


def test_selection_takes_the_best_and_breaks_ties_by_grid_order():
    grid = DETECTION.grids["luminet"]
    scores = {s: 10.0 for s in grid}
    assert select_setting(scores, grid) == grid[0]
    scores[grid[2]] = 11.0
    scores[grid[3]] = 11.0
    assert select_setting(scores, grid) == grid[2]
    with pytest.raises(ValueError, match="no val score"):
        select_setting({grid[0]: 1.0}, grid)


def test_unequal_grids_and_shared_seeds_are_refused():
    with pytest.raises(ValueError, match="same size"):
        dataclasses.replace(DETECTION, grids={**DETECTION.grids, "kd": DETECTION.grids["kd"][:2]})
    with pytest.raises(ValueError, match="disjoint"):
        dataclasses.replace(DETECTION, tuning_seeds=(0,))
    with pytest.raises(ValueError, match="same for every distiller"):
        dataclasses.replace(
            DETECTION, warmup={**DETECTION.warmup, "dkd": ("MODEL.DISTILL.WARMUP_ITERS", 0)}
        )


def test_setting_names_and_opts():
    s = Setting("kd", (("MODEL.DISTILL.LOSS_WEIGHT", 2.0), ("MODEL.DISTILL.TEMPERATURE", 1.0)))
    assert s.name == "LOSS_WEIGHT=2, TEMPERATURE=1"
    assert s.opts() == ["MODEL.DISTILL.LOSS_WEIGHT", "2.0", "MODEL.DISTILL.TEMPERATURE", "1.0"]
