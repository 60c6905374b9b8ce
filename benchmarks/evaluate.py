"""Time the paper's full experiment: 5 datasets x 3 engines x 100 repetitions x 1000 application runs.

Run: python benchmarks/evaluate.py [--reps N] [--apps N].
Last line: {"apps": n, "seconds": s, "us_per_app": x}.
For scale: the published prototype takes about 3.6 ms per application run on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from edgeoff.engines import PAPER_ENGINES
from edgeoff.evaluation.experiment import (
    ExperimentConfig,
    Setting,
    fit_forecasts,
    load_traces,
    run_experiment,
)
from edgeoff.scenario import default_scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    scenario = default_scenario()
    datasets = tuple(scenario.datasets)
    setting = Setting(scenario.simulation.time_compression, scenario.detection.detection_s)
    config = ExperimentConfig(datasets, PAPER_ENGINES, (setting,), args.apps, args.reps, 0, args.workers)
    started = time.perf_counter()
    traces = load_traces(scenario, datasets, None)
    forecasts = fit_forecasts(traces, scenario.simulation.prediction_window_h)
    results = run_experiment(scenario, config, traces, forecasts)
    seconds = time.perf_counter() - started
    apps = len(results) * args.apps * args.reps
    print(f"{len(results)} (dataset, engine) pairs, {apps} application runs, {args.workers} workers")
    print(
        json.dumps({"apps": apps, "seconds": round(seconds, 2), "us_per_app": round(seconds / apps * 1e6, 2)})
    )


if __name__ == "__main__":
    main()
