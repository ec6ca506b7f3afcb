"""The dense (RetinaNet) benchmark: its smallest setting runs end to end and its bookkeeping is
right.

These tests check the harness (every figure present, ratios computed from the measured times,
targets consistent with their ratios, JSON on disk, bad options refused), never the speed of
anything.
"""

import dataclasses
import json

import pytest
import torch
from detectron2.utils.events import EventStorage
from tool_scripts import load_tool

import luminet_det  # noqa: F401  (registers DistillRetinaNet)
from luminet_det import DistillRetinaNet
from luminet_det.benchmark import get_preset
from luminet_det.benchmark.dense import (
    DENSE_MEMORY_VARIANTS,
    compute_dense_targets,
    dense_settings,
)
from luminet_det.benchmark.dense_memory import measure_dense_memory
from luminet_det.benchmark.dense_variants import (
    ALL_DENSE_VARIANTS,
    DenseBenchModels,
    build_dense_bench_cfgs,
    make_dense_batch,
)

# The tiny RetinaNet (P3-P7, 3 anchors per location) on one 128x160 image:
# 3 * (16*20 + 8*10 + 4*5 + 2*3 + 1*2) anchors.
TINY_ANCHORS = 3 * (320 + 80 + 20 + 6 + 2)


@pytest.fixture(scope="module")
def tool():
    return load_tool("benchmark")


@pytest.fixture(scope="module")
def tiny_models():
    settings = dense_settings(get_preset("tiny"), "retinanet")
    student_cfg, teacher_cfg = build_dense_bench_cfgs(settings, "retinanet")
    return DenseBenchModels(student_cfg, teacher_cfg, make_dense_batch(settings, 3))


@pytest.fixture(scope="module")
def tiny_result(tool, tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "out" / "retinanet-tiny.json"
    argv = ["--family", "retinanet", "--preset", "tiny", "--threads", "1", "--no-memory"]
    result = tool.main([*argv, "--json", str(path)])
    with open(path) as f:
        on_disk = json.load(f)
    return result, on_disk


def test_tiny_retinanet_times_every_variant_and_writes_json(tiny_result):
    result, on_disk = tiny_result
    assert on_disk["timing"] == json.loads(json.dumps(result["timing"]))
    assert on_disk["family"] == "retinanet"
    assert on_disk["settings"]["name"] == "tiny" and on_disk["settings"]["config"] == "tiny"
    assert list(on_disk["timing"]) == list(ALL_DENSE_VARIANTS)
    for name, t in on_disk["timing"].items():
        assert t["n"] == 2, name
        assert 0 < t["min_ms"] <= t["median_ms"] <= t["max_ms"], name
        assert len(on_disk["timing_raw_s"][name]) == 2, name
    assert on_disk["anchors"] == TINY_ANCHORS
    assert on_disk["num_classes"] == 3
    assert on_disk["teacher_weights_mib"] > 0
    assert on_disk["memory"] is None


def test_tiny_retinanet_ratios_come_from_the_measured_medians(tiny_result):
    _, r = tiny_result
    t = {k: v["median_ms"] for k, v in r["timing"].items()}
    ratios = r["ratios"]
    for v in ("kd_sigmoid", "luminet_sigmoid"):
        assert ratios[f"{v}/(student+teacher)"] == pytest.approx(
            t[v] / (t["student"] + t["teacher"])
        )
        assert ratios[f"{v}/student"] == pytest.approx(t[v] / t["student"])
        assert ratios[f"loss_{v}/{v}"] == pytest.approx(t[f"loss_{v}"] / t[v])
        target = r["targets"][f"{v}_vs_floor"]
        assert target["value"] == ratios[f"{v}/(student+teacher)"]
        assert target["met"] == (target["value"] <= 1.05)
    assert ratios["luminet_sigmoid/kd_sigmoid"] == pytest.approx(
        t["luminet_sigmoid"] / t["kd_sigmoid"]
    )
    assert set(r["targets"]) == {
        "kd_sigmoid_vs_floor",
        "luminet_sigmoid_vs_floor",
        "luminet_sigmoid_vs_kd_sigmoid",
        "memory",
    }
    assert r["targets"]["memory"]["met"] is None  # not measured in this run


def test_the_cli_prints_the_table_and_the_floor_target(tool, capsys):
    tool.main(
        ["--family", "retinanet", "--preset", "tiny", "--threads", "1", "--no-memory"]
        + ["--steps", "1", "--warmup", "0", "--variants", "student", "luminet_sigmoid", "teacher"]
    )
    out = capsys.readouterr().out
    assert f"family retinanet, preset tiny (tiny): 1 image(s) of 128x160, {TINY_ANCHORS}" in out
    assert "| luminet_sigmoid |" in out and "| kd_sigmoid |" not in out
    assert "luminet_sigmoid_vs_floor: luminet_sigmoid step / (student step + teacher " in out
    assert "[not measured] kd_sigmoid_vs_floor" in out


def test_compute_dense_targets_met_and_not_met():
    timing = {
        name: {"median_ms": ms, "min_ms": ms, "max_ms": ms, "n": 1}
        for name, ms in {
            "student": 100.0,
            "teacher": 50.0,
            "kd_sigmoid": 160.0,
            "luminet_sigmoid": 156.0,
            "loss_luminet_sigmoid": 3.12,
        }.items()
    }
    memory = {
        "student": {"peak_bytes": 100},
        "teacher": {"peak_bytes": 50},
        "luminet_sigmoid": {"peak_bytes": 166},
    }
    ratios, targets = compute_dense_targets(timing, memory, "cpu")
    assert ratios["kd_sigmoid/(student+teacher)"] == pytest.approx(160 / 150)
    assert targets["kd_sigmoid_vs_floor"]["met"] is False  # 1.067 > 1.05
    assert targets["luminet_sigmoid_vs_floor"]["met"] is True  # 1.04
    assert targets["luminet_sigmoid_vs_kd_sigmoid"]["met"] is True  # 0.975
    assert ratios["loss_luminet_sigmoid/luminet_sigmoid"] == pytest.approx(0.02)
    assert "loss_kd_sigmoid/kd_sigmoid" not in ratios
    assert targets["memory"]["threshold"] == pytest.approx(1.10 * 150 / 2**20)
    assert targets["memory"]["met"] is False  # 166 > 165
    # Without the teacher's time nothing is compared to the floor.
    del timing["teacher"]
    ratios, targets = compute_dense_targets(timing, None, "cpu")
    assert targets["luminet_sigmoid_vs_floor"]["met"] is None
    assert targets["memory"]["met"] is None


def test_variants_distil_with_their_loss_and_share_the_teacher(tiny_models):
    models = tiny_models
    assert models.build_student("student").teacher is None
    for loss in ("kd_sigmoid", "luminet_sigmoid"):
        step = models.step_fn(loss)
        assert isinstance(step.model, DistillRetinaNet)
        assert step.model.teacher is models.teacher()  # the timed teacher is the model's own
        with EventStorage(0):
            losses = step.model(models.batch)
        assert f"loss_{loss}" in losses
        assert torch.isfinite(step()).item()
    logits = models.step_fn("teacher")()
    expected = models.teacher().dense_logits(models.batch)
    assert [tuple(x.shape) for x in logits] == [tuple(x.shape) for x in expected]
    assert logits[0].shape[1] == 3 * 3  # A * K
    labels = models.anchor_labels()
    assert models.num_anchors() == TINY_ANCHORS == sum(len(x) for x in labels)
    assert set(torch.cat(labels).unique().tolist()) <= {-1, 0, 1, 2, 3}
    assert torch.isfinite(models.step_fn("loss_luminet_sigmoid")()).item()


def test_memory_child_measures_a_positive_peak(tiny_models):
    settings = dataclasses.replace(dense_settings(get_preset("tiny"), "retinanet"), memory_steps=1)
    assert "teacher" in DENSE_MEMORY_VARIANTS
    mem = measure_dense_memory(settings, "retinanet", ["teacher"], tiny_models.batch, 1)
    assert set(mem) == {"teacher"}
    assert mem["teacher"]["peak_bytes"] > 0
    assert mem["teacher"]["method"] in ("rss_peak_delta (VmHWM reset)", "ru_maxrss_delta")


def test_presets_map_to_the_retinanet_pair():
    settings = dense_settings(get_preset("cpu-small"), "retinanet")
    assert settings.config == "retinanet_r101_r18.yaml"
    assert (settings.images, settings.height, settings.width) == (2, 320, 427)
    student, teacher = build_dense_bench_cfgs(settings, "retinanet")
    assert student.MODEL.META_ARCHITECTURE == "DistillRetinaNet"
    assert student.MODEL.RESNETS.DEPTH == 18 and teacher.MODEL.RESNETS.DEPTH == 101
    assert teacher.MODEL.META_ARCHITECTURE == "RetinaNet"
    assert student.MODEL.WEIGHTS == "" and teacher.MODEL.WEIGHTS == ""
    assert student.MODEL.DISTILL.WARMUP_ITERS == 0
    assert dense_settings(get_preset("tiny"), "retinanet").config == "tiny"


def test_bad_dense_options_are_refused(tool, tiny_models):
    tiny = dense_settings(get_preset("tiny"), "retinanet")
    with pytest.raises(ValueError, match="rois does not apply to the dense family"):
        build_dense_bench_cfgs(dataclasses.replace(tiny, rois=8), "retinanet")
    with pytest.raises(ValueError, match="unknown dense benchmark family 'yolo'"):
        build_dense_bench_cfgs(tiny, "yolo")
    with pytest.raises(ValueError, match="unknown dense benchmark family 'yolo'"):
        dense_settings(tiny, "yolo")
    with pytest.raises(ValueError, match="needs MODEL.META_ARCHITECTURE 'DistillRetinaNet'"):
        build_dense_bench_cfgs(dataclasses.replace(tiny, config="r101_r18.yaml"), "retinanet")
    with pytest.raises(KeyError, match="unknown dense benchmark variant 'dkd'"):
        tiny_models.step_fn("dkd")
    base = ["--family", "retinanet", "--preset", "tiny", "--threads", "1", "--no-memory"]
    with pytest.raises(KeyError, match=r"unknown variant\(s\) \['dkd'\] for --family retinanet"):
        tool.main([*base, "--variants", "dkd"])
    for flag in (["--scaling"], ["--profile", "student"], ["--teacher-autocast", "bf16"]):
        with pytest.raises(ValueError, match=f"{flag[0]} is not available with --family"):
            tool.main([*base, *flag])
    with pytest.raises(ValueError, match="rois does not apply"):
        tool.main([*base, "--rois", "64"])
