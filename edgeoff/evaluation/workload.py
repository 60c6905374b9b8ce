"""The workload of the simulator: every repetition's stream of tasks, padded into (R, T) arrays.

Each repetition runs `apps` application runs drawn from the scenario's mix; each task's sizes are drawn
uniformly from its class's ranges. Step k of the lockstep loop handles the k-th task of every repetition.
`recorded_workload` builds the same arrays from the application runs a live agent drew (`edgeoff twin`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgeoff.scenario import Scenario

__all__ = ["RecordedTask", "Workload", "draw_workload", "recorded_workload", "stack_workloads"]


@dataclass(frozen=True)
class Workload:
    """Task streams of all repetitions, padded to T steps: arrays of shape (R, T)."""

    valid: np.ndarray
    app: np.ndarray  # application run index 0..apps-1
    first: np.ndarray  # first task of its application run
    key: np.ndarray  # (app run, DAG level) index for the response time, 0..apps*levels-1
    source: np.ndarray  # step of the task whose site holds the input, -1 for the phone
    mi: np.ndarray
    input_kb: np.ndarray
    output_kb: np.ndarray
    memory_gb: np.ndarray
    offloadable: np.ndarray
    levels: int


def draw_workload(scenario: Scenario, apps: int, reps: int, rng: np.random.Generator) -> Workload:
    """`reps` streams of `apps` application runs drawn with `rng` (the same draws as before issue 8)."""
    classes = list(scenario.task_classes)
    rows: list[
        tuple[float, ...]
    ] = []  # one row per template task: app, class, memory, offloadable, level, source offset
    starts, lengths = [], []
    for a, app in enumerate(scenario.apps):
        starts.append(len(rows))
        lengths.append(len(app.tasks))
        for t, task in enumerate(app.tasks):
            rows.append(
                (
                    a,
                    classes.index(task.class_),
                    task.memory_gb,
                    task.offloadable,
                    app.levels[t],
                    app.sources[t],
                )
            )
    table = np.array(rows, dtype=float)
    start, length = np.array(starts), np.array(lengths)
    levels = int(table[:, 4].max()) + 1

    probs = np.array([app.probability for app in scenario.apps])
    choice = rng.choice(len(scenario.apps), size=(reps, apps), p=probs / probs.sum())
    lens = length[choice]  # (R, apps)
    steps = lens.sum(axis=1)
    T = int(steps.max())
    flat_len = lens.ravel()
    total = int(flat_len.sum())
    app_start_in_rep = np.cumsum(lens, axis=1) - lens  # (R, apps)
    rep_of = np.repeat(np.arange(reps), steps)
    offset_in_app = np.arange(total) - np.repeat(np.cumsum(flat_len) - flat_len, flat_len)
    template = np.repeat(start[choice].ravel(), flat_len) + offset_in_app
    app_of = np.repeat(np.tile(np.arange(apps), reps), flat_len)
    pos = np.repeat(app_start_in_rep.ravel(), flat_len) + offset_in_app

    def grid(values: np.ndarray, fill: float, dtype: type) -> np.ndarray:
        out: np.ndarray = np.full((reps, T), fill, dtype=dtype)
        out[rep_of, pos] = values
        return out

    src_offset = table[template, 5].astype(int)
    source = np.where(src_offset >= 0, np.repeat(app_start_in_rep.ravel(), flat_len) + src_offset, -1)
    cls = table[template, 1].astype(int)
    lo = np.array([[c.mi[0], c.input_kb[0], c.output_kb[0]] for c in scenario.task_classes.values()])
    hi = np.array([[c.mi[1], c.input_kb[1], c.output_kb[1]] for c in scenario.task_classes.values()])
    sizes = lo[cls] + rng.random((total, 3)) * (hi[cls] - lo[cls])
    return Workload(
        valid=grid(np.ones(total, bool), False, bool),
        app=grid(app_of, 0, np.int64),
        first=grid(offset_in_app == 0, False, bool),
        key=grid(app_of * levels + table[template, 4].astype(int), 0, np.int64),
        source=grid(source, -1, np.int64),
        mi=grid(sizes[:, 0], 0.0, float),
        input_kb=grid(sizes[:, 1], 0.0, float),
        output_kb=grid(sizes[:, 2], 0.0, float),
        memory_gb=grid(table[template, 2], 0.0, float),
        offloadable=grid(table[template, 3].astype(bool), False, bool),
        levels=levels,
    )


def _pad(x: np.ndarray, width: int, fill: float) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, width - x.shape[1])), constant_values=fill)


def stack_workloads(works: Sequence[Workload]) -> Workload:
    """One workload of all groups' rows, padded to the longest stream."""
    width = max(w.valid.shape[1] for w in works)
    fills = {"source": -1}
    fields = {
        name: np.concatenate([_pad(getattr(w, name), width, fills.get(name, 0)) for w in works])
        for name in (
            "valid",
            "app",
            "first",
            "key",
            "source",
            "mi",
            "input_kb",
            "output_kb",
            "memory_gb",
            "offloadable",
        )
    }
    return Workload(**fields, levels=works[0].levels)


@dataclass(frozen=True)
class RecordedTask:
    """One task of one application run as a live agent drew it."""

    app_run: int
    app: str
    index: int  # position in the app's topological order
    mi: float
    input_kb: float
    output_kb: float


def recorded_workload(scenario: Scenario, runs: Sequence[Sequence[RecordedTask]]) -> Workload:
    """One repetition (R = 1) of the recorded application runs, in order; the DAG from the scenario."""
    apps = {a.name: a for a in scenario.apps}
    levels = max(max(a.levels) for a in scenario.apps) + 1
    cols: dict[str, list[float]] = {k: [] for k in ("app", "first", "key", "source", "mi", "in", "out")}
    mem: list[float] = []
    off: list[bool] = []
    for run, tasks in enumerate(runs):
        start = len(cols["mi"])
        for task in tasks:
            app = apps[task.app]
            template = app.tasks[task.index]
            cols["app"].append(run)
            cols["first"].append(task.index == 0)
            cols["key"].append(run * levels + app.levels[task.index])
            src = app.sources[task.index]
            cols["source"].append(start + src if src >= 0 else -1)
            cols["mi"].append(task.mi)
            cols["in"].append(task.input_kb)
            cols["out"].append(task.output_kb)
            mem.append(template.memory_gb)
            off.append(template.offloadable)
    n = len(mem)

    def row(values: Sequence[float] | Sequence[bool], dtype: type) -> np.ndarray:
        return np.asarray(values, dtype=dtype).reshape(1, n)

    return Workload(
        valid=np.ones((1, n), dtype=bool),
        app=row(cols["app"], np.int64),
        first=row(cols["first"], bool),
        key=row(cols["key"], np.int64),
        source=row(cols["source"], np.int64),
        mi=row(cols["mi"], float),
        input_kb=row(cols["in"], float),
        output_kb=row(cols["out"], float),
        memory_gb=row(mem, float),
        offloadable=row(off, bool),
        levels=levels,
    )
