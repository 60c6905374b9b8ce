"""The agent's measurements turned into the results record (pure: numbers in, a dict out).

The daemon measures every phase of every task in wall seconds and divides by its time scale, so the meter
sees model seconds. Energy follows the cost model's rules (edgeoff.cost), as the simulator's does: each
phase at the phone's power in it (upload by (from, to), execution by site, download, a failed attempt's
wait for the verdict by the state it was sent from), the active phases charged per task and the idle
power once per DAG level of an application run (edgeoff.cost.level_energy_j).

The record has the shape of :func:`edgeoff.evaluation.experiment.summarise` (one live run is one
repetition of the offline experiment), with these meanings:

- `rt_s`: mean and standard deviation over the run's application runs of the response time of one
  application run (per DAG level the slowest task, summed over levels). Offline, `rt_s` is the total over
  a repetition's application runs; here `rt_s_total` carries that total.
- `battery_pct`: battery left after the whole run (one repetition: std 0).
- `availability_pct`: successful remote attempts / remote attempts x 100 over the run (std 0).
- `site_availability_pct`: share of the agent's decisions at which each site was usable (online, not
  suspected); `believed_availability_pct`: mean availability the engine used at those decisions.

plus `apps`, `rt_s_total`, `tasks`, `tasks_lost` (tasks started and never completed), `failures`,
`fallbacks`, and from :func:`detection_summary` `failures_injected`, `failures_detected` and
`detection_latency_ms` ({mean, std, p50, p99, count}; null figures when nothing was detected).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edgeoff.cost import CostModel, level_energy_j
from edgeoff.scenario import SITE_TYPES, Scenario

__all__ = [
    "Attempt",
    "Detection",
    "Injection",
    "Phase",
    "TaskMeasurement",
    "detection_summary",
    "phase_energy_j",
    "phase_is_active",
    "response_times_s",
    "run_energy_j",
    "summarise_run",
    "task_energy_j",
    "task_time_s",
]

PhaseKind = Literal["upload", "execute", "download", "detect", "checkpoint", "restore"]


@dataclass(frozen=True)
class Phase:
    """A measured phase of a task, in model seconds; `src`/`dst` are site indices (state and action)."""

    kind: PhaseKind
    seconds: float
    src: int
    dst: int


@dataclass(frozen=True)
class Attempt:
    """One attempt at a task on a site; `remote` attempts count towards availability."""

    site: int
    ok: bool
    remote: bool
    reason: str | None = None


@dataclass(frozen=True)
class TaskMeasurement:
    app_run: int
    level: int
    offloadable: bool
    completed: bool
    site: int | None  # where it finally ran (None: never completed)
    phases: tuple[Phase, ...]
    attempts: tuple[Attempt, ...]
    infeasible: bool = False  # Algorithm 2 ran out of actions (NoFeasibleSolutionError)


@dataclass(frozen=True)
class Injection:
    """A failure injected into a site at wall time `ts` (epoch seconds) for `down_s` seconds."""

    site: str
    ts: float
    down_s: float


@dataclass(frozen=True)
class Detection:
    """The agent learned at wall time `ts` that `site` was down (`how`: offline status, detector)."""

    site: str
    ts: float
    how: str


def phase_energy_j(model: CostModel, phase: Phase) -> float:
    """The phone's energy (J) during one phase."""
    return phase.seconds * model.phase_power_w(phase.kind, phase.src, phase.dst)


def phase_is_active(model: CostModel, phase: Phase) -> bool:
    """Whether the phone works in this phase (sends, receives, computes) rather than idles."""
    return model.phase_active(phase.kind, phase.src, phase.dst)


def run_energy_j(model: CostModel, tasks: Sequence[TaskMeasurement]) -> float:
    """The phone's energy of a run: active phases per task, idle once per level (edgeoff.cost, rule 6)."""
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


def task_time_s(task: TaskMeasurement) -> float:
    return float(sum(p.seconds for p in task.phases))


def task_energy_j(model: CostModel, task: TaskMeasurement) -> float:
    return float(sum(phase_energy_j(model, p) for p in task.phases))


def response_times_s(tasks: Sequence[TaskMeasurement]) -> np.ndarray:
    """Response time of each application run (sorted by run): per DAG level the slowest task, summed."""
    slowest: dict[int, dict[int, float]] = {}
    for t in tasks:
        levels = slowest.setdefault(t.app_run, {})
        levels[t.level] = max(levels.get(t.level, 0.0), task_time_s(t))
    return np.array([sum(slowest[run].values()) for run in sorted(slowest)], dtype=float)


def _stat(x: np.ndarray) -> dict[str, float]:
    return {"mean": float(x.mean()) if x.size else 0.0, "std": float(x.std(ddof=1)) if x.size > 1 else 0.0}


def summarise_run(
    scenario: Scenario,
    dataset: str,
    engine: str,
    tasks: Sequence[TaskMeasurement],
    *,
    site_usable_share: np.ndarray,
    believed_availability: np.ndarray,
) -> dict[str, Any]:
    """The results record of one live run (see the module docstring for the meaning of each figure).

    `site_usable_share` and `believed_availability` are (S,) means over the agent's decisions.
    """
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


def detection_summary(
    injections: Sequence[Injection], detections: Sequence[Detection], *, slack_s: float = 5.0
) -> dict[str, Any]:
    """Match each injected failure with the agent's first detection of that site after it.

    A detection counts when it falls within the failure's down time plus `slack_s` (the verdict may come
    after a short failure ended). Latency: detection time minus injection time, in milliseconds.
    """
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
