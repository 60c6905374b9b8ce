"""Time the paper's full experiment: 5 datasets x 3 engines x 100 repetitions x 1000 application runs,
then the DAG-aware engines (one plan per application run) on the same datasets.

Run: python benchmarks/evaluate.py [--reps N] [--apps N] [--dag-reps N] [--dag-apps N] [--dag-engines a,b].
Last line: {"apps": n, "seconds": s, "us_per_app": x, "dag_us_per_app": {engine: x}} (us_per_app: the
paper's engines; each DAG-aware engine timed alone on one worker, --dag-reps repetitions of --dag-apps
application runs: the repetitions are the batch the plans are solved in, so 100 as in the evaluation).
For scale: the published prototype takes about 3.6 ms per application run on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from edgeoff.engines import DAG_SOURCES, PAPER_ENGINES
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
    parser.add_argument("--dag-reps", type=int, default=100, help="repetitions per DAG-aware engine")
    parser.add_argument("--dag-apps", type=int, default=200, help="application runs per DAG repetition")
    parser.add_argument(
        "--dag-engines",
        default="dag-belief,dag-reactive",
        help=f"comma-separated dag-<source> ({', '.join(DAG_SOURCES)}); empty: none",
    )
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
    print(f"paper engines: {seconds / apps * 1e6:.2f} us per application run")
    dag_us = {}
    for engine in filter(None, args.dag_engines.split(",")):
        one = ExperimentConfig(datasets, (engine,), (setting,), args.dag_apps, args.dag_reps, 0, 1)
        began = time.perf_counter()
        run_experiment(scenario, one, traces, forecasts)
        per_app = (time.perf_counter() - began) / (len(datasets) * args.dag_apps * args.dag_reps) * 1e6
        dag_us[engine] = round(per_app, 2)
        print(f"{engine}: {per_app:.2f} us per application run (1 worker, {args.dag_reps} x {args.dag_apps})")
    print(
        json.dumps(
            {
                "apps": apps,
                "seconds": round(seconds, 2),
                "us_per_app": round(seconds / apps * 1e6, 2),
                "dag_us_per_app": dag_us,
            }
        )
    )


if __name__ == "__main__":
    main()
