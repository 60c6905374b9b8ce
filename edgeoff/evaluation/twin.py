"""`edgeoff twin`'s core: re-simulate a recorded live run through the offline engine code, compare.

The replay uses what the run recorded (mobile_agent.record, `edgeoff up`), nothing drawn anew:

- the workload: the application runs and task sizes the agent drew, each starting at its recorded time;
- the failure process: each site's injected up/down schedule (a fixed path, edgeoff.evaluation.failures);
- the detector view: the agent's view changes as they arrived (known down, the forecast in force);
- the engine, the scenario, the sites' chains and the time compression of the run.

Wall times become trace hours as live: (ts - start) x time_compression / 3600; a model second of work is
time_scale wall seconds. What differs between the two is what the live system adds: MQTT and Redis round
trips, the site's scheduling, the agent's own waits (reported as `overhead_s_per_app`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeoff.baselines import KubeHybridSettings
from edgeoff.cost import CostModel, level_energy_j
from edgeoff.engines import get_engine
from edgeoff.errors import EvaluationError
from edgeoff.evaluation.failures import SiteState, fixed_path
from edgeoff.evaluation.lockstep import Inputs, run_lockstep
from edgeoff.evaluation.workload import RecordedTask, recorded_workload
from edgeoff.scenario import Scenario

__all__ = ["RecordedView", "TwinReport", "replay"]

PRIOR = 1.0  # a site without a forecast yet (the agent's default prior)


class RecordedView:
    """The agent's recorded view as the simulator's detector and forecast (one row, R = 1)."""

    def __init__(self, site_ids: Sequence[str], events: Sequence[tuple[float, str, bool, float]]) -> None:
        self.S = len(site_ids)
        self.times: list[np.ndarray] = []
        self.down: list[np.ndarray] = []
        self.forecast: list[np.ndarray] = []
        for sid in site_ids:
            mine = sorted((t, d, f) for t, s, d, f in events if s == sid)
            self.times.append(np.array([t for t, _, _ in mine], dtype=float))
            self.down.append(np.array([d for _, d, _ in mine], dtype=bool))
            self.forecast.append(np.array([f for _, _, f in mine], dtype=float))

    def _last(self, site: int, now: float) -> int:
        return int(np.searchsorted(self.times[site], now, side="right")) - 1

    def known_down(self, now: np.ndarray, state: SiteState) -> np.ndarray:
        out = np.zeros((now.size, self.S), dtype=bool)
        for r, t in enumerate(now):
            for s in range(self.S):
                k = self._last(s, float(t))
                out[r, s] = k >= 0 and bool(self.down[s][k])
        return out

    def notices(
        self, rows: np.ndarray, sites: np.ndarray, fail_start: np.ndarray, outage_end: np.ndarray
    ) -> np.ndarray:
        out = np.full(rows.size, np.inf)
        for i, (s, start, end) in enumerate(zip(sites, fail_start, outage_end, strict=True)):
            times, down = self.times[int(s)], self.down[int(s)]
            hits = np.flatnonzero(down & (times >= start) & (times <= end))
            if hits.size:
                out[i] = times[hits[0]]
        return out

    def at(self, now: np.ndarray) -> np.ndarray:
        out = np.full((now.size, self.S), PRIOR)
        for r, t in enumerate(now):
            for s in range(self.S):
                k = self._last(s, float(t))
                if k >= 0:
                    out[r, s] = self.forecast[s][k]
        return out


@dataclass(frozen=True)
class TwinReport:
    apps: int
    rt_live_s: float
    rt_sim_s: float
    energy_live_j: float
    energy_sim_j: float
    fallbacks_live: int
    fallbacks_sim: int
    placements_agree_pct: float
    offloadable_tasks: int
    truncated: bool = False  # the record is a prefix of the run (the agent's cap)

    @property
    def rt_rel_err(self) -> float:
        return (self.rt_sim_s - self.rt_live_s) / self.rt_live_s if self.rt_live_s else 0.0

    @property
    def energy_rel_err(self) -> float:
        return (self.energy_sim_j - self.energy_live_j) / self.energy_live_j if self.energy_live_j else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "apps": self.apps,
            "rt_rel_err": round(self.rt_rel_err, 5),
            "energy_rel_err": round(self.energy_rel_err, 5),
            "fallbacks_live": self.fallbacks_live,
            "fallbacks_sim": self.fallbacks_sim,
            "placements_agree_pct": round(self.placements_agree_pct, 2),
            "truncated": self.truncated,
        }


def _complete_runs(scenario: Scenario, twin: Mapping[str, Any]) -> list[tuple[dict[str, Any], list[Any]]]:
    """Recorded application runs whose every task completed, with their measured tasks."""
    by_run: dict[int, list[Any]] = {}
    for task in twin["tasks"]:
        by_run.setdefault(int(task["run"]), []).append(task)
    apps = {a.name: a for a in scenario.apps}
    out = []
    for app in twin["apps"]:
        measured = by_run.get(int(app["run"]), [])
        if (
            app["app"] in apps
            and len(measured) == len(app["tasks"])
            and all(t["completed"] for t in measured)
        ):
            out.append((app, measured))
    return out


def replay(
    scenario: Scenario,
    config: Mapping[str, Any],
    twin: Mapping[str, Any],
    injected: Sequence[Mapping[str, Any]],
    chains: tuple[Sequence[float], Sequence[float]],
) -> TwinReport:
    """Re-simulate a live run; `chains` are the sites' (MTTF, MTTR) in trace hours, (S,) each."""
    runs = _complete_runs(scenario, twin)
    truncated = bool(twin.get("truncated", False))
    if not runs or twin.get("started_ts") is None:
        why = " before its cap (twin_max_entries) stopped it" if truncated else ""
        raise EvaluationError(f"the run recorded no complete application run{why}: nothing to replay")
    engine = get_engine(str(config["engines"][0]))
    compression, time_scale = float(config["time_compression"]), float(config.get("time_scale", 1.0))
    t0 = float(twin["started_ts"])

    def trace_h(ts: float) -> float:
        return (ts - t0) * compression / 3600.0

    # one model second of work is time_scale wall seconds: time_scale x compression trace seconds
    sim = scenario.model_copy(
        update={
            "simulation": scenario.simulation.model_copy(
                update={"time_compression": compression * time_scale, "think_s": 0.0}
            )
        }
    )
    site_ids = scenario.site_ids
    S = len(site_ids)
    changes: list[list[float]] = [[] for _ in range(S)]
    for inj in sorted(injected, key=lambda i: float(i["ts"])):
        s = site_ids.index(str(inj["site"]))
        start = trace_h(float(inj["ts"]))
        changes[s] += [start, start + float(inj["down_s"]) * compression / 3600.0]
    path = fixed_path(np.ones((1, S), dtype=bool), np.full((1, S), -np.inf), [changes])
    events = [
        (trace_h(float(e["ts"])), str(e["site"]), bool(e["down"]), float(e["forecast"])) for e in twin["view"]
    ]
    view = RecordedView(site_ids, events)
    recorded = [
        [RecordedTask(k, app["app"], int(t[0]), float(t[1]), float(t[2]), float(t[3])) for t in app["tasks"]]
        for k, (app, _) in enumerate(runs)
    ]
    work = recorded_workload(scenario, recorded)
    inputs = Inputs(
        path=path,
        detector=view,
        mean_up_h=np.asarray(chains[0], dtype=float)[None, :],
        mean_down_h=np.asarray(chains[1], dtype=float)[None, :],
        forecast=view,
        app_start_h=np.array([[trace_h(float(app["ts"])) for app, _ in runs]]),
    )
    totals = run_lockstep(sim, engine, work, inputs, KubeHybridSettings())
    report = _compare(
        scenario,
        runs,
        totals.site_of[0],
        float(totals.rt_s[0]),
        float(totals.energy_j[0]),
        int(totals.failures[0]),
    )
    return dataclasses.replace(report, truncated=truncated)


def _compare(
    scenario: Scenario,
    runs: Sequence[tuple[dict[str, Any], list[Any]]],
    sim_sites: np.ndarray,
    rt_sim: float,
    energy_sim: float,
    failures_sim: int,
) -> TwinReport:
    model = CostModel.from_scenario(scenario)
    site_ids = scenario.site_ids
    apps = {a.name: a for a in scenario.apps}
    keys, times, active_s, active_j = [], [], [], []
    agree = offloadable = fallbacks = step = 0
    rt_live = 0.0
    for k, (app, measured) in enumerate(runs):
        levels = apps[app["app"]].levels
        slowest: dict[int, float] = {}
        for spec, task in zip(app["tasks"], measured, strict=True):
            level = levels[int(spec[0])]
            slowest[level] = max(slowest.get(level, 0.0), float(task["time_s"]))
            keys.append(k * 64 + level)
            times.append(float(task["time_s"]))
            phases = [(str(p[0]), float(p[1]), int(p[2]), int(p[3])) for p in task["phases"]]
            on = [p for p in phases if model.phase_active(p[0], p[2], p[3])]
            active_s.append(sum(p[1] for p in on))
            active_j.append(sum(p[1] * model.phase_power_w(p[0], p[2], p[3]) for p in on))
            fallbacks += int(task["failed"])
            if task["offloadable"]:
                offloadable += 1
                agree += site_ids[int(sim_sites[step])] == task["site"]
            step += 1
        rt_live += sum(slowest.values())
    energy_live = level_energy_j(
        np.array(keys), np.array(times), np.array(active_s), np.array(active_j), model.idle_power_w
    )
    return TwinReport(
        apps=len(runs),
        rt_live_s=rt_live,
        rt_sim_s=rt_sim,
        energy_live_j=energy_live,
        energy_sim_j=energy_sim,
        fallbacks_live=fallbacks,
        fallbacks_sim=failures_sim,
        placements_agree_pct=100.0 * agree / offloadable if offloadable else 100.0,
        offloadable_tasks=offloadable,
    )
