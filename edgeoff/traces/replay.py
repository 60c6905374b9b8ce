"""Real LANL outages replayed in simulated time: each node's chronological test part, looped, one seeded
offset per repetition and site.

The split (the same for the replay and for everything fitted on the past):

* A node's *span* runs from the start of its first merged outage to the end of its last, in whole minutes
  since :data:`~edgeoff.traces.model.EPOCH` (the records' resolution). Its *test part* is the last
  ``1 - train_fraction`` of the span (PARAMETERS.md: 80/20): ``[test_start, span_end]`` with
  ``test_start = span_start + floor(train_fraction · span length)``. The forecasters and the two-state chain
  are fitted on the outages that ended by ``test_start`` only (:func:`training_trace`).
* :class:`ReplayNode` holds a test part: its bounds and the merged outages inside it (clipped to it), whole
  minutes. The packaged table ``edgeoff/data/lanl_replay.json`` holds one per node of the datasets
  (:mod:`edgeoff.traces.table`); :func:`replay_node` derives the same from any trace.
* A node without an outage that starts inside its test part cannot be replayed (it would be down for the
  whole test part): :class:`~edgeoff.errors.TraceError`.

The replay (:class:`OutageReplay`), for R repetitions and S sites: repetition ``r`` meets site ``s``'s test
part from the offset ``u[r, s] · length`` (``u`` uniform in [0, 1), given by the caller so that common random
numbers stay aligned), and the test part repeats when simulated time runs past its end. Simulated time maps
to trace time with the chain's time compression: ``c`` trace seconds per simulated second, so a trace hour
lasts ``3600 / c`` simulated seconds (the two-state chain's mean up time is ``MTTF · 3600 / c`` the same
way). An outage lasts at least :data:`MIN_OUTAGE_MIN` (a record fixed in the minute it started still failed
whoever arrived in that minute).

Queries are vectorised over repetitions and sites: :meth:`OutageReplay.up` (up or down at simulated time
``t``), :meth:`OutageReplay.until_change` (simulated seconds to the next change of state) and
:meth:`OutageReplay.since_change` (since the last one, for the detector view).

This module is pure: numpy only, no I/O, no clock; its only randomness is the seeded offsets of
:meth:`OutageReplay.from_seed`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgeoff.errors import TraceError
from edgeoff.traces.model import (
    FloatArray,
    NodeTrace,
    TwoStateModel,
    merge_intervals,
    two_state_model,
)

__all__ = [
    "DEFAULT_TRAIN_FRACTION",
    "MIN_OUTAGE_MIN",
    "OutageReplay",
    "ReplayNode",
    "past_trace",
    "replay_node",
    "train_end_h",
    "training_chain",
    "training_trace",
]

IntArray = npt.NDArray[np.int64]

DEFAULT_TRAIN_FRACTION = 0.8
"""Chronological train/test split of a node's span (PARAMETERS.md: 80/20)."""

MIN_OUTAGE_MIN = 1
"""Shortest replayed outage, minutes: the resolution of the LANL time stamps."""

MINUTES_PER_HOUR = 60
SECONDS_PER_MINUTE = 60.0


def _minutes(hours: FloatArray) -> IntArray:
    """Hours since the epoch -> whole minutes (the table's hours are whole minutes up to rounding)."""
    return np.round(np.asarray(hours, dtype=np.float64) * MINUTES_PER_HOUR).astype(np.int64)


def _check_fraction(train_fraction: float) -> None:
    if not 0.0 < train_fraction < 1.0:
        raise TraceError(f"train_fraction must lie in (0, 1), got {train_fraction}")


def _test_start_min(outages_min: IntArray, train_fraction: float) -> int:
    start, end = int(outages_min[0, 0]), int(outages_min[-1, 1])
    return start + math.floor(train_fraction * (end - start))


def train_end_h(trace: NodeTrace, train_fraction: float = DEFAULT_TRAIN_FRACTION) -> float:
    """End of the node's training part = start of its test part, hours since the epoch (a whole minute)."""
    _check_fraction(train_fraction)
    return _test_start_min(_minutes(trace.outages), train_fraction) / MINUTES_PER_HOUR


def past_trace(trace: NodeTrace, cutoff_h: float) -> NodeTrace | None:
    """The outages that ended by ``cutoff_h`` (hours since the epoch); None if there are none."""
    seen = trace.outages[trace.outages[:, 1] <= cutoff_h]
    return NodeTrace(node=trace.node, outages=seen) if len(seen) else None


def training_trace(trace: NodeTrace, train_fraction: float = DEFAULT_TRAIN_FRACTION) -> NodeTrace | None:
    """The training part: the outages that ended by the start of the test part; None if there are none."""
    return past_trace(trace, train_end_h(trace, train_fraction))


def training_chain(trace: NodeTrace, train_fraction: float = DEFAULT_TRAIN_FRACTION) -> TwoStateModel | None:
    """The two-state chain fitted on the training part (hours); None with fewer than two training outages."""
    past = training_trace(trace, train_fraction)
    return two_state_model(past) if past is not None and past.failures >= 2 else None


@dataclass(frozen=True, eq=False)
class ReplayNode:
    """A node's test part: ``[start_min, end_min]`` and its merged outages inside it, shape (k, 2), k >= 1,
    rows ``[start, end]`` in whole minutes since the epoch, clipped to the test part, sorted and disjoint."""

    node: str
    start_min: int
    end_min: int
    outages_min: IntArray

    def __post_init__(self) -> None:
        outages = np.array(self.outages_min, dtype=np.int64).reshape(-1, 2)
        if not self.start_min < self.end_min:
            raise TraceError(f"node {self.node}: empty test part [{self.start_min}, {self.end_min}]")
        if len(outages) == 0 or not np.any(outages[:, 0] > self.start_min):
            raise TraceError(
                f"node {self.node}: no outage starts in its test part (minutes {self.start_min}.."
                f"{self.end_min} since the epoch): nothing to replay"
            )
        inside = (outages[:, 0] >= self.start_min) & (outages[:, 1] <= self.end_min)
        ordered = np.all(outages[:, 1] >= outages[:, 0]) and np.all(outages[1:, 0] > outages[:-1, 1])
        if not (np.all(inside) and ordered):
            raise TraceError(
                f"node {self.node}: test-part outages must be sorted, disjoint and inside the test part"
            )
        outages.setflags(write=False)
        object.__setattr__(self, "outages_min", outages)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReplayNode):
            return NotImplemented
        return (self.node, self.start_min, self.end_min) == (other.node, other.start_min, other.end_min) and (
            np.array_equal(self.outages_min, other.outages_min)
        )

    __hash__ = None  # type: ignore[assignment]  # holds an array: equal by value, not hashable

    @property
    def length_min(self) -> int:
        """Length of the test part, minutes."""
        return self.end_min - self.start_min

    def down_share(self) -> float:
        """Share of the test part the node is down (outages at least :data:`MIN_OUTAGE_MIN` long)."""
        down = _replayed_outages(self)
        return float((down[:, 1] - down[:, 0]).sum() / self.length_min)


def replay_node(trace: NodeTrace, train_fraction: float = DEFAULT_TRAIN_FRACTION) -> ReplayNode:
    """The test part of a node's trace and its outages (clipped to it); TraceError when none starts in it."""
    _check_fraction(train_fraction)
    outages = _minutes(trace.outages)
    start, end = _test_start_min(outages, train_fraction), int(outages[-1, 1])
    inside = outages[outages[:, 1] > start]
    clipped = np.column_stack((np.maximum(inside[:, 0], start), inside[:, 1]))
    return ReplayNode(node=trace.node, start_min=start, end_min=end, outages_min=clipped)


def _replayed_outages(node: ReplayNode) -> FloatArray:
    """Outages relative to the test part's start, minutes, at least MIN_OUTAGE_MIN long, merged, within
    [0, length]: shape (k, 2) float."""
    relative = (node.outages_min - node.start_min).astype(np.float64)
    relative[:, 1] = np.minimum(np.maximum(relative[:, 1], relative[:, 0] + MIN_OUTAGE_MIN), node.length_min)
    return merge_intervals(relative)


@dataclass(frozen=True)
class _SiteLoop:
    """One node's test part as a loop of ``length`` minutes: down intervals ``[starts, ends)`` (k,), and the
    positions in ``[0, length)`` where the state changes, sorted (m,)."""

    length: float
    starts: FloatArray
    ends: FloatArray
    changes: FloatArray

    @classmethod
    def of(cls, node: ReplayNode) -> _SiteLoop:
        down = _replayed_outages(node)
        length = float(node.length_min)
        starts, ends = down[:, 0], down[:, 1]
        wraps = ends[-1] >= length and starts[0] <= 0.0  # down across the loop's seam: not a change
        changes = np.concatenate((starts, np.mod(ends, length)))
        if wraps:
            changes = changes[changes != 0.0]
        return cls(length=length, starts=starts, ends=ends, changes=np.unique(changes))

    def down_at(self, position: FloatArray) -> npt.NDArray[np.bool_]:
        """Down at positions in [0, length) minutes, any shape."""
        i = np.searchsorted(self.starts, position, side="right") - 1
        down: npt.NDArray[np.bool_] = (i >= 0) & (position < self.ends[np.maximum(i, 0)])
        return down

    def until_change(self, position: FloatArray) -> FloatArray:
        """Minutes from positions in [0, length) to the next change of state (always finite: k >= 1)."""
        j = np.searchsorted(self.changes, position, side="right")
        wrapped = j >= self.changes.size
        following = self.changes[np.minimum(j, self.changes.size - 1)]
        out: FloatArray = np.where(wrapped, self.changes[0] + self.length, following) - position
        return out

    def since_change(self, position: FloatArray) -> FloatArray:
        """Minutes from the last change of state (at or before the positions, looping back) to them."""
        j = np.searchsorted(self.changes, position, side="right") - 1
        previous = np.where(j < 0, self.changes[-1] - self.length, self.changes[np.maximum(j, 0)])
        out: FloatArray = position - previous
        return out


class OutageReplay:
    """Real outages of S sites for R repetitions, in simulated seconds since each repetition's start.

    Args:
        nodes: per site, its :class:`ReplayNode`, or None for a site that never fails (the phone), (S,).
        uniform: offsets as fractions of each test part, shape (R, S), values in [0, 1).
        time_compression: trace seconds per simulated second, > 0 (the chain's compression).
    """

    def __init__(
        self, nodes: Sequence[ReplayNode | None], uniform: npt.ArrayLike, time_compression: float
    ) -> None:
        u = np.asarray(uniform, dtype=np.float64)
        if u.ndim != 2 or u.shape[1] != len(nodes):
            raise TraceError(f"offsets must have shape (R, {len(nodes)}), got {u.shape}")
        if u.size and not (np.all(u >= 0.0) and np.all(u < 1.0)):
            raise TraceError("offsets must be uniforms in [0, 1)")
        if not (math.isfinite(time_compression) and time_compression > 0):
            raise TraceError(f"time compression must be a positive number, got {time_compression}")
        self.nodes = tuple(nodes)
        self.reps, self.n_sites = u.shape
        self.time_compression = float(time_compression)
        self._loops = [None if node is None else _SiteLoop.of(node) for node in self.nodes]
        lengths = np.array([0.0 if loop is None else loop.length for loop in self._loops])
        self.offset_min: FloatArray = u * lengths
        """Where each repetition enters each site's test part, minutes from its start, shape (R, S)."""

    @classmethod
    def from_seed(
        cls, nodes: Sequence[ReplayNode | None], reps: int, seed: Sequence[int], time_compression: float
    ) -> OutageReplay:
        """R = ``reps`` repetitions with offsets drawn from ``numpy.random.default_rng(seed)``: the same seed,
        the same offsets (every engine meets the same outages)."""
        if reps < 0:
            raise TraceError(f"repetitions must be >= 0, got {reps}")
        uniform = np.random.default_rng(list(seed)).random((reps, len(nodes)))
        return cls(nodes, uniform, time_compression)

    def _positions(self, t_s: npt.ArrayLike) -> FloatArray:
        """Trace minutes into each loop at simulated times ``t_s`` (scalar, (R,) or (R, S)), shape (R, S)."""
        t = np.asarray(t_s, dtype=np.float64)
        if t.ndim == 1:
            t = t[:, None]
        if not np.all(np.isfinite(t)) or np.any(t < 0):
            raise TraceError("simulated times must be finite and non-negative")
        minutes = t * self.time_compression / SECONDS_PER_MINUTE
        out: FloatArray = np.broadcast_to(self.offset_min + minutes, (self.reps, self.n_sites)).copy()
        for s, loop in enumerate(self._loops):
            if loop is not None:
                out[:, s] = np.mod(out[:, s], loop.length)
        return out

    def up(self, t_s: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Up (True) or down per repetition and site at simulated seconds ``t_s``: shape (R, S)."""
        position = self._positions(t_s)
        up = np.ones((self.reps, self.n_sites), dtype=bool)
        for s, loop in enumerate(self._loops):
            if loop is not None:
                up[:, s] = ~loop.down_at(position[:, s])
        return up

    def until_change(self, t_s: npt.ArrayLike) -> FloatArray:
        """Simulated seconds from ``t_s`` to each site's next change of state, shape (R, S); +inf for a site
        that never fails. ``t_s + until_change(t_s)`` is the time of the next change."""
        return self._per_site(t_s, _SiteLoop.until_change)

    def since_change(self, t_s: npt.ArrayLike) -> FloatArray:
        """Simulated seconds since each site's last change of state at ``t_s``, shape (R, S), counted through
        the loop (the test part before the repetition's offset is its past too); +inf for a site that never
        fails. What the detector view needs: a site down for at least the detection time is known down."""
        return self._per_site(t_s, _SiteLoop.since_change)

    def _per_site(
        self, t_s: npt.ArrayLike, query: Callable[[_SiteLoop, FloatArray], FloatArray]
    ) -> FloatArray:
        position = self._positions(t_s)
        out = np.full((self.reps, self.n_sites), np.inf)
        for s, loop in enumerate(self._loops):
            if loop is not None:
                out[:, s] = query(loop, position[:, s]) * SECONDS_PER_MINUTE / self.time_compression
        return out
