"""`edgeoff evaluate`: the paper's whole evaluation, offline, with report, plots and JSON."""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path
from typing import Any

from edgeoff.commands.provenance import provenance, run_info
from edgeoff.engines import ENGINES, PAPER_ENGINES
from edgeoff.errors import EvaluationError
from edgeoff.evaluation.experiment import (
    ExperimentConfig,
    Forecasts,
    Setting,
    fit_forecasts,
    forecast_errors,
    load_traces,
    run_experiment,
)
from edgeoff.evaluation.report import write_plots, write_report, write_results
from edgeoff.files import check_output, staged_folder
from edgeoff.scenario import load_scenario

PROGRESS_BAR_WIDTH = 12  # the bar, the counts, the time left and the current job fit 80 columns


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _names(text: str) -> tuple[str, ...]:
    names = _split(text)
    if not names:
        raise argparse.ArgumentTypeError(f"no name in {text!r}")
    return names


def _seconds_list(what: str) -> Any:
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(part) for part in _split(text))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a list of {what}: {text!r}") from None
        if not values or not all(math.isfinite(v) and v > 0 for v in values):
            raise argparse.ArgumentTypeError(f"{what} must be positive and finite: {text!r}")
        return values

    return parse


def _whole(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}: {text!r}")
        return value

    return parse


_positive = _whole(1)
_seed = _whole(0)  # numpy's seed sequences take no negative entropy


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="run the paper's evaluation offline",
        description="Simulate every dataset and engine; write results.json, report.md and plots to --out.",
    )
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder (default: results)")
    parser.add_argument("--datasets", type=_names, help="comma-separated (default: all of the scenario)")
    parser.add_argument(
        "--engines",
        type=_names,
        default=PAPER_ENGINES,
        help=f"comma-separated from {', '.join(ENGINES)}, or 'all' (default: the paper's three)",
    )
    parser.add_argument("--apps", type=_positive, default=1000, help="application runs per repetition")
    parser.add_argument("--reps", type=_positive, default=100, help="repetitions")
    parser.add_argument("--seed", type=_seed, default=0, help="seed of the workload and failures (>= 0)")
    parser.add_argument("--scenario", type=Path, help="scenario TOML file (default: the paper's)")
    parser.add_argument(
        "--lanl", type=Path, help="raw LANL CSV (.csv or .csv.xz); default: the packaged table"
    )
    parser.add_argument(
        "--trace-hours",
        type=_seconds_list("hours"),
        help="trace hours per application run, comma-separated; the first is the main setting, the others "
        "sensitivity runs (default: the scenario's, then a tenth of it)",
    )
    parser.add_argument(
        "--detection-s",
        type=_seconds_list("seconds"),
        help="failure detection times in seconds, comma-separated, e.g. 1.5,0.3; the first is the main "
        "setting, "
        "the others sensitivity runs (default: the scenario's, 10 x 150 ms)",
    )
    parser.add_argument("--workers", type=_positive, default=os.cpu_count() or 1, help="processes")
    parser.add_argument(
        "--per-rep",
        action="store_true",
        help="also write every repetition's value (results.json: per_rep in each record), for your own "
        "statistics",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar (it shows the engine and setting being simulated and the time left)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    started_wall = time.time()
    check_output(args.out, folder=True)  # before the long work: a bad --out must not cost a whole run
    scenario = load_scenario(args.scenario)
    datasets = args.datasets or tuple(scenario.datasets)
    for name in datasets:
        scenario.dataset(name)  # unknown dataset: one-line error before anything is written
    engines = tuple(ENGINES) if args.engines == ("all",) else args.engines
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        raise EvaluationError(f"unknown engine(s) {', '.join(unknown)} (known: {', '.join(ENGINES)})")
    hours = args.trace_hours or (
        scenario.simulation.trace_hours_per_app,
        scenario.simulation.trace_hours_per_app / 10,
    )
    detections = args.detection_s or (scenario.detection.detection_s,)
    settings = (
        Setting(hours[0], detections[0]),
        *(Setting(h, detections[0]) for h in hours[1:]),
        *(Setting(hours[0], d) for d in detections[1:]),
    )
    config = ExperimentConfig(
        datasets, engines, settings, args.apps, args.reps, args.seed, args.workers, per_rep=args.per_rep
    )
    traces = load_traces(scenario, datasets, args.lanl)

    forecasts = fit_forecasts(traces, scenario.simulation.prediction_window_h)
    results = _run_with_progress(scenario, config, traces, forecasts, quiet=args.quiet)
    errors = forecast_errors(traces, scenario.simulation.prediction_window_h)
    seconds = time.perf_counter() - started
    config_record = {
        "scenario": str(args.scenario) if args.scenario else "paper (default)",
        "failure_data": str(args.lanl) if args.lanl else "packaged LANL node table",
        "datasets": list(datasets),
        "engines": list(config.engines),
        "apps": config.apps,
        "reps": config.reps,
        "seed": config.seed,
        "settings": [
            {"trace_hours_per_app": s.trace_hours_per_app, "detection_s": s.detection_s, "label": s.label}
            for s in settings
        ],
        "prediction_window_h": scenario.simulation.prediction_window_h,
        "discount": scenario.decision.discount,
        "per_rep": config.per_rep,
    }
    extra = {
        "provenance": provenance(args.scenario, args.lanl),
        "forecast_errors": errors,
        "forecaster_selection": forecasts.selections,
        "run": run_info(started_wall, seconds),
    }
    _write_all(args.out, config_record, results, extra, seconds)
    _print_table(results, settings[0].label)
    print(f"wrote {args.out}/results.json, report.md and plots in {seconds:.1f} s")
    return 0


def _run_with_progress(
    scenario: Any, config: ExperimentConfig, traces: Any, forecasts: Forecasts, *, quiet: bool
) -> list[dict[str, Any]]:
    """The experiment, with a progress bar (unless `quiet`): records done, time left, and the jobs being
    simulated now (one job: an engine at one setting over every dataset, in lockstep)."""
    if quiet:
        return run_experiment(scenario, config, traces, forecasts)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    jobs = [(i, engine) for i in range(len(config.settings)) for engine in config.engines]
    finished: dict[tuple[int, str], int] = {}
    per_job = len(config.datasets)

    def now_running() -> str:
        return running_label(jobs, finished, per_job, config.workers, [s.label for s in config.settings])

    columns = (
        TextColumn("[bold]evaluate"),
        BarColumn(bar_width=PROGRESS_BAR_WIDTH),
        MofNCompleteColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(now_running(), total=len(jobs) * per_job)

        def done(record: dict[str, Any]) -> None:
            key = (int(record["setting"]), str(record["engine"]))
            finished[key] = finished.get(key, 0) + 1
            progress.update(task, advance=1, description=now_running())

        return run_experiment(scenario, config, traces, forecasts, on_done=done)


def running_label(
    jobs: list[tuple[int, str]],
    finished: dict[tuple[int, str], int],
    per_job: int,
    workers: int,
    labels: list[str],
) -> str:
    """The job being simulated now (the first one not finished, in the order the workers take them) and
    how many more run beside it, short enough for 80 columns: "kubehybrid · 1 h/app, 1.5 s detection +1".

    `jobs`: (setting index, engine) in submission order; `finished`: records done per job, of `per_job`.
    """
    running = [job for job in jobs if finished.get(job, 0) < per_job][: max(workers, 1)]
    if not running:
        return ""
    setting, engine = running[0]
    more = f" +{len(running) - 1}" if len(running) > 1 else ""
    return f"{engine} · {labels[setting]}{more}"


def _write_all(
    out: Path,
    config: dict[str, Any],
    results: list[dict[str, Any]],
    extra: dict[str, Any],
    seconds: float,
) -> None:
    """Write everything into a temporary folder beside --out, then move the files in: never half-written."""
    with staged_folder(out) as staging:
        write_results(staging / "results.json", config, results, extra)
        write_report(
            staging / "report.md",
            config,
            results,
            extra["forecast_errors"],
            extra["forecaster_selection"],
            seconds,
        )
        write_plots(staging, results, config)


def _print_table(results: list[dict[str, Any]], label: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"edgeoff evaluate ({label})")
    for column in ("dataset", "engine", "RT (s)", "battery (%)", "availability (%)", "failures/1000"):
        table.add_column(column, justify="right")
    for r in results:
        if r["setting"] != 0:
            continue
        table.add_row(
            r["dataset"],
            r["engine"],
            f"{r['rt_s']['mean']:.1f}",
            f"{r['battery_pct']['mean']:.3f}",
            f"{r['availability_pct']['mean']:.2f}",
            f"{r['failures_per_1000_apps']:.1f}",
        )
    Console().print(table)
