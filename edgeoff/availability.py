"""Availability forecasting: the paper's SVR and the baselines it must beat.

A node's availability series is a 1-D float array of daily availabilities in [0, 1] (1.0 = up all day, lower
on days with outages), oldest first. Every forecaster here predicts the NEXT value from PAST values only:

* :func:`lagged` turns a series into a supervised problem, ``X[i]`` = the ``lags`` previous values (oldest
  first) and ``y[i]`` = the value that followed them.
* :class:`PaperSVR` is a scikit-learn regressor: an RBF support-vector regression whose ``C`` and ``epsilon``
  come from the training targets by the paper's equations 1 and 2 (:func:`paper_hyperparameters`).
* :class:`Forecaster` is the small protocol shared by backtests, the offline simulator and the live prediction
  worker; :class:`SVRForecaster`, :class:`LastValueForecaster`, :class:`TrainingMeanForecaster` and
  :class:`MTTFForecaster` implement it.
* :func:`walk_forward` and :func:`compare_forecasters` backtest forecasters on a chronological split.

Where this project differs from the published prototype (PARAMETERS.md, known defect 1): the prototype
regressed availability on the day index with a random 80/20 split, which interpolates between neighbouring
days instead of forecasting. Here the features are lagged availabilities, the split is chronological (fit on
the first 80 %, test on the last 20 %), and each test forecast sees only values strictly before the forecast
day.

Errors: the forecaster layer and the module functions raise :class:`edgeoff.errors.PredictionError`.
:class:`PaperSVR`, being a scikit-learn estimator, follows scikit-learn's conventions instead (``ValueError``
for bad arrays, ``NotFittedError`` before ``fit``); the forecasters validate their input first, so they never
let those escape.

This module is pure: numpy and scikit-learn only, no I/O, no clock, no randomness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Self

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.svm import SVR
from sklearn.utils.validation import check_is_fitted, validate_data

from edgeoff.errors import PredictionError

__all__ = [
    "C_FLOOR",
    "DEFAULT_LAGS",
    "DEFAULT_TRAIN_FRACTION",
    "Backtest",
    "Forecaster",
    "LastValueForecaster",
    "MTTFForecaster",
    "PaperSVR",
    "SVRForecaster",
    "TrainingMeanForecaster",
    "as_series",
    "as_windows",
    "compare_forecasters",
    "lagged",
    "last_values",
    "paper_hyperparameters",
    "walk_forward",
]

FloatArray = npt.NDArray[np.float64]

C_FLOOR = 1e-3
"""Smallest SVR ``C``: libsvm needs C > 0, and equation 1 gives C = 0 for a node that is down all the time
(mean 0, σ 0). The floor is far below the C ≈ 1 of real availability series, so it only ever fixes that
case."""

DEFAULT_LAGS = 7
"""Lag window of the SVR forecaster: one week of daily availabilities."""

DEFAULT_TRAIN_FRACTION = 0.8
"""Chronological train/test split of the backtests (PARAMETERS.md: train/test split 80/20)."""

SIGMA_MULTIPLIER = 3.0
"""The ``3σ`` of the paper's equations 1 and 2."""


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


def paper_hyperparameters(y: npt.ArrayLike) -> tuple[float, float]:
    """SVR ``C`` and ``epsilon`` from the training targets (paper equations 1 and 2).

    ``C = max(|mean(y) + 3σ|, |mean(y) - 3σ|)`` and ``epsilon = 3σ · sqrt(ln(m) / m)``, with ``σ`` the
    (population) standard deviation of ``y`` and ``m`` its length.

    Degenerate inputs: a constant ``y`` gives ``σ = 0``, hence ``epsilon = 0`` (libsvm accepts it) and
    ``C = |mean(y)|``, which is 0 for an all-zero ``y``; ``C`` is therefore floored at :data:`C_FLOOR`.

    Args:
        y: targets, shape (m,), any finite floats (availabilities in practice, unit 1).

    Returns:
        ``(C, epsilon)``, both floats, ``C >= C_FLOOR`` and ``epsilon >= 0``.

    Raises:
        PredictionError: ``y`` is not 1-D, is not finite, or has fewer than 2 values.
    """
    values = np.asarray(y, dtype=np.float64)
    if values.ndim != 1:
        raise PredictionError(f"targets must be 1-D, got shape {values.shape}")
    m = values.size
    if m < 2:
        raise PredictionError(f"need at least 2 targets to set C and epsilon, got {m}")
    if not np.all(np.isfinite(values)):
        raise PredictionError("targets contain NaN or infinite values")
    mean = float(values.mean())
    spread = SIGMA_MULTIPLIER * float(values.std())
    c = max(abs(mean + spread), abs(mean - spread), C_FLOOR)
    epsilon = spread * math.sqrt(math.log(m) / m)
    return c, epsilon


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


def _resolve_gamma(gamma: float | str, X: FloatArray) -> float:
    """The RBF ``gamma`` scikit-learn's SVR would use for ``X`` (shape (m, d)): 'scale', 'auto' or a float."""
    n_features = int(X.shape[1])
    if gamma == "scale":
        variance = float(X.var())
        return 1.0 / (n_features * variance) if variance != 0.0 else 1.0
    if gamma == "auto":
        return 1.0 / n_features
    if isinstance(gamma, str):
        raise ValueError(f"gamma must be 'scale', 'auto' or a positive float, got {gamma!r}")
    if not gamma > 0.0:
        raise ValueError(f"gamma must be positive, got {gamma!r}")
    return float(gamma)


class PaperSVR(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """RBF support-vector regression with the paper's data-driven ``C`` and ``epsilon``.

    ``fit`` sets ``C`` and ``epsilon`` from the training targets with :func:`paper_hyperparameters` and fits
    ``sklearn.svm.SVR(kernel="rbf")``; ``predict`` clips to ``bounds``. A constant training target (a node
    that never failed in the window) is fitted exactly: the SVR has no support vectors and predicts the
    constant.

    Parameters:
        gamma: RBF kernel coefficient, ``"scale"`` (default, as SVR), ``"auto"`` or a positive float.
        bounds: ``(low, high)`` the predictions are clipped to, ``(0.0, 1.0)`` for availabilities; ``None``
            disables clipping (a plain regressor, e.g. for scikit-learn's generic estimator checks).

    Attributes:
        C_: float, the fitted regularisation (equation 1, floored at :data:`C_FLOOR`).
        epsilon_: float, the fitted epsilon-tube width (equation 2).
        gamma_: float, the resolved RBF coefficient.
        svr_: the fitted ``sklearn.svm.SVR``.
        n_features_in_: int, number of features seen in ``fit``.
    """

    def __init__(self, gamma: float | str = "scale", bounds: tuple[float, float] | None = (0.0, 1.0)) -> None:
        self.gamma = gamma
        self.bounds = bounds

    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike) -> Self:
        """Fit on ``X`` shape (m, d) and ``y`` shape (m,); ``m >= 2``. Returns self."""
        X_checked, y_checked = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        if X_checked.shape[0] < 2:
            raise ValueError(f"PaperSVR needs at least 2 samples, got n_samples = {X_checked.shape[0]}")
        if self.bounds is not None and not self.bounds[0] <= self.bounds[1]:
            raise ValueError(f"bounds must be (low, high) with low <= high, got {self.bounds!r}")
        self.C_, self.epsilon_ = paper_hyperparameters(y_checked)
        self.gamma_ = _resolve_gamma(self.gamma, X_checked)
        self.svr_ = SVR(kernel="rbf", C=self.C_, epsilon=self.epsilon_, gamma=self.gamma_)
        self.svr_.fit(X_checked, y_checked)
        self._support_vectors = np.ascontiguousarray(self.svr_.support_vectors_, dtype=np.float64)
        self._support_sq_norms = np.einsum("ij,ij->i", self._support_vectors, self._support_vectors)
        self._dual_coef = np.ascontiguousarray(self.svr_.dual_coef_[0], dtype=np.float64)
        self._intercept = float(self.svr_.intercept_[0])
        return self

    def predict(self, X: npt.ArrayLike) -> FloatArray:
        """Predictions, shape (k,), for ``X`` shape (k, d), clipped to ``bounds``."""
        check_is_fitted(self)
        X_checked = validate_data(self, X, dtype=np.float64, reset=False)
        return self._clip(np.asarray(self.svr_.predict(X_checked), dtype=np.float64))

    def predict_unchecked(self, X: FloatArray) -> FloatArray:
        """Fast path of :meth:`predict` for callers that validated ``X`` themselves.

        Evaluates the RBF expansion ``sum_i dual_coef_i · exp(-gamma · |x - sv_i|²) + intercept`` directly in
        numpy from the fitted support vectors (about 10 µs for one row and a few hundred support vectors,
        against about 100 µs for :meth:`predict`, most of which is input validation). Equal to
        :meth:`predict` up to floating-point rounding.

        Args:
            X: float64 array, shape (k, d), finite, ``d = n_features_in_``; the model must be fitted.

        Returns:
            Predictions, shape (k,), clipped to ``bounds``.
        """
        squared = (
            np.einsum("ij,ij->i", X, X)[:, np.newaxis]
            + self._support_sq_norms[np.newaxis, :]
            - 2.0 * (X @ self._support_vectors.T)
        )
        np.maximum(squared, 0.0, out=squared)
        kernel = np.exp(-self.gamma_ * squared)
        return self._clip(kernel @ self._dual_coef + self._intercept)

    def _clip(self, values: FloatArray) -> FloatArray:
        if self.bounds is None:
            return values
        return np.clip(values, self.bounds[0], self.bounds[1])


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


class SVRForecaster:
    """The paper's predictor: :class:`PaperSVR` on the previous ``lags`` daily availabilities.

    ``predict_next`` skips scikit-learn's validation (it checks only the length of ``recent``) and evaluates
    the RBF expansion directly (:meth:`PaperSVR.predict_unchecked`): about 10 µs per call.
    """

    name: str = "svr"

    def __init__(self, lags: int = DEFAULT_LAGS, *, gamma: float | str = "scale") -> None:
        if lags < 1:
            raise PredictionError(f"lags must be >= 1, got {lags}")
        self._lags = lags
        self.gamma = gamma
        self.model_: PaperSVR | None = None

    @property
    def lags(self) -> int:
        """Number of most recent values a forecast reads."""
        return self._lags

    def fit(self, history: npt.ArrayLike) -> SVRForecaster:
        """Fit on ``history``, shape (n,), ``n >= lags + 2`` (equation 2 needs at least 2 targets)."""
        X, y = lagged(history, self._lags)
        if y.size < 2:
            raise PredictionError(
                f"history of length {y.size + self._lags} is too short for {self._lags} lags "
                f"(need {self._lags + 2})"
            )
        self.model_ = PaperSVR(gamma=self.gamma).fit(X, y)
        return self

    def _model(self) -> PaperSVR:
        if self.model_ is None:
            raise PredictionError("SVRForecaster is not fitted: call fit(history) first")
        return self.model_

    def predict_next(self, recent: npt.ArrayLike) -> float:
        """Forecast after ``recent`` (shape (r,), r >= lags); in [0, 1]."""
        model = self._model()
        window = last_values(recent, self._lags)
        return float(model.predict_unchecked(window.reshape(1, -1))[0])

    def predict_many(self, recent_windows: npt.ArrayLike) -> FloatArray:
        """Forecasts, shape (k,), after each row of ``recent_windows`` (shape (k, lags)); in [0, 1]."""
        model = self._model()
        return model.predict_unchecked(as_windows(recent_windows, self._lags))


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
