"""`edgeoff evaluate`: the paper's whole evaluation, offline, with report, plots and JSON."""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path
from typing import Any

from edgeoff.commands.provenance import provenance, run_info
from edgeoff.commands.sweep import run_sweep
from edgeoff.engines import ENGINES, ISSUE_9_ENGINES, PAPER_ENGINES, get_engine
from edgeoff.errors import EvaluationError
from edgeoff.evaluation.experiment import (
    ExperimentConfig,
    Forecasts,
    Setting,
    fit_forecasts,
    forecast_errors,
    load_replays,
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


def _failure_models(text: str) -> tuple[str, ...]:
    models = _names(text)
    bad = [m for m in models if m not in ("markov", "replay")]
    if not models or bad or len(set(models)) != len(models):
        raise argparse.ArgumentTypeError(f"failure models are markov and/or replay, once each: {text!r}")
    return models


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
        help=f"comma-separated from {', '.join([*ENGINES, *ISSUE_9_ENGINES])}, or 'all' (the engines "
        f"before the DAG-aware ones: {', '.join(ENGINES)}; default: the paper's three)",
    )
    parser.add_argument("--apps", type=_positive, help="application runs per repetition (default 1000)")
    parser.add_argument("--reps", type=_positive, help="repetitions (default 100; 20 per cell with --sweep)")
    parser.add_argument("--seed", type=_seed, default=0, help="seed of the workload and failures (>= 0)")
    parser.add_argument("--scenario", type=Path, help="scenario TOML file (default: the paper's)")
    parser.add_argument(
        "--lanl", type=Path, help="raw LANL CSV (.csv or .csv.xz); default: the packaged table"
    )
    parser.add_argument(
        "--time-compression",
        type=_seconds_list("trace seconds per wall second"),
        help="trace seconds per wall second (how fast sites fail relative to tasks), comma-separated; the "
        "first is the main setting, the others sensitivity runs (default: the scenario's, 3600, then 360)",
    )
    parser.add_argument(
        "--detection-s",
        type=_seconds_list("seconds"),
        help="failure detection times in seconds, comma-separated, e.g. 1.5,0.3; the first is the main "
        "setting, "
        "the others sensitivity runs (default: the scenario's, 10 x 150 ms)",
    )
    parser.add_argument(
        "--failures",
        type=_failure_models,
        default=("markov",),
        help="failure models, comma-separated from markov (each node's two-state chain) and replay (its "
        "real outages of the test part); the first is the main setting (default: markov)",
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="the regime map instead: time compression x detection time for one dataset (default DS1); "
        "writes regime.json and regime.png",
    )
    parser.add_argument(
        "--sweep-compressions",
        type=_seconds_list("trace seconds per wall second"),
        help="the map's time compressions, comma-separated (default 36,180,900,3600,12000,36000)",
    )
    parser.add_argument(
        "--sweep-detections",
        type=_seconds_list("seconds"),
        help="the map's detection times in seconds, comma-separated (default 0.15,0.5,1.5,3)",
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
    for name in engines:
        if name.startswith("dag-"):
            get_engine(name)  # an unknown engine source: its own one-line error
    unknown = [e for e in engines if e not in ENGINES and e not in ISSUE_9_ENGINES]
    if unknown:
        known = ", ".join([*ENGINES, *ISSUE_9_ENGINES])
        raise EvaluationError(f"unknown engine(s) {', '.join(unknown)} (known: {known})")
    if args.sweep:
        sweep_engines = tuple(ENGINES) if args.engines == PAPER_ENGINES else engines
        return run_sweep(args, scenario, sweep_engines)
    args.apps = 1000 if args.apps is None else args.apps
    args.reps = 100 if args.reps is None else args.reps
    hours = args.time_compression or (
        scenario.simulation.time_compression,
        scenario.simulation.time_compression / 10,
    )
    detections = args.detection_s or (scenario.detection.detection_s,)
    models = args.failures
    settings = (
        Setting(hours[0], detections[0], models[0]),
        *(Setting(h, detections[0], models[0]) for h in hours[1:]),
        *(Setting(hours[0], d, models[0]) for d in detections[1:]),
        *(Setting(hours[0], detections[0], f) for f in models[1:]),
    )
    config = ExperimentConfig(
        datasets, engines, settings, args.apps, args.reps, args.seed, args.workers, per_rep=args.per_rep
    )
    traces = load_traces(scenario, datasets, args.lanl)
    # a node with nothing to replay: one-line error before anything is written
    replays = load_replays(scenario, datasets, traces, args.lanl) if "replay" in models else None

    forecasts = fit_forecasts(traces, scenario.simulation.prediction_window_h)
    results = _run_with_progress(scenario, config, traces, forecasts, quiet=args.quiet, replays=replays)
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
            {
                "time_compression": s.time_compression,
                "detection_s": s.detection_s,
                "failures": s.failures,
                "label": s.label,
            }
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
    scenario: Any,
    config: ExperimentConfig,
    traces: Any,
    forecasts: Forecasts,
    *,
    quiet: bool,
    replays: Any = None,
) -> list[dict[str, Any]]:
    """The experiment, with a progress bar (unless `quiet`): records done, time left, and the jobs being
    simulated now (one job: an engine at one setting over every dataset, in lockstep)."""
    if quiet:
        return run_experiment(scenario, config, traces, forecasts, replays=replays)
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

        return run_experiment(scenario, config, traces, forecasts, on_done=done, replays=replays)


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
