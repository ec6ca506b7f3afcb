"""Execute the pre-registered protocol: tuning on val, selection, final runs on test, bootstrap,
report. Every run is cached (:mod:`.run_cache`), so an interrupted study continues where it
stopped and a finished one rewrites its report from the cache in seconds.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import report
from .bootstrap import (
    BootstrapDraws,
    PairedDifference,
    accuracy_replicates,
    draw_resamples,
    paired_difference,
    seed_mean_replicates,
)
from .protocol import (
    BOOTSTRAP,
    CLASSIFICATION,
    COMPARISONS,
    DETECTION,
    METHODS,
    BootstrapPlan,
    Setting,
    TaskProtocol,
    select_setting,
)
from .run_cache import config_hash

logger = logging.getLogger(__name__)

__all__ = ["StudyOptions", "run_study", "TASKS"]

TASKS = ("detection", "classification")


@dataclass
class StudyOptions:
    """What to run and where.

    Args:
        output: caches and run directories.
        report_dir: where ``study.md``, ``study_results.json`` and the figures go.
        tasks: subset of :data:`TASKS`.
        phase: ``tune`` (tuning runs and the selection only) or ``all``.
        jobs: runs trained at once (worker processes; 1 = in this process). With one thread
            per run, a run's CPU time is its wall time on an idle core, so the time on an idle
            machine can be estimated from the recorded CPU times.
        det_threads: torch threads of each detection run (part of its cache key).
        detection: the detection protocol (tests pass a smaller one).
        classification: the classification protocol.
        bootstrap: the bootstrap plan.
        quick: tiny data and schedules (tests): checks the pipeline, not the methods.
    """

    output: Path = Path("output/study")
    report_dir: Path = Path("docs")
    tasks: Sequence[str] = TASKS
    phase: str = "all"
    jobs: int = 2
    det_threads: int = 1
    detection: TaskProtocol = DETECTION
    classification: TaskProtocol = CLASSIFICATION
    bootstrap: BootstrapPlan = BOOTSTRAP
    quick: bool = False

    def quick_protocols(self) -> StudyOptions:
        """For ``quick``: one setting per method, one tuning seed, two final seeds, 200
        bootstrap replicates (a pipeline check)."""

        def shrink(p: TaskProtocol) -> TaskProtocol:
            return dataclasses.replace(
                p,
                grids={m: g[:1] for m, g in p.grids.items()},
                tuning_seeds=p.tuning_seeds[:1],
                final_seeds=p.final_seeds[:2],
            )

        return dataclasses.replace(
            self,
            detection=shrink(self.detection),
            classification=shrink(self.classification),
            bootstrap=dataclasses.replace(self.bootstrap, replicates=200),
        )

    def validate(self) -> StudyOptions:
        """Raise ``ValueError`` naming the bad option."""
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks:
            raise ValueError(f"--tasks must be a non-empty subset of {TASKS}; got {self.tasks}")
        if self.phase not in ("tune", "all"):
            raise ValueError(f"--phase must be 'tune' or 'all'; got {self.phase!r}")
        if self.jobs < 1 or self.det_threads < 1:
            raise ValueError(
                f"--jobs and --det-threads must be >= 1; got {self.jobs}, {self.det_threads}"
            )
        return self


# ---------------------------------------------------------------------- studies and workers
def _make_study(task: str, opts: StudyOptions):
    if task == "detection":
        from .detection import DetectionStudy

        study = DetectionStudy(
            opts.output / "detection", opts.detection, threads=opts.det_threads, quick=opts.quick
        )
        study.prepare()
        return study
    from .classification import ClassificationStudy

    return ClassificationStudy(opts.output / "classification", opts.classification, opts.quick)


_WORKER_STUDY = None


def _init_worker(task: str, opts: StudyOptions) -> None:
    global _WORKER_STUDY
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s]: %(message)s")
    logging.getLogger("detectron2").setLevel(logging.WARNING)
    logging.getLogger("fvcore").setLevel(logging.WARNING)
    logging.getLogger("detectron2.data.datasets.coco").setLevel(logging.ERROR)
    _WORKER_STUDY = _make_study(task, opts)


def _worker_run(setting: Setting, seed: int, split: str) -> dict:
    return _WORKER_STUDY.run(setting, seed, split)


def _execute(
    study, task: str, opts: StudyOptions, runs: Sequence[tuple[Setting, int, str]], label: str
) -> list[dict]:
    """Run every missing run of ``runs`` (in worker processes when ``opts.jobs > 1``); return
    all records in the order of ``runs``."""
    todo = [r for r in runs if study.cached_run(*r) is None]
    logger.info("%s %s: %d runs, %d cached, %d to train", task, label, len(runs),
                len(runs) - len(todo), len(todo))  # fmt: skip
    start = time.perf_counter()

    def progress(done: int) -> None:
        elapsed = time.perf_counter() - start
        eta = elapsed / done * (len(todo) - done)
        logger.info("%s %s: %d/%d runs trained, %.0f s elapsed, ETA %.0f s",
                    task, label, done, len(todo), elapsed, eta)  # fmt: skip

    if todo and opts.jobs == 1:
        for i, r in enumerate(todo, 1):
            study.run(*r)
            progress(i)
        _log_phase(study, label, opts.jobs, len(todo), time.perf_counter() - start)
    elif todo:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=min(opts.jobs, len(todo)),
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(task, opts),
        ) as pool:
            futures = [pool.submit(_worker_run, *r) for r in todo]
            for i, fut in enumerate(as_completed(futures), 1):
                fut.result()  # re-raises a worker's error
                progress(i)
        _log_phase(study, label, opts.jobs, len(todo), time.perf_counter() - start)
    return [study.cached_run(*r) for r in runs]


def _log_phase(study, label: str, jobs: int, trained: int, seconds: float) -> None:
    """Append the elapsed time of one invocation of a phase to the task's phase log."""
    log = study.cache.load("log", "phases") or {"entries": []}
    entry = {"phase": label, "jobs": jobs, "runs_trained": trained, "elapsed": round(seconds, 1)}
    study.cache.store("log", "phases", {"entries": [*log["entries"], entry]})


def _phase_elapsed(study, label: str) -> float:
    log = study.cache.load("log", "phases") or {"entries": []}
    return sum(e["elapsed"] for e in log["entries"] if e["phase"] == label)


# ---------------------------------------------------------------------- one task
def _tune(study, task: str, opts: StudyOptions, protocol: TaskProtocol) -> dict:
    metric = protocol.metrics[0]
    runs = [
        (s, seed, "val")
        for seed in protocol.tuning_seeds
        for m in METHODS
        for s in protocol.grids[m]
    ]
    records = _execute(study, task, opts, runs, "tuning on val")
    by_setting: dict[Setting, list[float]] = {}
    for (s, _, _), rec in zip(runs, records):
        by_setting.setdefault(s, []).append(rec["metrics"][metric])
    chosen = {
        m: select_setting({s: float(np.mean(by_setting[s])) for s in g}, g)
        for m, g in protocol.grids.items()
    }
    rows = [
        {"method": m, "setting": s.name, "scores": by_setting[s], "chosen": s == chosen[m]}
        for m in METHODS
        for s in protocol.grids[m]
    ]
    return {"chosen": chosen, "rows": rows, "records": records}


def _replicates_detection(
    study, record: dict, draws: BootstrapDraws, plan: BootstrapPlan
) -> tuple[np.ndarray, float]:
    """(B, 3) AP/AP50/AP75 of one model on each image resample (cached), and the seconds it
    took to compute them the first time."""
    from .coco_matches import ap_of_weighted_images

    key = config_hash(
        {"run": record["key"], "replicates": plan.replicates, "seed": plan.seed, "v": 1}
    )
    cached = study.cache.load("bootstrap", key)
    if cached is not None:
        return study.cache.load_arrays("bootstrap", key)["ap"], cached["seconds"]
    t0 = time.process_time()
    ap = ap_of_weighted_images(study.matches(record), draws.item_counts)
    seconds = round(time.process_time() - t0, 2)
    study.cache.store("bootstrap", key, {"run": record["key"], "seconds": seconds}, {"ap": ap})
    return ap, seconds


def _final(study, task: str, opts: StudyOptions, protocol: TaskProtocol, chosen: dict) -> dict:
    runs = [(chosen[m], seed, "test") for m in METHODS for seed in protocol.final_seeds]
    records = _execute(study, task, opts, runs, "final runs on test")
    seeds = list(protocol.final_seeds)
    by_method = {m: records[i * len(seeds) : (i + 1) * len(seeds)] for i, m in enumerate(METHODS)}
    plan = opts.bootstrap
    bootstrap_seconds = 0.0
    if task == "detection":
        teacher = study.teacher_run("test")
        metrics = list(protocol.metrics)
        num_items = len(study.matches(teacher).image_ids)
        draws = draw_resamples(num_items, len(seeds), plan.replicates, plan.seed)
        reps = {}
        for m, recs in by_method.items():
            per_seed = [_replicates_detection(study, r, draws, plan) for r in recs]
            reps[m] = np.stack([ap for ap, _ in per_seed])  # (S, B, 3)
            bootstrap_seconds += sum(sec for _, sec in per_seed)
        teacher_row = {"name": study.teacher_name, **{k: teacher["metrics"][k] for k in metrics}}
    else:
        teacher = study.teacher_run()
        metrics = ["top1"]
        correct = {m: [study.correct(r) for r in recs] for m, recs in by_method.items()}
        num_items = len(correct[METHODS[0]][0])
        draws = draw_resamples(num_items, len(seeds), plan.replicates, plan.seed)
        reps = {
            m: np.stack([accuracy_replicates(c, draws.item_counts) for c in cs])[..., None]
            for m, cs in correct.items()
        }  # (S, B, 1)
        teacher_row = {"name": teacher["model"], "top1": teacher["metrics"]["test_top1"]}
    full = {
        m: {k: [r["metrics"][k] for r in recs] for k in metrics} for m, recs in by_method.items()
    }
    diffs: dict[str, list[PairedDifference]] = {}
    for j, k in enumerate(metrics):
        diffs[k] = [
            paired_difference(
                a, b, full[a][k], full[b][k], reps[a][..., j], reps[b][..., j], draws, plan.level
            )
            for a, b in COMPARISONS
        ]
    tail = 100.0 * (1.0 - plan.level) / 2.0
    cis = {
        m: tuple(np.percentile(seed_mean_replicates(reps[m][..., 0], draws.seed_index),
                               [tail, 100.0 - tail]))
        for m in METHODS
    }  # fmt: skip
    return {
        "records": records,
        "values": full,
        "diffs": diffs,
        "cis": cis,
        "teacher": teacher_row,
        "teacher_record": teacher,
        "metrics": metrics,
        "num_items": num_items,
        "bootstrap_seconds": bootstrap_seconds,
    }


# ---------------------------------------------------------------------- compute accounting
def _compute_rows(task: str, study, tuning: dict, final: dict | None, jobs: int) -> list[dict]:
    """Per part: runs, summed run wall and CPU seconds, elapsed wall, and the idle estimate
    (one thread per run: CPU seconds spread over the parallel jobs)."""
    rows = []
    if task == "detection":
        setup = study.setup_record()
        rows.append({"part": "set-up: data, backbone pretraining, teacher", "runs": 1,
                     "wall": setup["wall_seconds"], "cpu": setup["cpu_seconds"],
                     "elapsed": setup["wall_seconds"], "idle": setup["cpu_seconds"]})  # fmt: skip
    else:
        t = study.teacher_run()
        rows.append({"part": "teacher", "runs": 1, "wall": t["wall_seconds"],
                     "cpu": t["cpu_seconds"], "elapsed": t["wall_seconds"],
                     "idle": t["cpu_seconds"]})  # fmt: skip
    for label, recs in (("tuning on val", tuning["records"]),
                        ("final runs on test", final["records"] if final else [])):  # fmt: skip
        if recs:
            cpu = sum(r["cpu_seconds"] for r in recs)
            rows.append({"part": label, "runs": len(recs),
                         "wall": sum(r["wall_seconds"] for r in recs), "cpu": cpu,
                         "elapsed": _phase_elapsed(study, label),
                         "idle": max(cpu / jobs, max(r["cpu_seconds"] for r in recs))})  # fmt: skip
    if task == "detection" and final:
        t = final["teacher_record"]
        rows.append({"part": "teacher on test", "runs": 1, "wall": t["wall_seconds"],
                     "cpu": t["cpu_seconds"], "elapsed": t["wall_seconds"],
                     "idle": t["cpu_seconds"]})  # fmt: skip
    if final and final["bootstrap_seconds"]:
        b = final["bootstrap_seconds"]
        rows.append({"part": "bootstrap: AP of every image resample", "runs": 0, "wall": b,
                     "cpu": b, "elapsed": b, "idle": b})  # fmt: skip
    return rows


# ---------------------------------------------------------------------- entry point
def run_study(opts: StudyOptions, write: Callable[[dict], None] | None = None) -> dict:
    """Run (or read from the cache) every part of the protocol and write the report.

    Args:
        opts: what to run.
        write: called with the results instead of the default report writer (tests).

    Returns:
        The results: per task its tuning table rows, choices, final values, differences and
        compute rows.
    """
    opts.validate()
    if opts.quick:
        opts = opts.quick_protocols()
    results: dict = {"tasks": {}}
    for task in opts.tasks:
        protocol = opts.detection if task == "detection" else opts.classification
        study = _make_study(task, opts)
        if task == "classification":
            study.teacher_run()  # the distillers need it; trained once, cached
        tuning = _tune(study, task, opts, protocol)
        selection = {m: s.name for m, s in tuning["chosen"].items()}
        logger.info("%s: chosen on val: %s", task, selection)
        sel_path = opts.output / task / "selection.json"
        sel_path.parent.mkdir(parents=True, exist_ok=True)
        sel_path.write_text(json.dumps(selection, indent=1))
        final = None
        if opts.phase == "all":
            final = _final(study, task, opts, protocol, tuning["chosen"])
        results["tasks"][task] = {
            "protocol": protocol,
            "tuning": tuning,
            "final": final,
            "compute": _compute_rows(task, study, tuning, final, opts.jobs),
        }
    if opts.phase == "all":
        (write or (lambda r: write_report(r, opts)))(results)
    return results


def _task_section(task: str, res: dict, fig_prefix: str) -> list[str]:
    protocol: TaskProtocol = res["protocol"]
    final = res["final"]
    metric = protocol.metrics[0]
    unit = "AP points" if task == "detection" else "points of"
    name = "AP" if task == "detection" else "top-1"
    out = [f"## {task.capitalize()}", ""]
    out += [f"### Tuning on val ({len(protocol.tuning_seeds)} seed(s) per setting)", ""]
    out += [report.tuning_table(res["tuning"]["rows"], protocol.tuning_seeds, metric), ""]
    seeds = ", ".join(str(s) for s in protocol.final_seeds)
    out += [f"### Test: the chosen settings, seeds {seeds}", ""]
    rows = [
        {"method": m, "setting": res["tuning"]["chosen"][m].name, "values": final["values"][m],
         "ci": final["cis"][m]}
        for m in METHODS
    ]  # fmt: skip
    out += [report.final_table(rows, final["metrics"], final["teacher"], final["metrics"][0]), ""]
    out += [
        f"Students: mean ± sample std over the {len(protocol.final_seeds)} seeds; the interval "
        f"is the two-level bootstrap of the mean ({final['num_items']} test items).",
        "",
        "### Paired differences on test",
        "",
        report.differences_table(final["diffs"]),
        "",
        report.reading(final["diffs"][final["metrics"][0]], name, unit),
        "",
        report.per_seed_table(
            {m: final["values"][m][final["metrics"][0]] for m in METHODS},
            protocol.final_seeds,
            final["metrics"][0],
        ),
        "",
    ]
    return out


def _compute_section(tasks: dict, jobs: int) -> list[str]:
    lines = [
        "## Compute",
        "",
        "| task | part | runs | elapsed wall s | summed run wall s | CPU s | idle-machine "
        "estimate s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    totals = dict.fromkeys(("elapsed", "wall", "cpu", "idle"), 0.0)
    for task, res in tasks.items():
        for r in res["compute"]:
            lines.append(
                f"| {task} | {r['part']} | {r['runs']} | {r['elapsed']:.0f} | {r['wall']:.0f} "
                f"| {r['cpu']:.0f} | {r['idle']:.0f} |"
            )
            for k in totals:
                totals[k] += r[k]
    lines += [
        f"| all | total | | {totals['elapsed']:.0f} | {totals['wall']:.0f} | "
        f"{totals['cpu']:.0f} | {totals['idle']:.0f} |",
        "",
        f"Measured: {totals['elapsed'] / 3600:.2f} h elapsed and {totals['cpu'] / 3600:.2f} h of "
        f"process CPU time, on a 2-core machine shared with other jobs. Every run uses one "
        f"thread and {jobs} runs train at once, so on an idle 2-core machine a run's wall time "
        f"is about its CPU time and the study takes about {totals['idle'] / 3600:.2f} h "
        "(the last column: set-up and teacher sequential, runs spread over the parallel jobs). "
        "A second `python tools/study.py` reads every run from the cache and rewrites this page "
        "in seconds.",
        "",
    ]
    return lines


def write_report(results: dict, opts: StudyOptions) -> None:
    """``study.md``, ``study_results.json`` and the figures under ``opts.report_dir``."""
    out_dir = Path(opts.report_dir)
    fig_dir = out_dir / "study"
    fig_dir.mkdir(parents=True, exist_ok=True)
    tasks = results["tasks"]
    not_run = [task for task in ("detection", "classification") if task not in tasks]
    command = "python tools/study.py" + (f" --tasks {' '.join(tasks)}" if not_run else "")
    lines = [
        "# Study: KD, DKD and LumiNet compared under one pre-registered protocol",
        "",
        f"Generated by `{command}` from its run cache; the protocol (splits, grids, "
        "warm-up, selection rule, seeds, metrics, bootstrap) is in "
        "[study_protocol.md](study_protocol.md) and was committed before any test evaluation.",
        "",
    ]
    if not_run:
        lines += [
            f"**Not in this report: the {' and '.join(not_run)} part of the protocol** (not run "
            "yet; `python tools/study.py` runs every part and rewrites this page).",
            "",
        ]
    lines += [
        "![paired differences](study/differences.png)",
        "",
        "![test scores](study/scores.png)",
        "",
    ]
    panels_d, panels_s = [], []
    for task, res in tasks.items():
        lines += _task_section(task, res, "study")
        final = res["final"]
        k = final["metrics"][0]
        label = "AP (points)" if task == "detection" else "top-1 accuracy (points)"
        panels_d.append((f"{task}: {k} on test", f"difference in {label}", final["diffs"][k]))
        panels_s.append(
            (
                f"{task}: {k} on test",
                label.replace(" (points)", " (%)"),
                {m: final["values"][m][k] for m in METHODS},
                final["cis"],
                final["teacher"][k],
            )
        )
    lines += _compute_section(tasks, opts.jobs)
    report.plot_differences(panels_d, fig_dir / "differences.png")
    report.plot_scores(panels_s, fig_dir / "scores.png")
    (out_dir / "study.md").write_text("\n".join(lines))
    dump = {
        task: {
            "selection": {m: s.name for m, s in res["tuning"]["chosen"].items()},
            "tuning": res["tuning"]["rows"],
            "test": res["final"]["values"],
            "teacher": res["final"]["teacher"],
            "differences": {
                k: [dataclasses.asdict(d) for d in ds] for k, ds in res["final"]["diffs"].items()
            },
            "compute": res["compute"],
        }
        for task, res in tasks.items()
    }
    (out_dir / "study" / "results.json").write_text(json.dumps(dump, indent=1))
    logger.info("Wrote %s", out_dir / "study.md")
