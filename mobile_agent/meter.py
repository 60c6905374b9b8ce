"""The agent's measurements turned into the results record (pure: numbers in, a dict out).

The daemon measures every phase of every task in wall seconds and divides by its time scale, so the meter
sees model seconds. Energy follows the cost model's rules (edgeoff.cost), as the simulator's does: each
phase at the phone's power in it (upload by (from, to), execution by site, download, a failed attempt's
wait for the verdict by the state it was sent from), the active phases charged per task and the idle
power once per DAG level of an application run (edgeoff.cost.level_energy_j).

Memory does not grow with the run: :class:`TaskMeter` folds each task into running counts, sums and a
Welford mean and deviation as it completes, and :func:`detection_summary` matches failures with detections
in one pass, its latency quantiles from a histogram of logarithmic bins (mobile_agent.running).

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

import heapq
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edgeoff.cost import CostModel
from edgeoff.scenario import SITE_TYPES, Scenario
from mobile_agent.running import LogHistogram, RunningStat

__all__ = [
    "LATENCY_RELATIVE_ERROR",
    "Attempt",
    "Detection",
    "Injection",
    "Phase",
    "TaskMeasurement",
    "TaskMeter",
    "detection_summary",
    "phase_energy_j",
    "phase_is_active",
    "summarise_run",
    "task_energy_j",
    "task_time_s",
]

LATENCY_RELATIVE_ERROR = 0.01  # detection latency p50/p99: within 1 % (+ 1 us) of the exact percentile

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


def task_time_s(task: TaskMeasurement) -> float:
    return float(sum(p.seconds for p in task.phases))


def task_energy_j(model: CostModel, task: TaskMeasurement) -> float:
    return float(sum(phase_energy_j(model, p) for p in task.phases))


class TaskMeter:
    """The run's measurements folded in as they come, in constant memory (O(levels of one application)).

    Tasks arrive application run by application run (`app_run` never goes back: ValueError); the open
    run's per-level slowest task and active time are kept until the next run starts. Counts are exact;
    means, standard deviations and sums agree with a computation over all the tasks up to floating-point
    rounding.
    """

    def __init__(self, model: CostModel, site_types: Sequence[str]) -> None:
        self.model = model
        self.site_types = tuple(site_types)
        self.rt = RunningStat()  # response time per closed application run, s
        self.tasks = 0
        self.tasks_lost = 0
        self.infeasible = 0
        self.fallbacks = 0  # attempts beyond the first
        self.remote = 0  # remote attempts
        self.failures = 0  # failed remote attempts
        self.placed: dict[str, int] = dict.fromkeys(SITE_TYPES, 0)  # completed offloadable tasks per type
        self.active_j = 0.0  # energy of the active phases of every task
        self.idle_j = 0.0  # idle energy of the closed runs' levels
        self._run: int | None = None
        self._levels: dict[int, tuple[float, float]] = {}  # open run: level -> (slowest s, active s)

    def add(self, task: TaskMeasurement) -> None:
        if self._run is not None and task.app_run < self._run:
            raise ValueError(f"task of application run {task.app_run} after run {self._run}")
        if task.app_run != self._run:
            self._close()
            self._run = task.app_run
        self.tasks += 1
        self.tasks_lost += not task.completed
        self.infeasible += task.infeasible
        self.fallbacks += max(0, len(task.attempts) - 1)
        for a in task.attempts:
            if a.remote:
                self.remote += 1
                self.failures += not a.ok
        if task.offloadable and task.completed and task.site is not None:
            self.placed[self.site_types[task.site]] += 1
        active_s = 0.0
        for p in task.phases:
            if phase_is_active(self.model, p):
                active_s += p.seconds
                self.active_j += phase_energy_j(self.model, p)
        slowest, active = self._levels.get(task.level, (0.0, 0.0))
        self._levels[task.level] = (max(slowest, task_time_s(task)), active + active_s)

    def _open_run(self) -> tuple[float, float]:
        """The open run's response time and idle energy."""
        rt = sum(slowest for slowest, _ in self._levels.values())
        idle_s = sum(max(0.0, slowest - active) for slowest, active in self._levels.values())
        return rt, idle_s * self.model.idle_power_w

    def _close(self) -> None:
        if self._run is None:
            return
        rt, idle_j = self._open_run()
        self.rt.add(rt)
        self.idle_j += idle_j
        self._levels = {}

    def response_time(self) -> RunningStat:
        """Response time per application run, the open run included."""
        if self._run is None:
            return RunningStat()
        rt = self.rt.copy()
        rt.add(self._open_run()[0])
        return rt

    def energy_j(self) -> float:
        """The phone's energy so far: active phases per task, idle once per level (edgeoff.cost, rule 6)."""
        return self.active_j + self.idle_j + (self._open_run()[1] if self._run is not None else 0.0)


def summarise_run(
    scenario: Scenario,
    dataset: str,
    engine: str,
    meter: TaskMeter,
    *,
    site_usable_share: np.ndarray,
    believed_availability: np.ndarray,
) -> dict[str, Any]:
    """The results record of one live run (see the module docstring for the meaning of each figure).

    `site_usable_share` and `believed_availability` are (S,) means over the agent's decisions.
    """
    rt = meter.response_time()
    apps = rt.count
    energy = meter.energy_j()
    battery = (scenario.power.battery_j - energy) / scenario.power.battery_j * 100.0
    failures = meter.failures
    availability = (1.0 - failures / meter.remote) * 100.0 if meter.remote else 100.0
    total = max(sum(meter.placed.values()), 1)
    per_1000 = 1000.0 / max(apps, 1)
    return {
        "dataset": dataset,
        "engine": engine,
        "rt_s": {"mean": rt.mean, "std": rt.std},
        "battery_pct": {"mean": float(battery), "std": 0.0},
        "availability_pct": {"mean": float(availability), "std": 0.0},
        "failures_per_1000_apps": failures * per_1000,
        "distribution_pct": {t: meter.placed[t] / total * 100.0 for t in SITE_TYPES},
        "offloads_per_1000_apps": meter.remote * per_1000,
        "no_feasible_solution": meter.infeasible,
        "site_availability_pct": {
            sid: float(site_usable_share[i] * 100.0) for i, sid in enumerate(scenario.site_ids)
        },
        "believed_availability_pct": {
            sid: float(believed_availability[i] * 100.0) for i, sid in enumerate(scenario.site_ids)
        },
        "apps": apps,
        "rt_s_total": rt.total,
        "energy_j": float(energy),
        "tasks": meter.tasks,
        "tasks_lost": meter.tasks_lost,
        "failures": failures,
        "fallbacks": meter.fallbacks,
    }


def detection_summary(
    injections: Iterable[Injection], detections: Iterable[Detection], *, slack_s: float = 5.0
) -> dict[str, Any]:
    """Match each injected failure with the agent's first detection of that site after it.

    A detection counts when it falls within the failure's down time plus `slack_s` (the verdict may come
    after a short failure ended). Latency: detection time minus injection time, in milliseconds.

    Both streams must be in time order (as the sites' injection logs and the agent's detections are); they
    are merged and matched in one pass, keeping per site only the failures whose window is still open, and
    the latencies in a :class:`RunningStat` and a :class:`LogHistogram` (p50/p99 within 1 % + 1 us of the
    exact percentiles). Matching in time order pairs each failure, oldest first, with the earliest unused
    detection in its window, as a search over all of them would.
    """
    stat, hist = RunningStat(), LogHistogram(relative_error=LATENCY_RELATIVE_ERROR, min_value=1e-3)
    pending: dict[str, deque[Injection]] = {}
    injected = 0
    # at equal times the failure comes first (a detection at its very start counts)
    failures: Iterable[tuple[float, int, Injection | Detection]] = ((i.ts, 0, i) for i in injections)
    verdicts: Iterable[tuple[float, int, Injection | Detection]] = ((d.ts, 1, d) for d in detections)
    for ts, _, event in heapq.merge(failures, verdicts, key=lambda e: (e[0], e[1])):
        open_ = pending.setdefault(event.site, deque())
        # a window that closed before now can match no later detection
        kept = [i for i in open_ if i.ts + i.down_s + slack_s >= ts]
        if len(kept) != len(open_):
            open_ = pending[event.site] = deque(kept)
        if isinstance(event, Injection):
            injected += 1
            open_.append(event)
        elif open_:
            first = open_.popleft()
            latency = (ts - first.ts) * 1000.0
            stat.add(latency)
            hist.add(latency)
    figures: dict[str, float | int | None] = {
        "count": stat.count,
        "mean": None,
        "std": None,
        "p50": None,
        "p99": None,
    }
    if stat.count:
        figures.update(mean=stat.mean, std=stat.std, p50=hist.quantile(50), p99=hist.quantile(99))
    return {
        "failures_injected": injected,
        "failures_detected": stat.count,
        "detection_latency_ms": figures,
    }
