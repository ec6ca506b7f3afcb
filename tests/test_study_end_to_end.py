"""tools/study.py --quick end to end: report, cache reuse, resumption, determinism."""

import json

import pytest
from tool_scripts import load_tool

from luminet_det.study.runner import StudyOptions, run_study

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    opts = StudyOptions(output=root / "out", report_dir=root / "docs", quick=True, jobs=1)
    results = run_study(opts)
    return root, opts, results


def _section(md: str, start: str, end: str) -> str:
    return md[md.index(start) : md.index(end)]


def test_report_and_figures_are_written(first_run):
    root, _, results = first_run
    md = (root / "docs" / "study.md").read_text()
    for heading in ("## Detection", "## Classification", "### Paired differences on test",
                    "## Compute", "luminet - dkd", "study_protocol.md"):  # fmt: skip
        assert heading in md
    for png in ("differences.png", "scores.png"):
        assert (root / "docs" / "study" / png).stat().st_size > 10_000
    dump = json.loads((root / "docs" / "study" / "results.json").read_text())
    assert set(dump) == {"detection", "classification"}
    assert set(dump["detection"]["test"]) == {"none", "kd", "dkd", "luminet"}
    assert len(dump["detection"]["test"]["kd"]["AP"]) == 2  # quick: two final seeds
    for task in ("detection", "classification"):
        for rec in results["tasks"][task]["final"]["records"]:
            assert rec["cpu_seconds"] > 0 and rec["split"] == "test"
        for rec in results["tasks"][task]["tuning"]["records"]:
            assert rec["split"] == "val"
    sel = json.loads((root / "out" / "detection" / "selection.json").read_text())
    assert set(sel) == {"none", "kd", "dkd", "luminet"}


def test_second_invocation_reads_the_cache(first_run):
    root, opts, _ = first_run
    before = (root / "docs" / "study.md").read_text()
    study = load_tool("study")
    study.main(["--quick", "--output", str(opts.output), "--report-dir", str(root / "docs"),
                "--jobs", "1"])  # fmt: skip
    assert (root / "docs" / "study.md").read_text() == before


def test_a_lost_run_is_retrained_identically(first_run):
    root, opts, results = first_run
    before = (root / "docs" / "study.md").read_text()
    runs = opts.output / "detection" / "runs" / "runs"
    rec = results["tasks"]["detection"]["final"]["records"][5]
    (runs / f"{rec['key']}.json").unlink()  # as if the study was interrupted during this run
    cls = results["tasks"]["classification"]["final"]["records"][2]
    (opts.output / "classification" / "runs" / "runs" / f"{cls['key']}.json").unlink()
    again = run_study(
        StudyOptions(output=opts.output, report_dir=root / "docs", quick=True, jobs=2)
    )
    new = again["tasks"]["detection"]["final"]["records"][5]
    assert new["metrics"] == rec["metrics"]  # CPU training is deterministic
    assert again["tasks"]["classification"]["final"]["records"][2]["metrics"] == cls["metrics"]
    after = (root / "docs" / "study.md").read_text()
    assert _section(after, "## Detection", "## Compute") == _section(
        before, "## Detection", "## Compute"
    )


def test_bad_options_are_refused():
    study = load_tool("study")
    with pytest.raises(SystemExit):
        study.parse_args(["--jobs", "0"])
    with pytest.raises(ValueError, match="--phase"):
        StudyOptions(phase="later").validate()
    with pytest.raises(ValueError, match="--tasks"):
        StudyOptions(tasks=("segmentation",)).validate()
