"""The agent's former all-in-memory results computation, kept only as the oracle of the incremental one
(mobile_agent.meter.TaskMeter, detection_summary): every task and detection held, then summarised."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeoff.cost import CostModel, level_energy_j
from edgeoff.scenario import SITE_TYPES, Scenario
from mobile_agent.meter import (
    Detection,
    Injection,
    TaskMeasurement,
    phase_energy_j,
    phase_is_active,
    task_time_s,
)


def run_energy_j(model: CostModel, tasks: Sequence[TaskMeasurement]) -> float:
    if not tasks:
        return 0.0
    runs = max(t.app_run for t in tasks) + 1
    keys = np.array([t.level * runs + t.app_run for t in tasks])
    times = np.array([task_time_s(t) for t in tasks])
    active_s = np.array([sum(p.seconds for p in t.phases if phase_is_active(model, p)) for t in tasks])
    active_j = np.array(
        [sum(phase_energy_j(model, p) for p in t.phases if phase_is_active(model, p)) for t in tasks]
    )
    return level_energy_j(keys, times, active_s, active_j, model.idle_power_w)


def response_times_s(tasks: Sequence[TaskMeasurement]) -> np.ndarray:
    slowest: dict[int, dict[int, float]] = {}
    for t in tasks:
        levels = slowest.setdefault(t.app_run, {})
        levels[t.level] = max(levels.get(t.level, 0.0), task_time_s(t))
    return np.array([sum(slowest[run].values()) for run in sorted(slowest)], dtype=float)


def _stat(x: np.ndarray) -> dict[str, float]:
    return {"mean": float(x.mean()) if x.size else 0.0, "std": float(x.std(ddof=1)) if x.size > 1 else 0.0}


def summarise_all(
    scenario: Scenario,
    dataset: str,
    engine: str,
    tasks: Sequence[TaskMeasurement],
    *,
    site_usable_share: np.ndarray,
    believed_availability: np.ndarray,
) -> dict[str, Any]:
    model = CostModel.from_scenario(scenario)
    rt = response_times_s(tasks)
    apps = int(rt.size)
    energy = run_energy_j(model, tasks)
    battery = (scenario.power.battery_j - energy) / scenario.power.battery_j * 100.0
    remote = [a for t in tasks for a in t.attempts if a.remote]
    failures = sum(1 for a in remote if not a.ok)
    availability = (1.0 - failures / len(remote)) * 100.0 if remote else 100.0
    types = scenario.site_types
    placed = [types[t.site] for t in tasks if t.offloadable and t.completed and t.site is not None]
    total = max(len(placed), 1)
    per_1000 = 1000.0 / max(apps, 1)
    return {
        "dataset": dataset,
        "engine": engine,
        "rt_s": _stat(rt),
        "battery_pct": {"mean": float(battery), "std": 0.0},
        "availability_pct": {"mean": float(availability), "std": 0.0},
        "failures_per_1000_apps": failures * per_1000,
        "distribution_pct": {t: placed.count(t) / total * 100.0 for t in SITE_TYPES},
        "offloads_per_1000_apps": len(remote) * per_1000,
        "no_feasible_solution": sum(1 for t in tasks if t.infeasible),
        "site_availability_pct": {
            sid: float(site_usable_share[i] * 100.0) for i, sid in enumerate(scenario.site_ids)
        },
        "believed_availability_pct": {
            sid: float(believed_availability[i] * 100.0) for i, sid in enumerate(scenario.site_ids)
        },
        "apps": apps,
        "rt_s_total": float(rt.sum()),
        "energy_j": float(energy),
        "tasks": len(tasks),
        "tasks_lost": sum(1 for t in tasks if not t.completed),
        "failures": failures,
        "fallbacks": sum(max(0, len(t.attempts) - 1) for t in tasks),
    }


def detection_summary_all(
    injections: Sequence[Injection], detections: Sequence[Detection], *, slack_s: float = 5.0
) -> dict[str, Any]:
    latencies = []
    used: set[int] = set()
    for inj in sorted(injections, key=lambda i: i.ts):
        window_end = inj.ts + inj.down_s + slack_s
        for k, det in enumerate(detections):
            if k not in used and det.site == inj.site and inj.ts <= det.ts <= window_end:
                used.add(k)
                latencies.append((det.ts - inj.ts) * 1000.0)
                break
    lat = np.array(latencies, dtype=float)
    figures: dict[str, float | int | None] = {
        "count": int(lat.size),
        "mean": None,
        "std": None,
        "p50": None,
        "p99": None,
    }
    if lat.size:
        figures.update(
            mean=float(lat.mean()),
            std=float(lat.std(ddof=1)) if lat.size > 1 else 0.0,
            p50=float(np.percentile(lat, 50)),
            p99=float(np.percentile(lat, 99)),
        )
    return {
        "failures_injected": len(injections),
        "failures_detected": int(lat.size),
        "detection_latency_ms": figures,
    }
