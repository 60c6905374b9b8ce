"""Availability forecasts in the simulator, as a live prediction worker makes them, window by window.

A forecaster maps the last `lags` availability windows (the share of each window a site was up, oldest
first) to the next window's. The forecast for window w (trace hours [w W, (w + 1) W)) uses the node's
history, then the windows 0 .. w-1 of the simulated path (exactly, from its change times), never the
future. The failure path does not depend on the engine, so neither do the forecasts: they are computed
once per window for every repetition at once, lazily, as the clocks reach new windows.

Engines use them through edgeoff.knowledge.engine_input, which maps a window forecast to the
probability that a site stays up for the task at hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from edgeoff.evaluation.failures import ChangePath

__all__ = ["Forecast", "WindowForecaster", "WindowForecasts"]

AHEAD = 8  # windows computed per batch


class WindowForecaster(Protocol):
    """What the simulator needs of a fitted availability forecaster."""

    @property
    def lags(self) -> int: ...

    def predict_many(self, recent: np.ndarray) -> np.ndarray:
        """Next-window availability (k,) from the last `lags` windows (k, lags), oldest first."""
        ...


class Forecast(Protocol):
    """Window availability forecasts (R, S) in force at each row's time `now` (R,) (trace hours)."""

    def at(self, now: np.ndarray) -> np.ndarray: ...


class WindowForecasts:
    """Forecasts of every row and site from a failure path; sites without a forecaster get 1.

    `sites` maps a site index to (forecaster, history) where history (n,) is the node's past windows;
    `row_groups` lists, per group of rows stacked in the path, that group's sites (groups differ by
    dataset).
    """

    def __init__(
        self,
        path: ChangePath,
        row_groups: Sequence[tuple[slice, Mapping[int, tuple[WindowForecaster, np.ndarray]]]],
        window_h: float,
    ) -> None:
        self.path = path
        self.groups = row_groups
        self.window_h = window_h
        R, S = path.shape
        self.table = np.ones((R, S, 0))  # forecasts per window
        self._rows = np.arange(R)

    def _grow(self, windows: int) -> None:
        done = self.table.shape[2]
        if windows <= done:
            return
        self.path.ensure_until(windows * self.window_h)
        bounds = np.arange(windows) * self.window_h  # observed windows 0 .. windows-2 needed
        observed = np.clip(np.diff(self.path.uptime(bounds), axis=2) / self.window_h, 0.0, 1.0)
        R, S = self.path.shape
        new = np.ones((R, S, windows - done))
        for rows, sites in self.groups:
            for site, (forecaster, history) in sites.items():
                lags = forecaster.lags
                seed = np.broadcast_to(history[history.size - lags :], (rows.stop - rows.start, lags))
                series = np.concatenate([seed, observed[rows, site]], axis=1)
                for w in range(done, windows):
                    new[rows, site, w - done] = np.clip(
                        forecaster.predict_many(series[:, w : w + lags]), 0, 1
                    )
        self.table = np.concatenate([self.table, new], axis=2)

    def at(self, now: np.ndarray) -> np.ndarray:
        window = np.floor(np.asarray(now) / self.window_h).astype(np.int64)
        need = int(window.max()) + 1
        if need > self.table.shape[2]:
            self._grow(need + AHEAD)
        out: np.ndarray = self.table[self._rows, :, window]
        return out
