"""A node's failure trace in hours since the epoch: merged outages, MTTF/MTTR, daily availability, and the
two-state (up/down) model per node.

* Time is in **hours since** :data:`EPOCH` (1996-01-01 00:00), on LANL's local wall clock as recorded
  (daylight-saving shifts are not corrected). Whole days since the epoch are calendar days.
* An outage is the interval ``[Prob Started, Prob Fixed]`` of a record. A node's records are merged into
  disjoint outages: records that overlap or touch (one starts when another ends) become one outage.
* ``failures`` is the number of merged outages, ``mttr_h`` their mean duration, ``mttf_h`` the mean up
  time between the end of one outage and the start of the next. MTTF therefore needs at least two outages;
  for a node with one outage it is undefined: asking a trace for it raises :class:`TraceError`, and
  :func:`node_stats` (the table, ``edgeoff traces stats``) reports it, and the availability, as null.

This module is pure: numpy only, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeoff.errors import TraceError

__all__ = [
    "EPOCH",
    "HOURS_PER_DAY",
    "NodeTrace",
    "TwoStateModel",
    "daily_availability",
    "hours_since_epoch",
    "merge_intervals",
    "node_stats",
    "two_state_model",
]

FloatArray = npt.NDArray[np.float64]

# Start of the data set's nominal period (midnight, so whole days are calendar days); 1995 records are < 0.
EPOCH = datetime(1996, 1, 1)
MINUTES_PER_DAY = 1440
HOURS_PER_DAY = 24.0
MINUTES_PER_HOUR = 60.0


def hours_since_epoch(moment: datetime) -> float:
    """Hours from :data:`EPOCH` to ``moment`` (negative before 1996)."""
    return (moment - EPOCH).total_seconds() / 3600.0


def merge_intervals(intervals: FloatArray) -> FloatArray:
    """Merge overlapping or touching intervals, shape (n, 2) -> (k, 2), sorted by start, k <= n."""
    ordered = intervals[np.lexsort((intervals[:, 1], intervals[:, 0]))]
    reach = np.maximum.accumulate(ordered[:, 1])  # latest end seen so far, (n,)
    new_block = np.ones(len(ordered), dtype=bool)
    new_block[1:] = ordered[1:, 0] > reach[:-1]  # strictly after everything before: a real up interval
    block_last = np.append(new_block[1:], True)  # last interval of each merged block
    return np.column_stack((ordered[new_block, 0], reach[block_last]))


# --------------------------------------------------------------------------- per-node statistics


@dataclass(frozen=True, eq=False)
class NodeTrace:
    """A node's merged outages, shape (k, 2), rows ``[start_h, end_h]`` in hours since EPOCH, k >= 1.

    Absolute hours (not relative to the first outage) keep whole days aligned with calendar days.
    """

    node: str
    outages: FloatArray

    def __post_init__(self) -> None:
        outages = np.array(self.outages, dtype=np.float64)
        if outages.ndim != 2 or outages.shape[1] != 2 or len(outages) == 0:
            raise TraceError(
                f"node {self.node}: outages must have shape (k, 2) with k >= 1, got {outages.shape}"
            )
        if np.any(outages[:, 1] < outages[:, 0]) or np.any(outages[1:, 0] <= outages[:-1, 1]):
            raise TraceError(f"node {self.node}: outages must be sorted, disjoint and separated by up time")
        outages.setflags(write=False)
        object.__setattr__(self, "outages", outages)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NodeTrace):
            return NotImplemented
        return self.node == other.node and np.array_equal(self.outages, other.outages)

    __hash__ = None  # type: ignore[assignment]  # holds an array: equal by value, not hashable

    @property
    def failures(self) -> int:
        """Number of merged outages."""
        return len(self.outages)

    @property
    def durations_h(self) -> FloatArray:
        """Outage durations in hours, shape (k,)."""
        return self.outages[:, 1] - self.outages[:, 0]

    @property
    def up_times_h(self) -> FloatArray:
        """Up times between consecutive outages in hours, shape (k - 1,)."""
        return self.outages[1:, 0] - self.outages[:-1, 1]

    @property
    def mttr_h(self) -> float:
        """Mean time to repair: mean outage duration, hours."""
        return float(np.mean(self.durations_h))

    @property
    def mttf_h(self) -> float:
        """Mean time to failure: mean up time between outages, hours. Needs at least two outages."""
        if self.failures < 2:
            raise TraceError(f"node {self.node} has a single outage: MTTF needs at least two")
        return float(np.mean(self.up_times_h))

    @property
    def availability(self) -> float:
        """Steady-state availability MTTF / (MTTF + MTTR), in [0, 1]."""
        return self.mttf_h / (self.mttf_h + self.mttr_h)


def node_stats(trace: NodeTrace, decimals: int | None = None) -> dict[str, Any]:
    """JSON-ready summary: node, failures, mttf_h, mttr_h, availability (None when undefined: one outage)."""

    def rounded(value: float) -> float:
        return value if decimals is None else round(value, decimals)

    has_up_time = trace.failures >= 2
    return {
        "node": trace.node,
        "failures": trace.failures,
        "mttf_h": rounded(trace.mttf_h) if has_up_time else None,
        "mttr_h": rounded(trace.mttr_h),
        "availability": rounded(trace.availability) if has_up_time else None,
    }


def daily_availability(trace: NodeTrace) -> FloatArray:
    """Daily availability ``(1440 - down minutes that day) / 1440``, shape (days,).

    Days run from the calendar day of the first outage's start to the day of the last outage's end (its
    start for a zero-length outage that ends at midnight), outages spanning midnight counted on each day.
    """
    starts, ends = trace.outages[:, 0], trace.outages[:, 1]
    first_day = int(np.floor(starts[0] / HOURS_PER_DAY))
    last_day = max(int(np.floor(starts[-1] / HOURS_PER_DAY)), int(np.ceil(ends[-1] / HOURS_PER_DAY)) - 1)
    boundaries_h = np.arange(first_day, last_day + 2, dtype=np.float64) * HOURS_PER_DAY  # (days + 1,)
    # Cumulative downtime D(t) is piecewise linear through (start_i, down before i), (end_i, down through i).
    down_through = np.cumsum(ends - starts)
    knots_x = trace.outages.ravel()
    knots_y = np.column_stack((down_through - (ends - starts), down_through)).ravel()
    cumulative_h = np.interp(boundaries_h, knots_x, knots_y)
    down_minutes = np.diff(cumulative_h) * MINUTES_PER_HOUR
    return np.clip((MINUTES_PER_DAY - down_minutes) / MINUTES_PER_DAY, 0.0, 1.0)


# --------------------------------------------------------------------------- two-state model


@dataclass(frozen=True)
class TwoStateModel:
    """Up/down Markov model of a node: exponential times to failure and to repair, hours."""

    mttf_h: float
    mttr_h: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.mttf_h) and self.mttf_h > 0):
            raise TraceError(f"MTTF must be a positive number of hours, got {self.mttf_h}")
        if not (np.isfinite(self.mttr_h) and self.mttr_h >= 0):
            raise TraceError(f"MTTR must be a non-negative number of hours, got {self.mttr_h}")

    def p_fail(self, dt_h: float) -> float:
        """P(up -> down) within a step of ``dt_h`` hours: 1 - exp(-dt / MTTF)."""
        return float(-np.expm1(-_check_step(dt_h) / self.mttf_h))

    def p_repair(self, dt_h: float) -> float:
        """P(down -> up) within a step of ``dt_h`` hours: 1 - exp(-dt / MTTR); 1 when MTTR is 0."""
        dt_h = _check_step(dt_h)
        if self.mttr_h == 0:
            return 1.0 if dt_h > 0 else 0.0
        return float(-np.expm1(-dt_h / self.mttr_h))

    @property
    def steady_state_availability(self) -> float:
        """Long-run fraction of time up: MTTF / (MTTF + MTTR)."""
        return self.mttf_h / (self.mttf_h + self.mttr_h)


def _check_step(dt_h: float) -> float:
    if not (np.isfinite(dt_h) and dt_h >= 0):
        raise ValueError(f"time step must be a non-negative number of hours, got {dt_h}")
    return float(dt_h)


def two_state_model(trace: NodeTrace) -> TwoStateModel:
    """The two-state model with the trace's MTTF and MTTR."""
    return TwoStateModel(mttf_h=trace.mttf_h, mttr_h=trace.mttr_h)
