"""The walk-forward backtest: fit on the first part of a series, forecast the rest one step ahead.

* :func:`walk_forward` backtests one forecaster on a chronological split; :func:`compare_forecasters` runs
  several on the same split.
* :class:`Backtest` holds its forecasts; :class:`ForecastError` the errors of forecasts against the truth.

This module is pure: numpy only, no I/O, no clock, no randomness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgeoff.errors import PredictionError
from edgeoff.forecasting.series import DEFAULT_TRAIN_FRACTION, FloatArray, Forecaster, as_series

__all__ = ["Backtest", "ForecastError", "compare_forecasters", "walk_forward"]


@dataclass(frozen=True)
class ForecastError:
    """One-step-ahead errors of a forecaster on a test (or inner validation) part, availability units."""

    mae: float
    rmse: float

    @classmethod
    def of(cls, predictions: FloatArray, actual: FloatArray) -> ForecastError:
        """Errors of ``predictions`` against ``actual``, both shape (k,), k >= 1."""
        errors = predictions - actual
        return cls(mae=float(np.mean(np.abs(errors))), rmse=float(np.sqrt(np.mean(errors**2))))


@dataclass(frozen=True, eq=False)
class Backtest:
    """One-step-ahead forecasts of one forecaster on the test part of a series.

    Attributes:
        name: the forecaster's name.
        indices: positions in the series of the forecast days, shape (k,), int, increasing and contiguous.
        predictions: forecasts, shape (k,), availability in [0, 1].
        actual: observed values ``series[indices]``, shape (k,).
        mae: mean absolute error, availability units.
        rmse: root mean squared error, availability units.
    """

    name: str
    indices: npt.NDArray[np.int64]
    predictions: FloatArray
    actual: FloatArray
    mae: float
    rmse: float

    def __post_init__(self) -> None:
        k = self.indices.shape
        if self.predictions.shape != k or self.actual.shape != k or len(k) != 1:
            raise PredictionError(
                f"backtest arrays disagree: indices {k}, predictions {self.predictions.shape}, "
                f"actual {self.actual.shape}"
            )
        for array in (self.indices, self.predictions, self.actual):
            array.setflags(write=False)


def walk_forward(
    series: npt.ArrayLike,
    forecaster: Forecaster,
    *,
    train_fraction: float = DEFAULT_TRAIN_FRACTION,
    refit_every: int | None = None,
) -> Backtest:
    """Chronological backtest: fit on the first ``train_fraction`` of the series, forecast the rest one step
    ahead.

    The first ``n_train = floor(n · train_fraction)`` values train the forecaster. Each test day ``t`` in
    ``[n_train, n)`` is forecast from the TRUE values ``series[t - lags : t]``, never from ``series[t]`` or
    later. With ``refit_every = r`` the forecaster is refitted on ``series[:t]`` before every ``r``-th test
    day (the first test day uses the initial fit); without it, all test forecasts come from one batch call to
    ``predict_many``. The forecaster is fitted in place.

    Args:
        series: availability series, shape (n,), values in [0, 1], oldest first.
        forecaster: any :class:`Forecaster`.
        train_fraction: in (0, 1); the training part must be longer than ``forecaster.lags`` and the test part
            non-empty.
        refit_every: refit period in test days (>= 1), or ``None`` for no refit.

    Returns:
        The :class:`Backtest`, ``k = n - n_train`` forecasts.

    Raises:
        PredictionError: invalid series or parameters, too short a series, or the forecaster cannot be fitted.
    """
    values = as_series(series)
    if not 0.0 < train_fraction < 1.0:
        raise PredictionError(f"train_fraction must lie in (0, 1), got {train_fraction}")
    if refit_every is not None and refit_every < 1:
        raise PredictionError(f"refit_every must be >= 1 or None, got {refit_every}")
    n = values.size
    n_train = int(n * train_fraction)
    lags = forecaster.lags
    if n_train <= lags or n_train >= n:
        raise PredictionError(
            f"series of length {n} split at {train_fraction} leaves {n_train} training and "
            f"{n - n_train} test values; need more than {lags} training values and at least one test value"
        )
    indices = np.arange(n_train, n, dtype=np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(values[: n - 1], lags)[n_train - lags :]
    forecaster.fit(values[:n_train])
    if refit_every is None:
        predictions = np.asarray(forecaster.predict_many(windows), dtype=np.float64)
    else:
        predictions = np.empty(indices.size)
        for step, t in enumerate(indices):
            if step and step % refit_every == 0:
                forecaster.fit(values[:t])
            predictions[step] = forecaster.predict_next(values[t - lags : t])
    actual = values[n_train:].copy()
    errors = predictions - actual
    return Backtest(
        name=forecaster.name,
        indices=indices,
        predictions=predictions,
        actual=actual,
        mae=float(np.mean(np.abs(errors))),
        rmse=float(np.sqrt(np.mean(errors**2))),
    )


def compare_forecasters(
    series: npt.ArrayLike,
    forecasters: list[Forecaster],
    *,
    train_fraction: float = DEFAULT_TRAIN_FRACTION,
) -> list[Backtest]:
    """:func:`walk_forward` of each forecaster on the same split and test days, in the given order."""
    return [walk_forward(series, forecaster, train_fraction=train_fraction) for forecaster in forecasters]
