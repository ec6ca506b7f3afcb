"""The benchmark harness: it runs its smallest setting end to end and its bookkeeping is right.

These tests check that the harness works (every figure present, consistent, JSON on disk), not
the speed of anything.
"""

import dataclasses
import json
import logging
import re

import pytest
import torch
from tool_scripts import load_tool

import luminet_det  # noqa: F401  (registers DistillRCNN)
from luminet_det.benchmark import (
    DEFAULT_VARIANTS,
    BenchModels,
    ReferenceDistillRCNN,
    build_bench_cfgs,
    compute_targets,
    format_table,
    get_preset,
    run_scaling,
    time_interleaved,
)
from luminet_det.benchmark.memory import measure_memory
from luminet_det.benchmark.variants import make_batch


@pytest.fixture(scope="module")
def tool():
    return load_tool("benchmark")


@pytest.fixture(scope="module")
def tiny_result(tool, tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "tiny.json"
    result = tool.main(["--preset", "tiny", "--threads", "1", "--no-memory", "--json", str(path)])
    with open(path) as f:
        on_disk = json.load(f)
    return result, on_disk


def test_tiny_preset_times_every_variant_and_writes_json(tiny_result):
    result, on_disk = tiny_result
    assert on_disk["timing"] == json.loads(json.dumps(result["timing"]))
    assert list(on_disk["timing"]) == list(DEFAULT_VARIANTS)
    for name, t in on_disk["timing"].items():
        assert t["n"] == 2, name
        assert 0 < t["min_ms"] <= t["median_ms"] <= t["max_ms"], name
        assert len(on_disk["timing_raw_s"][name]) == 2
    assert on_disk["settings"]["name"] == "tiny"
    assert on_disk["sampled_rois"] == 32  # tiny model: 32 ROIs per image, 1 image
    assert on_disk["num_classes"] == 3
    assert on_disk["teacher_weights_mib"] > 0
    assert on_disk["environment"]["weights"].startswith("random init")


def test_tiny_preset_reports_ratios_and_targets(tiny_result):
    _, r = tiny_result
    t = {k: v["median_ms"] for k, v in r["timing"].items()}
    assert r["ratios"]["luminet/kd"] == pytest.approx(t["luminet"] / t["kd"])
    assert r["ratios"]["luminet/(student+teacher)"] == pytest.approx(
        t["luminet"] / (t["student"] + t["teacher"])
    )
    targets = r["targets"]
    assert set(targets) == {
        "luminet_vs_kd",
        "luminet_vs_floor",
        "luminet_vs_reference",
        "memory",
        "bf16_teacher",
    }
    for key in ("luminet_vs_kd", "luminet_vs_floor", "luminet_vs_reference"):
        assert isinstance(targets[key]["met"], bool), key
    assert targets["luminet_vs_kd"]["met"] == (r["ratios"]["luminet/kd"] <= 1.02)
    # Not measured in this run: no memory, no bf16 check.
    assert targets["memory"]["met"] is None and r["memory"] is None
    assert targets["bf16_teacher"]["met"] is None


def test_compute_targets_met_and_not_met():
    timing = {
        name: {"median_ms": ms, "min_ms": ms, "max_ms": ms, "n": 1}
        for name, ms in {
            "student": 100.0,
            "teacher": 50.0,
            "kd": 152.0,
            "luminet": 156.0,
            "reference": 170.0,
            "student_box_head": 10.0,
            "teacher_bf16": 25.0,
        }.items()
    }
    memory = {"student": {"peak_bytes": 100}, "teacher": {"peak_bytes": 50}}
    memory["luminet"] = {"peak_bytes": 166}
    ratios, targets = compute_targets(timing, memory, {"loss_fp32": 2.0, "loss_bf16": 2.03}, "cpu")
    assert ratios["luminet/kd"] == pytest.approx(156 / 152)
    assert targets["luminet_vs_kd"]["met"] is False  # 1.026 > 1.02
    assert targets["luminet_vs_floor"]["met"] is True  # 156 / 150 = 1.04
    assert targets["luminet_vs_reference"]["value"] == pytest.approx(14.0)
    assert targets["luminet_vs_reference"]["met"] is True  # 14 ms saved >= 10 ms box head
    assert targets["memory"]["met"] is False  # 166 > 1.1 * 150
    assert targets["bf16_teacher"]["value"] == pytest.approx(0.015)
    assert targets["bf16_teacher"]["met"] is False
    assert targets["bf16_teacher"]["speedup_teacher"] == pytest.approx(2.0)
    assert "| luminet | 156.0 |" in format_table(timing, memory)


def test_time_interleaved_rotates_the_order_and_skips_warmup():
    calls = []
    steps = {name: (lambda n=name: calls.append(n)) for name in ("a", "b", "c")}
    # A handler on the timing logger itself, not pytest's caplog on the root logger: an earlier
    # test may have run code that stops ``luminet_det`` records from propagating (detectron2's
    # ``setup_logger(name="luminet_det")`` in the demo does).
    records: list[logging.LogRecord] = []
    collect = logging.Handler(logging.INFO)
    collect.emit = records.append
    timing_logger = logging.getLogger("luminet_det.benchmark.timing")
    old_level = timing_logger.level
    timing_logger.addHandler(collect)
    timing_logger.setLevel(logging.INFO)
    try:
        times = time_interleaved(steps, n_steps=3, warmup=1)
    finally:
        timing_logger.removeHandler(collect)
        timing_logger.setLevel(old_level)
    # one progress line per round: every variant's step time, elapsed time and ETA
    lines = [r.getMessage() for r in records if "] round " in r.getMessage()]
    assert len(lines) == 4
    assert re.fullmatch(
        r"\[\d\d:\d\d\] round 1/4 \(warm-up\): a \d+\.\d\ds b \S+ c \S+ \| elapsed \d+s, ETA \d+s",
        lines[0],
    )
    assert "round 4/4 (step 3/3)" in lines[3]
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert calls[:6] == ["a", "b", "c", "b", "c", "a"]
    assert all(t >= 0 for v in times.values() for t in v)
    with pytest.raises(ValueError, match="n_steps"):
        time_interleaved(steps, n_steps=0, warmup=0)


def test_memory_child_measures_a_positive_peak():
    settings = dataclasses.replace(get_preset("tiny"), memory_steps=1)
    student_cfg, teacher_cfg = build_bench_cfgs(settings)
    models = BenchModels(student_cfg, teacher_cfg, make_batch(settings, 3))
    mem = measure_memory(settings, ["teacher"], models.batch, models.sampled_proposals(), 1)
    assert set(mem) == {"teacher"}
    assert mem["teacher"]["peak_bytes"] > 0
    assert mem["teacher"]["method"] in ("rss_peak_delta (VmHWM reset)", "ru_maxrss_delta")


def test_teacher_variant_matches_distill_rcnn_teacher_logits():
    settings = get_preset("tiny")
    student_cfg, teacher_cfg = build_bench_cfgs(settings)
    models = BenchModels(student_cfg, teacher_cfg, make_batch(settings, 3))
    logits = models.step_fn("teacher")()
    model = models.step_fn("luminet").model
    boxes = [p.proposal_boxes for p in models.sampled_proposals()]
    expected = model.teacher.roi_logits(models.batch, boxes)
    assert logits.shape == (32, 4)
    torch.testing.assert_close(logits, expected)
    assert model.teacher is models.teacher()  # the benchmark times DistillRCNN's own teacher
    # The reference design is a DistillRCNN subclass that recomputes the student's logits.
    assert type(models.build_student("reference")) is ReferenceDistillRCNN
    assert models.build_student("student").teacher is None


def test_scaling_sweep_rows(tmp_path):
    settings = dataclasses.replace(get_preset("tiny"), steps=1, warmup=0)
    result = run_scaling(settings, images=[1, 2], rois=[16], memory=False, threads=1)
    rows = result["rows"]
    assert [(r["images"], r["rois"]) for r in rows] == [(1, 16), (2, 16)]
    assert [r["sampled_rois"] for r in rows] == [16, 32]
    for r in rows:
        assert r["ratio_floor"] == pytest.approx(
            r["luminet_ms"] / (r["student_ms"] + r["teacher_ms"])
        )


def test_bad_settings_are_refused(tool):
    with pytest.raises(KeyError, match="unknown benchmark preset 'nope'"):
        get_preset("nope")
    with pytest.raises(ValueError, match="images must be >= 1; got 0"):
        dataclasses.replace(get_preset("tiny"), images=0).validate()
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        dataclasses.replace(get_preset("tiny"), device="tpu").validate()
    with pytest.raises(ValueError, match="--images takes one value unless --scaling"):
        tool.main(["--preset", "tiny", "--images", "1", "2"])
    with pytest.raises(KeyError, match="unknown benchmark variant 'bogus'"):
        BenchModels(*build_bench_cfgs(get_preset("tiny")), batch=[]).step_fn("bogus")
    with pytest.raises(ValueError, match="benchmark config 'missing.yaml' not found"):
        build_bench_cfgs(dataclasses.replace(get_preset("tiny"), config="missing.yaml"))
