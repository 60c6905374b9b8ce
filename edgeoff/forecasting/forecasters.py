"""The forecasters besides the SVRs: the naive references, the MTTF reliability, an exponentially
weighted mean, the two-state chain one step ahead, and a wrapper that bounds training.

Every forecaster follows the :class:`edgeoff.forecasting.series.Forecaster` protocol (``name``, ``lags``,
``fit(history)``, ``predict_next(recent)``, ``predict_many(recent_windows)``): it predicts the NEXT value of
an availability series (daily availabilities, or hourly up/down states) from PAST values only.

* :class:`LastValueForecaster` and :class:`TrainingMeanForecaster`: the naive references
  (:data:`NAIVE_FORECASTERS`) every selected model must beat.
* :class:`MTTFForecaster`: the prototype's EFPO estimate ``exp(-window / MTTF)``.
* :class:`EWMForecaster`: exponentially weighted mean of the last ``lags`` values; ``alpha`` is given or
  chosen on the training history (lowest one-step squared error over :data:`EWM_ALPHA_GRID`).
* :class:`MarkovForecaster`: the two-state chain (:class:`~edgeoff.traces.TwoStateModel`) one step ahead of
  the current state; a lag-1 forecaster for the hourly up/down series.
* :class:`RecentHistoryForecaster`: wraps any forecaster so that ``fit`` sees only the most recent samples
  (bounds SVR training time on long hourly series).

Errors: everything here raises :class:`edgeoff.errors.PredictionError`.

This module is pure: numpy only, no I/O, no clock, no randomness.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from edgeoff.errors import PredictionError
from edgeoff.forecasting.series import FloatArray, Forecaster, as_series, as_windows, last_values
from edgeoff.traces import TwoStateModel

__all__ = [
    "DEFAULT_EWM_LAGS",
    "EWM_ALPHA_GRID",
    "NAIVE_FORECASTERS",
    "EWMForecaster",
    "LastValueForecaster",
    "MTTFForecaster",
    "MarkovForecaster",
    "RecentHistoryForecaster",
    "TrainingMeanForecaster",
    "is_naive",
]

DEFAULT_EWM_LAGS = 30
"""Window of :class:`EWMForecaster`: a month of daily values (weights beyond it are dropped, the rest
renormalised)."""

EWM_ALPHA_GRID: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
"""Smoothing factors :class:`EWMForecaster` chooses from when ``alpha`` is not given."""


class LastValueForecaster:
    """Persistence baseline: tomorrow's availability equals today's."""

    name: str = "last-value"

    @property
    def lags(self) -> int:
        """Reads the single most recent value."""
        return 1

    def fit(self, history: npt.ArrayLike) -> LastValueForecaster:
        """Nothing to learn; validates ``history`` (shape (n,), n >= 1)."""
        if as_series(history).size < 1:
            raise PredictionError("history is empty")
        return self

    def predict_next(self, recent: npt.ArrayLike) -> float:
        """The last value of ``recent`` (shape (r,), r >= 1)."""
        return float(last_values(recent, 1)[0])

    def predict_many(self, recent_windows: npt.ArrayLike) -> FloatArray:
        """The last column of ``recent_windows`` (shape (k, 1)), shape (k,)."""
        return as_windows(recent_windows, 1)[:, -1].copy()


class TrainingMeanForecaster:
    """Constant baseline: the mean availability of the training history, whatever happened recently."""

    name: str = "training-mean"

    def __init__(self) -> None:
        self.mean_: float | None = None

    @property
    def lags(self) -> int:
        """Reads no recent values."""
        return 0

    def fit(self, history: npt.ArrayLike) -> TrainingMeanForecaster:
        """Learn the mean of ``history`` (shape (n,), n >= 1)."""
        values = as_series(history)
        if values.size < 1:
            raise PredictionError("history is empty")
        self.mean_ = float(values.mean())
        return self

    def _mean(self) -> float:
        if self.mean_ is None:
            raise PredictionError("TrainingMeanForecaster is not fitted: call fit(history) first")
        return self.mean_

    def predict_next(self, recent: npt.ArrayLike) -> float:
        """The training mean; ``recent`` is ignored."""
        return self._mean()

    def predict_many(self, recent_windows: npt.ArrayLike) -> FloatArray:
        """The training mean for each of the k rows of ``recent_windows`` (shape (k, 0)), shape (k,)."""
        mean = self._mean()
        return np.full(as_windows(recent_windows, 0).shape[0], mean)


class MTTFForecaster:
    """MTBF-style estimate of the comparison engine: ``exp(-window_h / mttf_h)``.

    This is a *reliability*, the probability that an exponentially distributed time to failure with mean
    ``mttf_h`` exceeds ``window_h`` (no failure at all during the window), not the fraction of the window the
    node is up: it ignores repair time (MTTR) and is pessimistic for availability. It reproduces how the
    prototype's EFPO engine estimated availability from the MTBF. It is constant: history and recent values
    are ignored.

    Args:
        mttf_h: mean time to failure, hours, > 0.
        window_h: length of the forecast window, hours, > 0 (24 for daily availability).
    """

    name: str = "mttf"

    def __init__(self, mttf_h: float, window_h: float) -> None:
        if not (math.isfinite(mttf_h) and mttf_h > 0.0):
            raise PredictionError(f"mttf_h must be a positive number of hours, got {mttf_h!r}")
        if not (math.isfinite(window_h) and window_h > 0.0):
            raise PredictionError(f"window_h must be a positive number of hours, got {window_h!r}")
        self.mttf_h = mttf_h
        self.window_h = window_h
        self.reliability = math.exp(-window_h / mttf_h)

    @property
    def lags(self) -> int:
        """Reads no recent values."""
        return 0

    def fit(self, history: npt.ArrayLike) -> MTTFForecaster:
        """Nothing to learn from ``history`` (validated only); MTTF is given. Returns self."""
        as_series(history)
        return self

    def predict_next(self, recent: npt.ArrayLike) -> float:
        """``exp(-window_h / mttf_h)``; ``recent`` is ignored."""
        return self.reliability

    def predict_many(self, recent_windows: npt.ArrayLike) -> FloatArray:
        """``exp(-window_h / mttf_h)`` for each row of ``recent_windows`` (shape (k, 0)); shape (k,)."""
        return np.full(as_windows(recent_windows, 0).shape[0], self.reliability)


NAIVE_FORECASTERS: tuple[type, ...] = (LastValueForecaster, TrainingMeanForecaster)
"""The naive references every selected model must beat."""

# --------------------------------------------------------------------------- exponentially weighted mean


def _ewm_weights(alpha: float, lags: int) -> FloatArray:
    """Weights for windows ordered oldest first, shape (lags,), summing to 1; the newest weighs most."""
    newest_first = alpha * (1.0 - alpha) ** np.arange(lags, dtype=np.float64)
    return np.ascontiguousarray((newest_first / newest_first.sum())[::-1])


class EWMForecaster:
    """Exponentially weighted mean of the last ``lags`` values: ``sum_j w_j x_{t-1-j}``, ``w_j ∝ α(1-α)^j``.

    With ``alpha=None`` (default), ``fit`` picks ``alpha`` from :data:`EWM_ALPHA_GRID`: the one with the
    lowest mean squared one-step error over the training history (a weighted mean estimates a mean, which
    squared error rewards). With a given ``alpha``, ``fit`` only validates.

    Args:
        alpha: smoothing factor in (0, 1], or None to choose it in ``fit``.
        lags: window length, >= 1.

    Attributes:
        alpha_: the smoothing factor in use (after ``fit`` when ``alpha`` is None).
    """

    name: str = "ewm"

    def __init__(self, alpha: float | None = None, *, lags: int = DEFAULT_EWM_LAGS) -> None:
        if alpha is not None and not (math.isfinite(alpha) and 0.0 < alpha <= 1.0):
            raise PredictionError(f"alpha must lie in (0, 1], got {alpha!r}")
        if lags < 1:
            raise PredictionError(f"lags must be >= 1, got {lags}")
        self.alpha = alpha
        self._lags = lags
        self.alpha_: float | None = alpha
        self._weights: FloatArray | None = None if alpha is None else _ewm_weights(alpha, lags)

    @property
    def lags(self) -> int:
        """Number of most recent values a forecast reads."""
        return self._lags

    def fit(self, history: npt.ArrayLike) -> EWMForecaster:
        """Validate ``history`` (shape (n,)); choose ``alpha`` on it when not given (needs n > lags)."""
        values = as_series(history, what="history")
        if self.alpha is not None:
            if values.size < 1:
                raise PredictionError("history is empty")
            return self
        if values.size <= self._lags:
            raise PredictionError(
                f"history of length {values.size} is too short to choose alpha with {self._lags} lags"
            )
        targets = values[self._lags :]
        best: tuple[float, float] | None = None
        for alpha in EWM_ALPHA_GRID:
            # 'valid' convolution with the reversed oldest-first weights = one forecast per window.
            forecasts = np.convolve(values[:-1], _ewm_weights(alpha, self._lags)[::-1], mode="valid")
            error = float(np.mean((forecasts - targets) ** 2))
            if best is None or error < best[0]:
                best = (error, alpha)
        assert best is not None
        self.alpha_ = best[1]
        self._weights = _ewm_weights(best[1], self._lags)
        return self

    def _fitted_weights(self) -> FloatArray:
        if self._weights is None:
            raise PredictionError("EWMForecaster is not fitted: call fit(history) first")
        return self._weights

    def predict_next(self, recent: npt.ArrayLike) -> float:
        """Weighted mean of the last ``lags`` values of ``recent`` (shape (r,), r >= lags)."""
        weights = self._fitted_weights()
        return float(np.clip(last_values(recent, self._lags) @ weights, 0.0, 1.0))

    def predict_many(self, recent_windows: npt.ArrayLike) -> FloatArray:
        """Weighted mean of each row of ``recent_windows`` (shape (k, lags)); shape (k,)."""
        weights = self._fitted_weights()
        return np.clip(as_windows(recent_windows, self._lags) @ weights, 0.0, 1.0)


# --------------------------------------------------------------------------- two-state chain


class MarkovForecaster:
    """One step of the two-state chain: P(up at t+1) given the state at t.

    ``P(up | up) = 1 - p_fail(step_h) = exp(-step_h / MTTF)`` and ``P(up | down) = p_repair(step_h) =
    1 - exp(-step_h / MTTR)`` (:class:`~edgeoff.traces.TwoStateModel`). A fractional last value ``x`` (a
    window partly up) is read as P(up) = x, giving ``x · P(up|up) + (1 - x) · P(up|down)``. The model's MTTF
    and MTTR are given (fitted by the caller on the training part's outages); ``fit`` only validates.

    Args:
        model: the node's two-state model, hours.
        step_h: the series' step, hours, > 0 (1 for the hourly up/down series).
    """

    name: str = "markov"

    def __init__(self, model: TwoStateModel, step_h: float) -> None:
        if not (math.isfinite(step_h) and step_h > 0.0):
            raise PredictionError(f"step_h must be a positive number of hours, got {step_h!r}")
        self.model = model
        self.step_h = step_h
        self.p_up_given_up = 1.0 - model.p_fail(step_h)
        self.p_up_given_down = model.p_repair(step_h)

    @property
    def lags(self) -> int:
        """Reads the current state only."""
        return 1

    def fit(self, history: npt.ArrayLike) -> MarkovForecaster:
        """Nothing to learn from ``history`` (validated only): MTTF and MTTR are given."""
        as_series(history, what="history")
        return self

    def _next(self, state: FloatArray) -> FloatArray:
        return state * self.p_up_given_up + (1.0 - state) * self.p_up_given_down

    def predict_next(self, recent: npt.ArrayLike) -> float:
        """P(up next) from the last value of ``recent`` (shape (r,), r >= 1)."""
        return float(self._next(last_values(recent, 1))[0])

    def predict_many(self, recent_windows: npt.ArrayLike) -> FloatArray:
        """P(up next) for each row of ``recent_windows`` (shape (k, 1)); shape (k,)."""
        return self._next(as_windows(recent_windows, 1)[:, 0])


# --------------------------------------------------------------------------- bounded training


class RecentHistoryForecaster:
    """Any forecaster, fitted on the most recent ``max_samples`` training samples only.

    ``fit(history)`` passes ``history[-(max_samples + lags):]`` to the wrapped forecaster, i.e. at most
    ``max_samples`` (window, target) pairs. Forecasts are the wrapped forecaster's. Name and lags are the
    wrapped forecaster's, so reports read the same.

    Args:
        inner: the forecaster to wrap.
        max_samples: most training samples, >= 2.
    """

    def __init__(self, inner: Forecaster, max_samples: int) -> None:
        if max_samples < 2:
            raise PredictionError(f"max_samples must be >= 2, got {max_samples}")
        self.inner = inner
        self.max_samples = max_samples
        self.name = inner.name

    @property
    def lags(self) -> int:
        """The wrapped forecaster's lags."""
        return self.inner.lags

    def fit(self, history: npt.ArrayLike) -> RecentHistoryForecaster:
        """Fit the wrapped forecaster on the tail of ``history`` (shape (n,))."""
        values = np.asarray(history, dtype=np.float64)
        self.inner.fit(values[max(0, values.shape[0] - self.max_samples - self.inner.lags) :])
        return self

    def predict_next(self, recent: npt.ArrayLike) -> float:
        """The wrapped forecaster's forecast."""
        return self.inner.predict_next(recent)

    def predict_many(self, recent_windows: npt.ArrayLike) -> FloatArray:
        """The wrapped forecaster's forecasts, shape (k,)."""
        return self.inner.predict_many(recent_windows)


def is_naive(forecaster: Forecaster) -> bool:
    """True for the naive references (:data:`NAIVE_FORECASTERS`), also when wrapped."""
    if isinstance(forecaster, RecentHistoryForecaster):
        return is_naive(forecaster.inner)
    return isinstance(forecaster, NAIVE_FORECASTERS)
