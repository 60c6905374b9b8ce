"""The paper's SVR forecaster, and the SVR with a time-since-failure feature.

* :class:`PaperSVR` is a scikit-learn regressor: an RBF support-vector regression whose ``C`` and ``epsilon``
  come from the training targets by the paper's equations 1 and 2 (:func:`paper_hyperparameters`).
* :class:`SVRForecaster`: the paper's predictor, :class:`PaperSVR` on the last ``lags`` values.
* :class:`SVRFeaturesForecaster`: the same SVR on the last ``lags`` values PLUS the number of windows since
  the last failure window, read from a longer ``context`` of recent values. A *failure window* is a window
  whose availability is below 1 (:data:`FAILURE_BELOW`): it had some down time.

Where this project differs from the published prototype (PARAMETERS.md, known defect 1): the prototype
regressed availability on the day index with a random 80/20 split, which interpolates between neighbouring
days instead of forecasting. Here the features are lagged availabilities, the split is chronological (fit on
the first 80 %, test on the last 20 %), and each test forecast sees only values strictly before the forecast
day.

Errors: the forecasters raise :class:`edgeoff.errors.PredictionError`. :class:`PaperSVR`, being a
scikit-learn estimator, follows scikit-learn's conventions instead (``ValueError`` for bad arrays,
``NotFittedError`` before ``fit``); the forecasters validate their input first, so they never let those
escape.

This module is pure: numpy and scikit-learn only, no I/O, no clock, no randomness.
"""

from __future__ import annotations

import math
from typing import Self

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.svm import SVR
from sklearn.utils.validation import check_is_fitted, validate_data

from edgeoff.errors import PredictionError
from edgeoff.forecasting.series import DEFAULT_LAGS, FloatArray, as_windows, lagged, last_values

__all__ = [
    "C_FLOOR",
    "DEFAULT_CONTEXT",
    "FAILURE_BELOW",
    "PaperSVR",
    "SVRFeaturesForecaster",
    "SVRForecaster",
    "paper_hyperparameters",
    "windows_since_failure",
]

C_FLOOR = 1e-3
"""Smallest SVR ``C``: libsvm needs C > 0, and equation 1 gives C = 0 for a node that is down all the time
(mean 0, σ 0). The floor is far below the C ≈ 1 of real availability series, so it only ever fixes that
case."""

SIGMA_MULTIPLIER = 3.0
"""The ``3σ`` of the paper's equations 1 and 2."""

FAILURE_BELOW = 1.0
"""A window with availability below this had some down time: a failure window."""

DEFAULT_CONTEXT = 30
"""Recent values :class:`SVRFeaturesForecaster` reads to find the last failure: a month of daily values."""


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


def windows_since_failure(windows: FloatArray) -> FloatArray:
    """Windows since the most recent failure window, per row of ``windows`` (shape (k, c), oldest first).

    0 when the newest window failed, ``j`` when the newest failure is ``j`` windows before the newest, and
    ``c`` (the cap) when no window of the row failed. Returns float64, shape (k,).
    """
    failed_newest_first = windows[:, ::-1] < FAILURE_BELOW
    since: FloatArray = np.argmax(failed_newest_first, axis=1).astype(np.float64)
    since[~failed_newest_first.any(axis=1)] = float(windows.shape[1])
    return since


class SVRFeaturesForecaster:
    """The paper's SVR on lag features plus the time since the last failure.

    Features of a forecast: the last ``value_lags`` values (oldest first) and
    ``windows_since_failure / context`` in [0, 1] (scaled like the availabilities so that the RBF kernel
    weighs it like one lag). The forecaster only receives recent values, so the time since the last failure is
    read from the last ``context`` values and capped at ``context`` (no failure seen in the context): with the
    default context of 30 daily windows that is "a month or more". Hence ``lags`` (what a forecast reads) is
    ``max(value_lags, context)``. ``C`` and ``epsilon`` come from the training targets (equations 1 and 2).

    Args:
        lags: lag features, >= 1 (stored as ``value_lags``).
        context: recent values searched for the last failure window, >= 1.
        gamma: RBF coefficient, as for :class:`PaperSVR`.

    Attributes:
        model_: the fitted :class:`PaperSVR` (None before ``fit``).
    """

    name: str = "svr-features"

    def __init__(
        self, lags: int = DEFAULT_LAGS, *, context: int = DEFAULT_CONTEXT, gamma: float | str = "scale"
    ) -> None:
        if lags < 1:
            raise PredictionError(f"lags must be >= 1, got {lags}")
        if context < 1:
            raise PredictionError(f"context must be >= 1, got {context}")
        self.value_lags = lags
        self.context = context
        self.gamma = gamma
        self.model_: PaperSVR | None = None

    @property
    def lags(self) -> int:
        """Number of most recent values a forecast reads: ``max(value_lags, context)``."""
        return max(self.value_lags, self.context)

    def features(self, windows: FloatArray) -> FloatArray:
        """Feature matrix, shape (k, value_lags + 1), from windows of shape (k, lags), oldest first."""
        since = windows_since_failure(windows[:, windows.shape[1] - self.context :]) / self.context
        return np.column_stack((windows[:, windows.shape[1] - self.value_lags :], since))

    def fit(self, history: npt.ArrayLike) -> SVRFeaturesForecaster:
        """Fit on ``history``, shape (n,), ``n >= lags + 2``."""
        windows, targets = lagged(history, self.lags)
        if targets.size < 2:
            raise PredictionError(
                f"history of length {targets.size + self.lags} is too short for {self.lags} lags "
                f"(need {self.lags + 2})"
            )
        self.model_ = PaperSVR(gamma=self.gamma).fit(self.features(windows), targets)
        return self

    def _model(self) -> PaperSVR:
        if self.model_ is None:
            raise PredictionError("SVRFeaturesForecaster is not fitted: call fit(history) first")
        return self.model_

    def predict_next(self, recent: npt.ArrayLike) -> float:
        """Forecast after ``recent`` (shape (r,), r >= lags); in [0, 1]."""
        model = self._model()
        window = last_values(recent, self.lags).reshape(1, -1)
        return float(model.predict_unchecked(self.features(window))[0])

    def predict_many(self, recent_windows: npt.ArrayLike) -> FloatArray:
        """Forecasts, shape (k,), after each row of ``recent_windows`` (shape (k, lags)); in [0, 1]."""
        model = self._model()
        return model.predict_unchecked(self.features(as_windows(recent_windows, self.lags)))
