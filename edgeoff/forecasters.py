"""More availability forecasters, and the per-site choice between them.

Every forecaster here follows the :class:`edgeoff.availability.Forecaster` protocol (``name``, ``lags``,
``fit(history)``, ``predict_next(recent)``, ``predict_many(recent_windows)``): it predicts the NEXT value of
an availability series (daily availabilities, or hourly up/down states) from PAST values only.

* :class:`EWMForecaster`: exponentially weighted mean of the last ``lags`` values; ``alpha`` is given or
  chosen on the training history (lowest one-step squared error over :data:`EWM_ALPHA_GRID`).
* :class:`SVRFeaturesForecaster`: the paper's SVR (:class:`~edgeoff.availability.PaperSVR`, equations 1 and
  2) on the last ``lags`` values PLUS the number of windows since the last failure window, read from a longer
  ``context`` of recent values.
* :class:`MarkovForecaster`: the two-state chain (:class:`~edgeoff.traces.TwoStateModel`) one step ahead of
  the current state; a lag-1 forecaster for the hourly up/down series.
* :class:`RecentHistoryForecaster`: wraps any forecaster so that ``fit`` sees only the most recent samples
  (bounds SVR training time on long hourly series).
* :func:`select_forecaster`: the per-site choice the prediction worker and the offline engine call; it uses
  the training part only and never picks a model that did not beat the naive forecasters.
* :func:`default_candidates`: the candidate list of a site.

A *failure window* is a window whose availability is below 1 (:data:`FAILURE_BELOW`): it had some down time.

Errors: everything here raises :class:`edgeoff.errors.PredictionError`.

This module is pure: numpy and scikit-learn only, no I/O, no clock, no randomness.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edgeoff.availability import (
    DEFAULT_LAGS,
    DEFAULT_TRAIN_FRACTION,
    Forecaster,
    LastValueForecaster,
    MTTFForecaster,
    PaperSVR,
    SVRForecaster,
    TrainingMeanForecaster,
    as_series,
    as_windows,
    lagged,
    last_values,
    walk_forward,
)
from edgeoff.errors import PredictionError
from edgeoff.traces import TwoStateModel

__all__ = [
    "DEFAULT_CONTEXT",
    "DEFAULT_EWM_LAGS",
    "DEFAULT_INNER_FRACTION",
    "EWM_ALPHA_GRID",
    "FAILURE_BELOW",
    "MIN_IMPROVEMENT",
    "NAIVE_FORECASTERS",
    "EWMForecaster",
    "ForecastError",
    "MarkovForecaster",
    "RecentHistoryForecaster",
    "SVRFeaturesForecaster",
    "Selection",
    "default_candidates",
    "is_naive",
    "select_forecaster",
    "windows_since_failure",
]

FloatArray = npt.NDArray[np.float64]

FAILURE_BELOW = 1.0
"""A window with availability below this had some down time: a failure window."""

DEFAULT_CONTEXT = 30
"""Recent values :class:`SVRFeaturesForecaster` reads to find the last failure: a month of daily values."""

DEFAULT_EWM_LAGS = 30
"""Window of :class:`EWMForecaster`: a month of daily values (weights beyond it are dropped, the rest
renormalised)."""

EWM_ALPHA_GRID: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
"""Smoothing factors :class:`EWMForecaster` chooses from when ``alpha`` is not given."""

DEFAULT_INNER_FRACTION = 0.8
"""Inner chronological split of the training part used by :func:`select_forecaster`."""

MIN_IMPROVEMENT = 0.01
"""Relative inner-MAE margin by which a model must beat the best naive forecaster to be chosen (1 %): a win
by rounding error (an EWM with alpha 0.9 against last value) is not a win."""

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


# --------------------------------------------------------------------------- SVR with time since failure


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
        gamma: RBF coefficient, as for :class:`~edgeoff.availability.PaperSVR`.

    Attributes:
        model_: the fitted :class:`~edgeoff.availability.PaperSVR` (None before ``fit``).
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


def default_candidates(
    mttf_h: float | None,
    window_h: float,
    *,
    lags: int = DEFAULT_LAGS,
    context: int = DEFAULT_CONTEXT,
    max_svr_samples: int | None = None,
) -> list[Forecaster]:
    """The candidates of a site: svr (paper), svr-features, last-value, training-mean, ewm, mttf.

    Args:
        mttf_h: the site's mean time to failure, hours; None (undefined: fewer than two outages) leaves out
            the ``mttf`` forecaster.
        window_h: length of one window of the series, hours (24 daily, 1 hourly); used by ``mttf``.
        lags: lag features of the SVRs.
        context: recent values searched for the last failure (svr-features) and EWM window.
        max_svr_samples: fit the SVRs on at most this many most recent samples (None: all).

    Returns:
        Fresh, unfitted forecasters, in the order above.
    """
    svrs: list[Forecaster] = [SVRForecaster(lags), SVRFeaturesForecaster(lags, context=context)]
    if max_svr_samples is not None:
        svrs = [RecentHistoryForecaster(svr, max_svr_samples) for svr in svrs]
    candidates: list[Forecaster] = [
        *svrs,
        LastValueForecaster(),
        TrainingMeanForecaster(),
        EWMForecaster(lags=context),
    ]
    if mttf_h is not None:
        candidates.append(MTTFForecaster(mttf_h, window_h))
    return candidates


# --------------------------------------------------------------------------- per-site selection


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
class Selection:
    """The forecaster chosen for one site, and why.

    Attributes:
        name: the chosen forecaster's name.
        forecaster: the chosen forecaster, refitted on the whole training part.
        inner_errors: inner-validation errors per candidate name, in candidate order.
        reason: one line, e.g. ``"svr: inner MAE 0.0123 beats the best naive, training-mean (0.0150)"``.
        excluded: candidates that could not be fitted on the inner split: name -> error message.
        naive: True when the chosen forecaster is a naive reference.
    """

    name: str
    forecaster: Forecaster
    inner_errors: Mapping[str, ForecastError]
    reason: str
    excluded: Mapping[str, str] = field(default_factory=dict)
    naive: bool = False


def _training_length(n: int, fraction: float, what: str) -> int:
    if not 0.0 < fraction <= 1.0:
        raise PredictionError(f"{what} must lie in (0, 1], got {fraction}")
    return n if fraction == 1.0 else int(n * fraction)


def select_forecaster(
    series: npt.ArrayLike,
    candidates: Sequence[Forecaster],
    *,
    train_fraction: float = DEFAULT_TRAIN_FRACTION,
    inner_fraction: float = DEFAULT_INNER_FRACTION,
    min_improvement: float = MIN_IMPROVEMENT,
) -> Selection:
    """Choose a site's forecaster from the training part of its series only.

    The training part is the first ``floor(n · train_fraction)`` values (``train_fraction = 1`` uses the
    whole series: the live prediction worker passes its history). It is split chronologically again at
    ``inner_fraction``; every candidate is fitted on the inner training part and forecasts the inner
    validation part one step ahead (:func:`~edgeoff.availability.walk_forward`). The candidate with the lowest
    inner MAE wins, except that a model-based candidate must beat the best naive one (last value, training
    mean) by ``min_improvement`` (relative; a tie is never a win): otherwise the best naive candidate is
    chosen. The naive references are added
    when ``candidates`` lacks them. The winner is refitted on the whole training part.

    Candidates are fitted in place; the returned :attr:`Selection.forecaster` is one of them (or an added
    naive reference). A candidate that cannot be fitted on the inner split (too short a series) is excluded
    and listed in :attr:`Selection.excluded`. Candidates whose parameters come from elsewhere (the MTTF and
    Markov forecasters, given MTTF/MTTR) are evaluated with those parameters as given.

    Args:
        series: availability series, shape (n,), values in [0, 1], oldest first.
        candidates: forecasters with distinct names.
        train_fraction: in (0, 1], the training part.
        inner_fraction: in (0, 1), the inner split of the training part.
        min_improvement: in [0, 1), the relative inner-MAE margin a model needs over the best naive.

    Returns:
        The :class:`Selection`.

    Raises:
        PredictionError: bad series or fractions, duplicate names, or no naive reference can be fitted.
    """
    values = as_series(series, what="availability series")
    training = values[: _training_length(values.size, train_fraction, "train_fraction")]
    if not 0.0 < inner_fraction < 1.0:
        raise PredictionError(f"inner_fraction must lie in (0, 1), got {inner_fraction}")
    if not 0.0 <= min_improvement < 1.0:
        raise PredictionError(f"min_improvement must lie in [0, 1), got {min_improvement}")
    pool = list(candidates)
    names = [candidate.name for candidate in pool]
    if len(set(names)) != len(names):
        raise PredictionError(f"candidate names must be distinct, got {names}")
    for reference in (LastValueForecaster(), TrainingMeanForecaster()):
        if not any(type(candidate) is type(reference) for candidate in pool) and reference.name not in names:
            pool.append(reference)

    errors: dict[str, ForecastError] = {}
    excluded: dict[str, str] = {}
    for candidate in pool:
        try:
            result = walk_forward(training, candidate, train_fraction=inner_fraction)
        except PredictionError as error:
            excluded[candidate.name] = str(error)
            continue
        errors[candidate.name] = ForecastError(mae=result.mae, rmse=result.rmse)

    def best(group: list[Forecaster]) -> Forecaster | None:
        scored = [candidate for candidate in group if candidate.name in errors]
        return min(scored, key=lambda candidate: errors[candidate.name].mae, default=None)

    best_naive = best([candidate for candidate in pool if is_naive(candidate)])
    best_model = best([candidate for candidate in pool if not is_naive(candidate)])
    if best_naive is None:
        raise PredictionError(
            f"training part of {training.size} values is too short: no naive forecaster could be fitted "
            f"({'; '.join(f'{name}: {why}' for name, why in excluded.items())})"
        )
    naive_mae = errors[best_naive.name].mae
    if best_model is None:
        chosen = best_naive
        reason = (
            f"{chosen.name}: best naive (inner MAE {naive_mae:.4g}); no model-based candidate could be fitted"
        )
    elif errors[best_model.name].mae < naive_mae * (1.0 - min_improvement):
        chosen = best_model
        reason = (
            f"{chosen.name}: inner MAE {errors[chosen.name].mae:.4g} beats the best naive, "
            f"{best_naive.name} ({naive_mae:.4g})"
        )
    else:
        chosen = best_naive
        reason = (
            f"{chosen.name}: best naive (inner MAE {naive_mae:.4g}); the best model-based, "
            f"{best_model.name} ({errors[best_model.name].mae:.4g}), did not beat it by {min_improvement:.0%}"
        )
    chosen.fit(training)
    return Selection(
        name=chosen.name,
        forecaster=chosen,
        inner_errors=errors,
        reason=reason,
        excluded=excluded,
        naive=is_naive(chosen),
    )
