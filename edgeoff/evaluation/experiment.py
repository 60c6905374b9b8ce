"""The paper's experiment: every (dataset, engine) pair simulated with the same seeds, summarised.

Imperative shell around the pure simulator: builds each site's failure behaviour from the LANL node table,
fits one availability forecaster per node on the first 80 % of its daily series, runs the pairs in parallel
processes (each result depends only on the seed, never on scheduling) and summarises them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeoff.engines import get_engine
from edgeoff.errors import EvaluationError, ScenarioError, TraceError
from edgeoff.evaluation.forecasts import WindowForecaster
from edgeoff.evaluation.paired import REPS_KEY, add_paired
from edgeoff.evaluation.simulator import Group, RunResult, SiteBehaviour, simulate_groups
from edgeoff.forecasting import (
    LastValueForecaster,
    MTTFForecaster,
    SVRForecaster,
    TrainingMeanForecaster,
    default_candidates,
    select_forecaster,
    walk_forward,
)
from edgeoff.scenario import SITE_TYPES, Scenario
from edgeoff.traces import (
    NodeTrace,
    ReplayNode,
    daily_availability,
    load_node_table,
    load_replay_table,
    node_trace,
    read_failure_records,
    replay_node,
    training_chain,
)

__all__ = [
    "ExperimentConfig",
    "Forecasts",
    "Setting",
    "behaviours",
    "fit_forecasts",
    "forecast_errors",
    "load_replays",
    "load_traces",
    "run_experiment",
    "summarise",
]

TRAIN_FRACTION = 0.8  # the paper's chronological 80/20 split
SVR_LAGS = 7  # one week of daily windows


@dataclass(frozen=True)
class Setting:
    """What varies between the main run and the sensitivity runs."""

    time_compression: float
    detection_s: float
    failures: str = "markov"  # or "replay": the nodes' real outages of their test parts

    @property
    def label(self) -> str:
        label = f"time compression {self.time_compression:g}, {self.detection_s:g} s detection"
        return label if self.failures == "markov" else f"{label}, {self.failures} failures"

    def apply(self, scenario: Scenario) -> Scenario:
        """The scenario with this setting (the detector keeps its number of missed heartbeats)."""
        heartbeat_ms = self.detection_s * 1000.0 / scenario.detection.missed_heartbeats
        return scenario.model_copy(
            update={
                "simulation": scenario.simulation.model_copy(
                    update={"time_compression": self.time_compression}
                ),
                "detection": scenario.detection.model_copy(update={"heartbeat_ms": heartbeat_ms}),
            }
        )


@dataclass(frozen=True)
class ExperimentConfig:
    datasets: tuple[str, ...]
    engines: tuple[str, ...]
    settings: tuple[Setting, ...]  # the first is the main setting
    apps: int = 1000
    reps: int = 100
    seed: int = 0
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    per_rep: bool = False  # also record every repetition's value (`per_rep` in each record)


def load_traces(scenario: Scenario, datasets: Sequence[str], lanl: Path | None) -> dict[str, NodeTrace]:
    """Node traces of every node the datasets use: from the raw LANL file, or the packaged table."""
    nodes = sorted({node for name in datasets for node in scenario.dataset(name).values()})
    if lanl is None:
        table = load_node_table()
        scenario.require_nodes(datasets, table, "the packaged LANL node table; give a raw file with --lanl")
        return {n: table[n] for n in nodes}
    records = read_failure_records(lanl)
    out = {}
    for n in nodes:
        try:
            out[n] = node_trace(records, n)
        except TraceError as exc:
            raise ScenarioError(
                f"{scenario.source}: {scenario.node_field(datasets, n)}: {exc} in {lanl}"
            ) from None
    return out


@dataclass(frozen=True)
class Forecasts:
    """Per node: fitted forecasters by engine availability source, and the per-site selection record."""

    by_node: dict[str, dict[str, WindowForecaster]]
    selections: list[dict[str, Any]]


def fit_forecasts(traces: dict[str, NodeTrace], window_h: float) -> Forecasts:
    """Fit the paper's SVR and select a forecaster per node, both on the first 80 % of its daily series."""
    by_node: dict[str, dict[str, WindowForecaster]] = {}
    selections = []
    for node, trace in sorted(traces.items()):
        daily = daily_availability(trace)
        train = daily[: int(daily.size * TRAIN_FRACTION)]
        selection = select_forecaster(train, default_candidates(trace.mttf_h, window_h), train_fraction=1.0)
        by_node[node] = {"svr": SVRForecaster(SVR_LAGS).fit(train), "selected": selection.forecaster}
        inner = selection.inner_errors[selection.name]
        selections.append(
            {"node": node, "forecaster": selection.name, "inner_mae": inner.mae, "reason": selection.reason}
        )
    return Forecasts(by_node, selections)


def load_replays(
    scenario: Scenario, datasets: Sequence[str], traces: dict[str, NodeTrace], lanl: Path | None
) -> dict[str, ReplayNode]:
    """Each node's test part for `--failures replay`: the packaged table, or derived from the raw file.

    Raises TraceError for a node without an outage that starts in its test part (nothing to replay).
    """
    nodes = sorted({node for name in datasets for node in scenario.dataset(name).values()})
    if lanl is None:
        table = load_replay_table()
        missing = [n for n in nodes if n not in table]
        if missing:
            raise TraceError(f"no replay test part for node(s) {', '.join(missing)} in the packaged table")
        return {n: table[n] for n in nodes}
    return {n: replay_node(traces[n]) for n in nodes}


def behaviours(
    scenario: Scenario,
    dataset: str,
    traces: dict[str, NodeTrace],
    forecasts: Forecasts,
    replays: dict[str, ReplayNode] | None = None,
) -> dict[int, SiteBehaviour]:
    """Each site's failure behaviour; with `replays`, the chain the engines use is the one fitted on the
    training part (the outages that ended before the test part starts) and the failures are replayed."""
    out = {}
    for site, node in scenario.dataset(dataset).items():
        trace = traces[node]
        daily = daily_availability(trace)
        history = daily[: int(daily.size * TRAIN_FRACTION)]
        mttf, mttr, replay = trace.mttf_h, trace.mttr_h, None
        if replays is not None:
            chain = training_chain(trace)
            if chain is not None:
                mttf, mttr = chain.mttf_h, chain.mttr_h
            replay = replays[node]
        out[scenario.site_ids.index(site)] = SiteBehaviour(
            mttf, mttr, forecasts.by_node[node], history, replay
        )
    return out


def forecast_errors(traces: dict[str, NodeTrace], window_h: float) -> list[dict[str, Any]]:
    """Walk-forward error of the SVR and naive forecasts per node (daily series, 80/20 chronological)."""
    rows = []
    for node, trace in sorted(traces.items()):
        daily = daily_availability(trace)
        for forecaster in (
            SVRForecaster(SVR_LAGS),
            LastValueForecaster(),
            TrainingMeanForecaster(),
            MTTFForecaster(trace.mttf_h, window_h),
        ):
            bt = walk_forward(daily, forecaster, train_fraction=TRAIN_FRACTION)
            rows.append(
                {"node": node, "forecaster": bt.name, "mae": bt.mae, "rmse": bt.rmse, "days": daily.size}
            )
    return rows


def summarise(
    scenario: Scenario, dataset: str, engine: str, apps: int, run: RunResult, *, per_rep: bool = False
) -> dict[str, Any]:
    """The results.json record of one (dataset, engine) pair; means and standard deviations over reps, and
    with `per_rep` every repetition's value: `per_rep` {rt_s, battery_pct, availability_pct, failures},
    lists of length reps in repetition order."""

    def stat(x: np.ndarray) -> dict[str, float]:
        return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else 0.0}

    battery = (scenario.power.battery_j - run.energy_j) / scenario.power.battery_j * 100.0
    attempts = np.maximum(run.offload_attempts, 1)
    availability = np.where(run.offload_attempts > 0, (1.0 - run.failures / attempts) * 100.0, 100.0)
    types = np.array(scenario.site_types)
    placed = run.placements.sum(axis=0)
    total = max(int(placed.sum()), 1)
    record: dict[str, Any] = {
        "dataset": dataset,
        "engine": engine,
        "rt_s": stat(run.rt_s),
        "battery_pct": stat(battery),
        "availability_pct": stat(availability),
        "failures_per_1000_apps": float(run.failures.mean() / apps * 1000.0),
        "distribution_pct": {t: float(placed[types == t].sum() / total * 100.0) for t in SITE_TYPES},
        "offloads_per_1000_apps": float(run.offload_attempts.mean() / apps * 1000.0),
        "no_feasible_solution": int(run.infeasible.sum()),
        "site_availability_pct": {
            sid: float(run.true_availability[:, i].mean() * 100.0) for i, sid in enumerate(scenario.site_ids)
        },
        "believed_availability_pct": {
            sid: float(run.predicted_availability[:, i].mean() * 100.0)
            for i, sid in enumerate(scenario.site_ids)
        },
    }
    if per_rep:
        record["per_rep"] = {
            "rt_s": run.rt_s.tolist(),
            "battery_pct": battery.tolist(),
            "availability_pct": availability.tolist(),
            "failures": run.failures.tolist(),
        }
    return record


@dataclass(frozen=True)
class _Job:
    """One engine at one trace setting over every dataset: a single lockstep pass of the simulator."""

    scenario: Scenario
    engine: str
    datasets: tuple[str, ...]
    groups: tuple[Group, ...]
    apps: int
    reps: int
    setting: Setting
    setting_index: int
    per_rep: bool = False


def _run(job: _Job) -> list[dict[str, Any]]:
    scenario = job.setting.apply(job.scenario)
    runs = simulate_groups(scenario, job.groups, get_engine(job.engine), apps=job.apps, reps=job.reps)
    records = []
    for dataset, run in zip(job.datasets, runs, strict=True):
        record = summarise(scenario, dataset, job.engine, job.apps, run, per_rep=job.per_rep)
        record["setting"] = job.setting_index
        record["time_compression"] = job.setting.time_compression
        record["detection_s"] = job.setting.detection_s
        record["failures"] = job.setting.failures
        record[REPS_KEY] = run.rt_s.tolist()
        records.append(record)
    return records


def run_experiment(
    scenario: Scenario,
    config: ExperimentConfig,
    traces: dict[str, NodeTrace],
    forecasts: Forecasts,
    on_done: Callable[[dict[str, Any]], None] | None = None,
    *,
    keep_reps: bool = False,
    replays: dict[str, ReplayNode] | None = None,
) -> list[dict[str, Any]]:
    """Simulate every (trace setting, dataset, engine); records in that order, however they finish.
    `keep_reps`: leave each record's per-repetition response times (edgeoff.evaluation.paired.REPS_KEY)."""
    for name in config.engines:
        get_engine(name)
    if any(s.failures == "replay" for s in config.settings) and replays is None:
        raise EvaluationError("replayed failures need the nodes' test parts (load_replays)")

    def groups(failures: str) -> tuple[Group, ...]:
        # The seed keys on the dataset, not the engine: every engine meets the same workload and failures.
        return tuple(
            Group(
                behaviours(scenario, d, traces, forecasts, replays if failures == "replay" else None),
                (config.seed, list(scenario.datasets).index(d)),
                failures="replay" if failures == "replay" else "markov",
            )
            for d in config.datasets
        )

    jobs = [
        _Job(
            scenario,
            engine,
            config.datasets,
            groups(setting.failures),
            config.apps,
            config.reps,
            setting,
            index,
            config.per_rep,
        )
        for index, setting in enumerate(config.settings)
        for engine in config.engines
    ]
    records: list[dict[str, Any]] = []
    if config.workers <= 1:
        outputs = map(_run, jobs)
        for batch in outputs:
            records.extend(batch)
            for record in batch:
                if on_done:
                    on_done(record)
    else:
        with ProcessPoolExecutor(max_workers=config.workers) as pool:
            for batch in pool.map(_run, jobs):
                records.extend(batch)
                for record in batch:
                    if on_done:
                        on_done(record)
    add_paired(records, keep_reps=keep_reps)
    datasets, engines = list(config.datasets), list(config.engines)
    return sorted(
        records, key=lambda r: (r["setting"], datasets.index(r["dataset"]), engines.index(r["engine"]))
    )
