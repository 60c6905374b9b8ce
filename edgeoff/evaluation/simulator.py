"""Seeded simulator of the paper's experiment in continuous trace time, vectorised over repetitions.

The parts, each in its module:

- workload (edgeoff.evaluation.workload): every repetition's application runs and task sizes;
- failure process (edgeoff.evaluation.failures): each site's up/down path from its node's two-state
  chain, exact in continuous time (edgeoff.chain), carried across application runs;
- forecasts (edgeoff.evaluation.forecasts): window availability forecasts from the path, as a live
  prediction worker makes them;
- detector view and engine inputs (edgeoff.knowledge, the same functions as the live planner's);
- the lockstep engine loop (edgeoff.evaluation.lockstep): step k handles the k-th task of every
  repetition, with the clock of each repetition advancing by its own tasks' phases.

What the simulated agent knows, and when: a site's failure `detection_s` (the detector's 10 x 150 ms)
after it begins, in model seconds, i.e. detection_s x time_compression trace seconds; its recovery when it
happens (heartbeats resume); forecasts once per window from the windows already past. It keeps what it
learned from one application to the next, as the live agent does.

Common random numbers: the workload, the failure paths and the latency jitter come from three generators
derived from the seed and the dataset only, so every engine meets the same applications and the same
failures; the same seed gives byte-identical results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from edgeoff.baselines import KubeHybridSettings
from edgeoff.engines import Engine
from edgeoff.evaluation.failures import markov_path, queried_path, stack_paths
from edgeoff.evaluation.forecasts import WindowForecaster, WindowForecasts
from edgeoff.evaluation.lockstep import DelayDetector, Inputs, Totals, run_lockstep
from edgeoff.evaluation.workload import draw_workload, stack_workloads
from edgeoff.scenario import Scenario
from edgeoff.traces import OutageReplay

__all__ = ["Group", "RunResult", "SiteBehaviour", "WindowForecaster", "simulate", "simulate_groups"]


@dataclass(frozen=True)
class SiteBehaviour:
    """How one site fails: its node's MTTF and MTTR (trace hours) and, for forecasting engines, fitted
    forecasters by engine availability source ("svr", "selected") with the node's availability history
    per window (oldest first) that seeds their first lags."""

    mttf_h: float
    mttr_h: float
    forecasters: Mapping[str, WindowForecaster] = field(default_factory=dict)
    history: np.ndarray | None = None
    replay: Any = None  # the node's test part (edgeoff.traces.ReplayNode) for `failures="replay"`

    @property
    def steady_state(self) -> float:
        return self.mttf_h / (self.mttf_h + self.mttr_h)


@dataclass(frozen=True)
class RunResult:
    """Per-repetition totals, each of shape (R,) unless said otherwise."""

    rt_s: np.ndarray
    energy_j: np.ndarray
    offload_attempts: np.ndarray
    failures: np.ndarray
    infeasible: np.ndarray
    placements: np.ndarray  # (R, S): offloadable tasks finally run on each site
    predicted_availability: np.ndarray  # (R, S): mean availability the engine decided on per site
    true_availability: np.ndarray  # (R, S): share of decisions at which each site was up


@dataclass(frozen=True)
class Group:
    """One setting to simulate: the sites' failure behaviour, the seed of its random streams and, to run
    several time scales in one pass (the regime map), its own time compression (None: the scenario's)."""

    sites: Mapping[int, SiteBehaviour]
    seed: tuple[int, ...]
    time_compression: float | None = None
    # "markov": each node's two-state chain; "replay": its real outages of the test part, looped, from a
    # seeded offset per repetition and site (edgeoff.traces.OutageReplay)
    failures: Literal["markov", "replay"] = "markov"


def simulate(
    scenario: Scenario,
    sites: Mapping[int, SiteBehaviour],
    engine: Engine,
    *,
    apps: int,
    reps: int,
    seed: tuple[int, ...],
    kubehybrid: KubeHybridSettings | None = None,
) -> RunResult:
    """Run `reps` repetitions of `apps` application runs with one engine; `sites` maps site index to its
    failure behaviour (sites not in it never fail). `seed` keys the random streams."""
    return simulate_groups(
        scenario, [Group(sites, seed)], engine, apps=apps, reps=reps, kubehybrid=kubehybrid
    )[0]


def _means(sites: Mapping[int, SiteBehaviour], n_sites: int) -> tuple[np.ndarray, np.ndarray]:
    up, down = np.full(n_sites, np.inf), np.zeros(n_sites)
    for i, b in sites.items():
        up[i], down[i] = b.mttf_h, b.mttr_h
    return up, down


def simulate_groups(
    scenario: Scenario,
    groups: Sequence[Group],
    engine: Engine,
    *,
    apps: int,
    reps: int,
    kubehybrid: KubeHybridSettings | None = None,
) -> list[RunResult]:
    """`simulate` for several groups (datasets) in one lockstep pass: the same results as one call per
    group, since every group keeps its own random streams, in a fraction of the time."""
    kube = kubehybrid or KubeHybridSettings()
    S = len(scenario.sites)
    works, paths, ups, downs, jitter_rngs, k_h, delay_h = [], [], [], [], [], [], []
    forecast_groups = []
    for g, group in enumerate(groups):
        works.append(draw_workload(scenario, apps, reps, np.random.default_rng([*group.seed, 0])))
        up, down = _means(group.sites, S)
        compression = group.time_compression or scenario.simulation.time_compression
        if group.failures == "replay":
            nodes = [group.sites[i].replay if i in group.sites else None for i in range(S)]
            replay = OutageReplay.from_seed(nodes, reps, (*group.seed, 3), compression)
            paths.append(queried_path(replay, compression / 3600.0))
        else:
            paths.append(markov_path(up, down, reps, np.random.default_rng([*group.seed, 1])))
        ups.append(np.broadcast_to(up, (reps, S)))
        downs.append(np.broadcast_to(down, (reps, S)))
        jitter_rngs.append(np.random.default_rng([*group.seed, 2]))
        detection = scenario.detection.detection_s
        k_h.append(np.full(reps, compression / 3600.0))
        delay_h.append(np.full(reps, detection * compression / 3600.0))
        if engine.availability in ("svr", "selected"):
            by_site = {}
            for i, b in group.sites.items():
                forecaster = b.forecasters.get(engine.availability)
                if forecaster is None or b.history is None:
                    raise ValueError(
                        f"site {i}: a {engine.availability!r} forecaster and a history are needed"
                    )
                by_site[i] = (forecaster, b.history)
            forecast_groups.append((slice(g * reps, (g + 1) * reps), by_site))
    path = stack_paths(paths)
    forecast = (
        WindowForecasts(path, forecast_groups, scenario.simulation.prediction_window_h)
        if forecast_groups
        else None
    )

    def jitter() -> np.ndarray:
        return np.concatenate([g.standard_normal((2, reps)) for g in jitter_rngs], axis=1)

    inputs = Inputs(
        path=path,
        detector=DelayDetector(np.concatenate(delay_h)),
        mean_up_h=np.concatenate(ups),
        mean_down_h=np.concatenate(downs),
        forecast=forecast,
        jitter=jitter,
        trace_h_per_s=np.concatenate(k_h),
    )
    totals = run_lockstep(scenario, engine, stack_workloads(works), inputs, kube)
    return [_result(totals, slice(g * reps, (g + 1) * reps)) for g in range(len(groups))]


def _result(t: Totals, rows: slice) -> RunResult:
    return RunResult(
        rt_s=t.rt_s[rows],
        energy_j=t.energy_j[rows],
        offload_attempts=t.offload_attempts[rows],
        failures=t.failures[rows],
        infeasible=t.infeasible[rows],
        placements=t.placements[rows],
        predicted_availability=t.believed[rows],
        true_availability=t.up_share[rows],
    )
