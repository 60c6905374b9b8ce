"""What every forecaster reads: an availability series, its lagged windows, and the Forecaster protocol.

A node's availability series is a 1-D float array of availabilities in [0, 1] (daily availabilities, 1.0 =
up all day; or hourly up/down states), oldest first. Every forecaster predicts the NEXT value from PAST
values only:

* :func:`lagged` turns a series into a supervised problem, ``X[i]`` = the ``lags`` previous values (oldest
  first) and ``y[i]`` = the value that followed them.
* :func:`as_series`, :func:`as_windows` and :func:`last_values` validate the input every forecaster takes.
* :class:`Forecaster` is the small protocol shared by backtests, the offline simulator and the live
  prediction worker.

Errors: :class:`edgeoff.errors.PredictionError`. This module is pure: numpy only.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from edgeoff.errors import PredictionError

__all__ = [
    "DEFAULT_LAGS",
    "DEFAULT_TRAIN_FRACTION",
    "FloatArray",
    "Forecaster",
    "as_series",
    "as_windows",
    "lagged",
    "last_values",
]

FloatArray = npt.NDArray[np.float64]

DEFAULT_LAGS = 7
"""Lag window of the SVR forecaster: one week of daily availabilities."""

DEFAULT_TRAIN_FRACTION = 0.8
"""Chronological train/test split of the backtests (PARAMETERS.md: train/test split 80/20)."""


def as_series(series: npt.ArrayLike, *, what: str = "availability series") -> FloatArray:
    """Return ``series`` as a 1-D float64 array of finite values in [0, 1], else raise PredictionError."""
    try:
        array = np.asarray(series, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise PredictionError(f"{what} is not numeric: {error}") from error
    if array.ndim != 1:
        raise PredictionError(f"{what} must be 1-D, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise PredictionError(f"{what} contains NaN or infinite values")
    if array.size and (array.min() < 0.0 or array.max() > 1.0):
        raise PredictionError(
            f"{what} must lie in [0, 1], got values in [{array.min():.6g}, {array.max():.6g}]"
        )
    return array


def lagged(series: npt.ArrayLike, lags: int) -> tuple[FloatArray, FloatArray]:
    """Supervised pairs (previous ``lags`` values -> next value) from a series.

    Args:
        series: availability series, shape (n,), values in [0, 1], oldest first.
        lags: number of previous values per sample, ``1 <= lags < n``.

    Returns:
        ``(X, y)``: ``X`` shape (n - lags, lags) with ``X[i] = series[i : i + lags]`` (oldest first) and ``y``
        shape (n - lags,) with ``y[i] = series[i + lags]``. Both are fresh C-contiguous float64 arrays.

    Raises:
        PredictionError: invalid series, ``lags < 1`` or ``n <= lags``.
    """
    values = as_series(series)
    if lags < 1:
        raise PredictionError(f"lags must be >= 1, got {lags}")
    if values.size <= lags:
        raise PredictionError(f"series of length {values.size} is too short for {lags} lags")
    windows = np.lib.stride_tricks.sliding_window_view(values[:-1], lags)
    return np.ascontiguousarray(windows), values[lags:].copy()


class Forecaster(Protocol):
    """One-step-ahead availability forecaster, shared by backtests, the simulator and the prediction worker.

    Attributes:
        name: short label for reports ("svr", "last-value", ...).
        lags: how many most recent values ``predict_next`` reads (0 = none).
    """

    name: str

    @property
    def lags(self) -> int:
        """Number of most recent values a forecast reads (0 = none)."""
        ...

    def fit(self, history: npt.ArrayLike) -> Forecaster:
        """Fit on a past availability series, shape (n,), values in [0, 1], oldest first. Returns self."""
        ...

    def predict_next(self, recent: npt.ArrayLike) -> float:
        """Forecast the value after ``recent``, shape (r,), r >= lags, oldest first; the last lags count."""
        ...

    def predict_many(self, recent_windows: npt.ArrayLike) -> FloatArray:
        """Forecast after each row of ``recent_windows``, shape (k, lags), oldest first; shape (k,)."""
        ...


def as_windows(recent_windows: npt.ArrayLike, lags: int) -> FloatArray:
    """Validate a batch of lag windows: shape (k, lags), finite, in [0, 1]. Returns a float64 C array."""
    try:
        windows = np.asarray(recent_windows, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise PredictionError(f"recent windows are not numeric: {error}") from error
    if windows.ndim != 2 or windows.shape[1] != lags:
        raise PredictionError(f"recent windows must have shape (k, {lags}), got {windows.shape}")
    as_series(windows.reshape(-1), what="recent windows")
    return np.ascontiguousarray(windows)


def last_values(recent: npt.ArrayLike, lags: int) -> FloatArray:
    """The last ``lags`` values of ``recent`` as float64, shape (lags,); cheap length check only."""
    values = np.asarray(recent, dtype=np.float64)
    if values.ndim != 1 or values.shape[0] < lags:
        raise PredictionError(f"need a 1-D array of at least {lags} recent values, got shape {values.shape}")
    return values[values.shape[0] - lags :]
