"""Give every engine the same tuning effort: a small grid over each engine's own knob, on a tuning seed.

Each engine gets four candidate settings of the knob that defines it (the discount for the two MDP engines,
the score weights for KubeHybrid), run on all five datasets with a seed the evaluation never uses, and
is ranked by mean response time. Run: python benchmarks/tune.py [--reps N]. Last line: JSON with every
candidate's mean RT and failures and the best candidate per engine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Any

import numpy as np

from edgeoff.baselines import KubeHybridSettings
from edgeoff.engines import get_engine
from edgeoff.evaluation.experiment import behaviours, fit_forecasts, load_traces
from edgeoff.evaluation.simulator import Group, simulate_groups
from edgeoff.scenario import default_scenario

TUNING_SEED = 1000  # never the evaluation's seed
DISCOUNTS = (0.0, 0.5, 0.9, 0.96)
KUBE_WEIGHTS = {  # response time, energy, free resources, availability
    "default 0.4/0.3/0.1/0.2": (0.4, 0.3, 0.1, 0.2),
    "time 0.7/0.1/0.0/0.2": (0.7, 0.1, 0.0, 0.2),
    "availability 0.3/0.2/0.0/0.5": (0.3, 0.2, 0.0, 0.5),
    "even 0.25 each": (0.25, 0.25, 0.25, 0.25),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    scenario = default_scenario()
    datasets = tuple(scenario.datasets)
    traces = load_traces(scenario, datasets, None)
    forecasts = fit_forecasts(traces, scenario.simulation.prediction_window_h)
    groups = [
        Group(behaviours(scenario, d, traces, forecasts), (TUNING_SEED, i)) for i, d in enumerate(datasets)
    ]
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()

    def run(engine_name: str, label: str, **kwargs: Any) -> None:
        engine, sc, kube = get_engine(engine_name), scenario, None
        if "discount" in kwargs:
            engine = dataclasses.replace(engine, discount=kwargs["discount"])
        if "weights" in kwargs:
            w = kwargs["weights"]
            kube = KubeHybridSettings(*w)
        runs = simulate_groups(sc, groups, engine, apps=args.apps, reps=args.reps, kubehybrid=kube)
        rt = float(np.mean([r.rt_s.mean() for r in runs]))
        failures = float(np.mean([r.failures.mean() for r in runs]))
        rows.append({"engine": engine_name, "candidate": label, "rt_s": rt, "failures": failures})
        print(f"{engine_name:12s} {label:32s} RT {rt:8.1f} s  failures {failures:6.1f}")

    for name in ("mdp-svr", "efpo"):
        for discount in DISCOUNTS:
            run(name, f"discount {discount:g}", discount=discount)
    for label, weights in KUBE_WEIGHTS.items():
        run("kubehybrid", label, weights=weights)
    best = {
        name: min((r for r in rows if r["engine"] == name), key=lambda r: r["rt_s"])["candidate"]
        for name in ("mdp-svr", "efpo", "kubehybrid")
    }
    print(json.dumps({"seconds": round(time.perf_counter() - started, 1), "best": best, "candidates": rows}))


if __name__ == "__main__":
    main()
