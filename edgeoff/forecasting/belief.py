"""The belief forecaster (`mdp-belief`): what the two-state chain implies, given what the detector saw.

Per site, the probability that it stays up for the next task, given the detector's last observation
(up or down) and the time since it, from the site's two-state chain fitted on the training part
(:func:`edgeoff.traces.training_chain`):

    P(serves a task of length d) = P(up now | observed, time since) · P(no failure during d | up)
                                 = p_up_after(observed, since) · stays_up(d)          (edgeoff.chain)

Two faces of the same chain:

* :class:`ChainBelief`: the per-task probability, vectorised over repetitions and sites: what the engines
  with availability source ``belief`` (``mdp-belief``, ``dag-belief``) and the live prediction worker use.
* :class:`BeliefForecaster`: the :class:`~edgeoff.forecasting.series.Forecaster` protocol over an
  availability series of windows, so that the backtests and the per-site selection judge it like every
  other candidate. It reads the last window's value as the probability that the site is up at the window's
  end (observed at age 0, the same reading as :class:`~edgeoff.forecasting.forecasters.MarkovForecaster`)
  and forecasts the chain's expected availability of the next window: the mean of ``p_up_after`` over it.

A site without a chain (the phone, or a node with fewer than two training outages) never fails here:
probability 1. This module is pure: numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgeoff.chain import p_up_after, stays_up
from edgeoff.errors import PredictionError
from edgeoff.forecasting.series import FloatArray, as_series, as_windows, last_values
from edgeoff.traces import TwoStateModel

__all__ = ["BELIEF_NAME", "WINDOW_QUADRATURE_POINTS", "BeliefForecaster", "ChainBelief"]

BELIEF_NAME = "belief"

WINDOW_QUADRATURE_POINTS = 64
"""Midpoints at which ``p_up_after`` is averaged over a window: the error of the rule, of order
``((λ + μ) w / 64)²``, stays below 1e-4 even for a window as long as the site's mean repair time."""

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class ChainBelief:
    """Two-state chains of S sites. Every time here (means, time since, duration) is in one unit chosen by
    the caller, as in :mod:`edgeoff.chain`: trace hours, or simulated or wall seconds (:meth:`from_models`).

    Attributes:
        mean_up: mean up time (MTTF) per site, shape (S,); +inf for a site that never fails.
        mean_down: mean down time (MTTR) per site, shape (S,), >= 0.
    """

    mean_up: FloatArray
    mean_down: FloatArray

    def __post_init__(self) -> None:
        up = np.array(self.mean_up, dtype=np.float64)
        down = np.array(self.mean_down, dtype=np.float64)
        if up.ndim != 1 or up.shape != down.shape:
            raise PredictionError(f"mean_up {up.shape} and mean_down {down.shape} must be equal (S,)")
        valid_up = np.all(up > 0) and not np.any(np.isnan(up))  # +inf: never fails
        if not (valid_up and np.all(down >= 0) and np.all(np.isfinite(down))):
            raise PredictionError("mean up times must be > 0 (inf: never fails), down times finite and >= 0")
        for array in (up, down):
            array.setflags(write=False)
        object.__setattr__(self, "mean_up", up)
        object.__setattr__(self, "mean_down", down)

    @classmethod
    def from_models(cls, models: Sequence[TwoStateModel | None], time_compression: float) -> ChainBelief:
        """Chains in seconds of the caller's clock from per-site models in trace hours (None: never fails),
        ``time_compression`` trace seconds per second of that clock (the simulator's chain and replay)."""
        if not (math.isfinite(time_compression) and time_compression > 0):
            raise PredictionError(f"time compression must be a positive number, got {time_compression}")
        scale = SECONDS_PER_HOUR / time_compression
        up = [math.inf if m is None else m.mttf_h * scale for m in models]
        down = [0.0 if m is None else m.mttr_h * scale for m in models]
        return cls(np.array(up, dtype=np.float64), np.array(down, dtype=np.float64))

    @property
    def n_sites(self) -> int:
        return int(self.mean_up.shape[0])

    def p_up_now(self, observed_up: npt.ArrayLike, since: npt.ArrayLike) -> FloatArray:
        """P(up now | the last observation ``observed_up`` (bool or P(up)), ``since`` ago).

        Args broadcast against shape (..., S); the result has their broadcast shape.
        """
        observed = np.asarray(observed_up, dtype=np.float64)
        since = np.asarray(since, dtype=np.float64)
        if np.any(since < 0) or not np.all(np.isfinite(since)):
            raise PredictionError("the time since the last observation must be finite and >= 0")
        fails = np.isfinite(self.mean_up)
        up = np.where(fails, self.mean_up, 1.0)  # placeholders where the chain is not used
        with np.errstate(invalid="ignore"):
            chain = p_up_after(observed, since, up, self.mean_down)
        # age 0 is the observation itself (the closed form is 0 · inf there when the repair time is 0)
        now = np.where(since > 0, chain, observed)
        out: FloatArray = np.where(fails, now, 1.0)
        return out

    def stays_up_probability(
        self, observed_up: npt.ArrayLike, since: npt.ArrayLike, duration: npt.ArrayLike
    ) -> FloatArray:
        """P(up now and no failure for ``duration``): the belief an engine uses as a site's availability.

        Args:
            observed_up: the detector's last observation per site, bool (or P(up)), shape (..., S).
            since: the time since that observation, >= 0, broadcast to (..., S).
            duration: the time the task needs the site, >= 0, broadcast to (..., S) (e.g. (R, 1) per task).

        Returns:
            Probabilities in [0, 1], the broadcast shape (..., S).
        """
        duration = np.asarray(duration, dtype=np.float64)
        if np.any(duration < 0) or not np.all(np.isfinite(duration)):
            raise PredictionError("task durations must be finite and >= 0")
        out: FloatArray = self.p_up_now(observed_up, since) * stays_up(duration, self.mean_up)
        return out


class BeliefForecaster:
    """The chain's forecast of the next window of an availability series (lag 1).

    Args:
        model: the site's two-state model, hours (fitted on the training part), or None: never fails.
        window_h: trace hours per window of the series, > 0 (24 daily, 1 hourly).

    Attributes:
        next_if_up: expected availability of the next window when the last window ended up.
        next_if_down: the same when it ended down.
    """

    name: str = BELIEF_NAME

    def __init__(self, model: TwoStateModel | None, window_h: float) -> None:
        if not (math.isfinite(window_h) and window_h > 0.0):
            raise PredictionError(f"window_h must be a positive number of hours, got {window_h!r}")
        self.model = model
        self.window_h = window_h
        if model is None:
            self.next_if_up = self.next_if_down = 1.0
        else:
            midpoints = (np.arange(WINDOW_QUADRATURE_POINTS) + 0.5) / WINDOW_QUADRATURE_POINTS * window_h
            belief = ChainBelief(np.array([model.mttf_h]), np.array([model.mttr_h]))
            self.next_if_up = float(belief.p_up_now(True, midpoints[:, None]).mean())
            self.next_if_down = float(belief.p_up_now(False, midpoints[:, None]).mean())

    @property
    def lags(self) -> int:
        """Reads the last window only."""
        return 1

    def fit(self, history: npt.ArrayLike) -> BeliefForecaster:
        """Nothing to learn from ``history`` (validated only): the chain is fitted on the training outages."""
        as_series(history, what="history")
        return self

    def _next(self, state: FloatArray) -> FloatArray:
        out: FloatArray = state * self.next_if_up + (1.0 - state) * self.next_if_down
        return out

    def predict_next(self, recent: npt.ArrayLike) -> float:
        """Expected availability of the window after ``recent`` (shape (r,), r >= 1)."""
        return float(self._next(last_values(recent, 1))[0])

    def predict_many(self, recent_windows: npt.ArrayLike) -> FloatArray:
        """Expected availability after each row of ``recent_windows`` (shape (k, 1)); shape (k,)."""
        return self._next(as_windows(recent_windows, 1)[:, 0])

    def per_task(self, duration_h: float) -> float:
        """P(stays up for a task of ``duration_h`` trace hours | observed up just now): what the live worker
        publishes while its detector holds the site up and this forecaster is the site's choice."""
        if self.model is None:
            return 1.0
        belief = ChainBelief(np.array([self.model.mttf_h]), np.array([self.model.mttr_h]))
        return float(belief.stays_up_probability(True, 0.0, duration_h)[0])
