"""`edgeoff evaluate --sweep`: the regime map (edgeoff.evaluation.regime) for one dataset.

The grid is time compression (`--sweep-compressions`, trace seconds per wall second) x detection time
(`--sweep-detections`, seconds); every engine runs in every cell on the same random numbers. Writes
regime.json and regime.png to --out (staged: nothing half-written).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from edgeoff.errors import EvaluationError
from edgeoff.evaluation.experiment import (
    fit_forecasts,
    load_traces,
)
from edgeoff.evaluation.regime import (
    DEFAULT_COMPRESSIONS,
    DEFAULT_DETECTIONS,
    ORACLE,
    REACTIVE,
    regime_cells,
    run_grid,
    write_regime,
)
from edgeoff.files import staged_folder
from edgeoff.scenario import Scenario

__all__ = ["SWEEP_APPS", "SWEEP_REPS", "run_sweep"]

SWEEP_REPS = 20  # per cell and engine, unless --reps says otherwise: the map in a few minutes
SWEEP_APPS = 1000


def run_sweep(args: argparse.Namespace, scenario: Scenario, engines: tuple[str, ...]) -> int:
    started = time.perf_counter()
    datasets = args.datasets or ("DS1",)
    if len(datasets) != 1:
        raise EvaluationError(f"--sweep maps one dataset, got {len(datasets)} ({', '.join(datasets)})")
    dataset = datasets[0]
    scenario.dataset(dataset)
    engines = tuple(dict.fromkeys((*engines, REACTIVE, ORACLE)))  # the bounds the share is measured by
    compressions = args.sweep_compressions or DEFAULT_COMPRESSIONS
    detections = args.sweep_detections or DEFAULT_DETECTIONS
    reps = args.reps if args.reps is not None else SWEEP_REPS
    apps = args.apps if args.apps is not None else SWEEP_APPS
    traces = load_traces(scenario, (dataset,), args.lanl)
    forecasts = fit_forecasts(traces, scenario.simulation.prediction_window_h)
    records = run_grid(
        scenario,
        dataset,
        engines,
        compressions,
        detections,
        traces,
        forecasts,
        apps=apps,
        reps=reps,
        seed=args.seed,
        workers=args.workers,
    )
    cells = regime_cells(records)
    seconds = time.perf_counter() - started
    record: dict[str, Any] = {
        "dataset": dataset,
        "engines": list(engines),
        "time_compressions": list(compressions),
        "detections_s": list(detections),
        "apps": apps,
        "reps": reps,
        "seed": args.seed,
        "seconds": round(seconds, 1),
    }
    with staged_folder(args.out) as staging:
        write_regime(staging, cells, record)
    _print(cells)
    print(f"wrote {args.out}/regime.json and regime.png in {seconds:.1f} s")
    return 0


def _print(cells: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="regime map: share of the reactive-to-oracle gap closed by the best predicting engine"
    )
    for column in ("time compression", "detection (s)", "gap (s)", "best engine", "gap closed"):
        table.add_column(column, justify="right")
    for c in cells:
        share = c["best_predicting"]["gap_closed"]
        table.add_row(
            f"{c['time_compression']:g}",
            f"{c['detection_s']:g}",
            f"{c['gap_s']['mean_s']:.1f} ± {2 * c['gap_s']['se_s']:.1f}",
            str(c["best_predicting"]["engine"] or "-"),
            "no gap" if share is None else f"{share * 100:.0f} %",
        )
    Console().print(table)
