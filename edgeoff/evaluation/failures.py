"""The sites' failure process in continuous trace time, vectorised over repetitions (R) and sites (S).

Every site's path is an alternation of up and down periods, stored as the times of its changes of state:
`changes` (R, S, K), increasing along K, with the state before the first change `up0` (R, S) and the
time of the change before it `since0` (R, S) (negative: the period under way at time 0 began earlier).
The simulator asks :meth:`ChangePath.state_at` for the state at each row's clock: up or down, since when,
until when, and when the period after that ends. Clocks only move forward, so each row keeps a pointer
into its changes.

Two sources of paths share this interface (issue 9's interval replay plugs in as a third):

- :func:`markov_path`: each site's node's two-state chain (edgeoff.chain), exact in continuous time. The
  state at time 0 is drawn from the steady state, the age of the current period and every later period
  by inversion of uniforms (memoryless: exponential sojourns of mean MTTF up, MTTR down). The path grows
  in blocks drawn from the group's own generator, so it is the same however far a run reads it.
- :func:`fixed_path`: given change times, e.g. a live run's injected schedule (`edgeoff twin`).

Times are trace hours throughout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edgeoff import chain

__all__ = [
    "BLOCK",
    "ChangePath",
    "ChangeQueries",
    "SiteState",
    "fixed_path",
    "markov_path",
    "queried_path",
    "stack_paths",
]

BLOCK = 16  # periods drawn per extension of a Markov path


@dataclass(frozen=True)
class SiteState:
    """State of every site at the queried times: arrays (R, S)."""

    up: np.ndarray
    since: np.ndarray  # time of the last change of state (start of the current period)
    until: np.ndarray  # time of the next change (end of the current period)
    after: np.ndarray  # end of the period after the current one


Extend = Callable[[], np.ndarray]  # the next block of change times (R, S, B), continuing the path


class ChangePath:
    """A path of up/down periods per (repetition, site); see the module docstring."""

    def __init__(
        self, up0: np.ndarray, since0: np.ndarray, changes: np.ndarray, extend: Extend | None = None
    ) -> None:
        self.up0 = up0.astype(bool)
        self.since0 = since0.astype(float)
        self.changes = changes.astype(float)
        self._extend = extend
        self.idx = np.zeros(up0.shape, dtype=np.int64)  # changes at or before the last query
        self._rows = np.arange(up0.shape[0])[:, None]
        self._cols = np.arange(up0.shape[1])[None, :]
        self._state: SiteState | None = None  # the state at the last query

    @property
    def shape(self) -> tuple[int, int]:
        r, s = self.up0.shape
        return int(r), int(s)

    def _ensure(self, need: int) -> None:
        """At least `need` changes stored per row (a fixed path ends with +inf)."""
        while self.changes.shape[2] < need:
            if self._extend is None:
                pad = np.full((*self.shape, need - self.changes.shape[2]), np.inf)
                self.changes = np.concatenate([self.changes, pad], axis=2)
            else:
                self.changes = np.concatenate([self.changes, self._extend()], axis=2)

    def ensure_until(self, t: float) -> None:
        """Store the path of every row at least up to time `t`."""
        while self._extend is not None and self.changes[:, :, -1].min() < t:
            self.changes = np.concatenate([self.changes, self._extend()], axis=2)

    def state_at(self, t: np.ndarray) -> SiteState:
        """The state at times `t` (R,) (one per row, never earlier than the row's previous query)."""
        tt = np.asarray(t, dtype=float)[:, None]
        if self._state is not None and not (self._state.until <= tt).any():
            return self._state  # no row crossed a change since the last query
        while True:
            self._ensure(int(self.idx.max()) + 3)
            moved = self.changes[self._rows, self._cols, self.idx] <= tt
            if not moved.any():
                break
            self.idx += moved
        idx = self.idx
        prev = np.where(idx > 0, self.changes[self._rows, self._cols, np.maximum(idx - 1, 0)], self.since0)
        self._state = SiteState(
            up=self.up0 ^ (idx % 2 == 1),
            since=prev,
            until=self.changes[self._rows, self._cols, idx],
            after=self.changes[self._rows, self._cols, idx + 1],
        )
        return self._state

    def uptime(self, boundaries: np.ndarray) -> np.ndarray:
        """Trace hours each site was up in [0, b) for each boundary b (n,): shape (R, S, n).

        The path must be stored up to the last boundary (:meth:`ensure_until`).
        """
        b = np.asarray(boundaries, dtype=float)
        r, s = self.shape
        finite = np.clip(self.changes, 0.0, 1e18)  # +inf: a period that never ends
        starts = np.concatenate([np.zeros((r, s, 1)), finite], axis=2)
        lengths = np.diff(np.concatenate([starts, np.full((r, s, 1), np.inf)], axis=2), axis=2)
        k = np.arange(starts.shape[2])
        up_period = self.up0[:, :, None] ^ (k % 2 == 1)[None, None, :]
        done = np.where(up_period, np.nan_to_num(lengths, posinf=0.0), 0.0)
        cum = np.concatenate([np.zeros((r, s, 1)), np.cumsum(done, axis=2)], axis=2)  # up before start k
        out = np.empty((r, s, b.size))
        for i in range(r):
            for j in range(s):
                pos = np.searchsorted(starts[i, j], b, side="right") - 1  # the period containing b
                partial = np.where(up_period[i, j, pos], b - starts[i, j, pos], 0.0)
                out[i, j] = cum[i, j, pos] + partial
        return out


def _sojourn(up: np.ndarray, mean_up: np.ndarray, mean_down: np.ndarray, u: np.ndarray) -> np.ndarray:
    """edgeoff.chain.sample_sojourn, with a period of infinite mean lasting forever (never NaN)."""
    with np.errstate(invalid="ignore"):
        out: np.ndarray = np.nan_to_num(chain.sample_sojourn(up, mean_up, mean_down, u), nan=np.inf)
    return out


def markov_path(
    mean_up: np.ndarray, mean_down: np.ndarray, reps: int, rng: np.random.Generator
) -> ChangePath:
    """Paths of `reps` repetitions of sites with chains (S,) of means `mean_up`, `mean_down` (trace
    hours; a site that never fails has mean_up inf). Draws come only from `rng`, in a fixed order."""
    up_m, down_m = np.asarray(mean_up, dtype=float), np.asarray(mean_down, dtype=float)
    shape = (reps, up_m.size)
    up0 = rng.random(shape) < chain.p_up_after(False, np.inf, up_m, down_m)
    age = _sojourn(up0, up_m, down_m, rng.random(shape))
    first = _sojourn(up0, up_m, down_m, rng.random(shape))
    since0 = np.where(np.isfinite(age), -age, -np.inf)
    last, count = [first], [1]  # the time the next period starts, and its index

    def extend() -> np.ndarray:
        k0 = count[0]
        ks = k0 + np.arange(BLOCK)
        period_up = up0[:, :, None] ^ (ks % 2 == 1)[None, None, :]
        u = rng.random((*shape, BLOCK))
        sojourns = _sojourn(period_up, up_m[None, :, None], down_m[None, :, None], u)
        with np.errstate(over="ignore", invalid="ignore"):
            block = last[0][:, :, None] + np.cumsum(sojourns, axis=2)
        last[0] = block[:, :, -1]
        count[0] = k0 + BLOCK
        out: np.ndarray = block
        return out

    changes = np.concatenate([first[:, :, None], extend()], axis=2)
    return ChangePath(up0, since0, changes, extend)


class ChangeQueries(Protocol):
    """A failure process that answers queries at simulated (model) seconds, arrays (R, S): e.g. the replay
    of real LANL outages (edgeoff.traces.replay.OutageReplay)."""

    def up(self, t_s: np.ndarray) -> np.ndarray: ...

    def until_change(self, t_s: np.ndarray) -> np.ndarray: ...

    def since_change(self, t_s: np.ndarray) -> np.ndarray: ...


NUDGE_S = 1e-9  # query just after a change, so that it is behind (shorter than any replayed period)


def queried_path(source: ChangeQueries, trace_h_per_s: float) -> ChangePath:
    """A path read from `source` by its change times, converted to trace hours (x `trace_h_per_s`);
    it grows by BLOCK changes per row when the simulation reads past them."""
    zero = np.zeros(1)
    up0 = np.asarray(source.up(zero), dtype=bool)
    R, S = up0.shape
    since0 = -np.asarray(source.since_change(zero), dtype=float) * trace_h_per_s
    last = [np.zeros((R, S))]  # model seconds of the last change read

    def extend() -> np.ndarray:
        block = np.empty((R, S, BLOCK))
        t = last[0]
        for k in range(BLOCK):
            finite = np.isfinite(t)
            probe = np.where(finite, t, 0.0) + (NUDGE_S if k or t.any() else 0.0)
            nxt = np.empty((R, S))
            for s in range(S):  # each site's column at its own time
                nxt[:, s] = probe[:, s] + np.asarray(source.until_change(probe[:, s]), dtype=float)[:, s]
            t = np.where(finite, nxt, np.inf)
            block[:, :, k] = t
        last[0] = t
        out: np.ndarray = block * trace_h_per_s
        return out

    return ChangePath(up0, since0, extend(), extend)


def fixed_path(
    up0: np.ndarray, since0: np.ndarray, changes: Sequence[Sequence[Sequence[float]]]
) -> ChangePath:
    """A path from given change times per (row, site), e.g. a live run's injected schedule."""
    r, s = up0.shape
    width = max((len(c) for row in changes for c in row), default=0) + 2
    arr = np.full((r, s, width), np.inf)
    for i, row in enumerate(changes):
        for j, c in enumerate(row):
            arr[i, j, : len(c)] = c
    return ChangePath(up0, since0, arr)


def stack_paths(paths: Sequence[ChangePath]) -> ChangePath:
    """One path of all rows (groups stacked along R); each part keeps extending from its own generator,
    so every group's path is the same as when it runs alone."""
    if len(paths) == 1:
        return paths[0]
    width = max(p.changes.shape[2] for p in paths)
    for p in paths:
        p._ensure(width)

    def grow() -> np.ndarray:
        return np.concatenate(
            [p._extend() if p._extend is not None else np.full((*p.shape, BLOCK), np.inf) for p in paths]
        )

    return ChangePath(
        np.concatenate([p.up0 for p in paths]),
        np.concatenate([p.since0 for p in paths]),
        np.concatenate([p.changes[:, :, :width] for p in paths]),
        grow if any(p._extend is not None for p in paths) else None,
    )
