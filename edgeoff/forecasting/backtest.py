"""Honest forecasting backtests of LANL nodes, daily and hourly, and the prototype's method for contrast.

For one node trace (:class:`edgeoff.traces.NodeTrace`) :func:`backtest_node` runs:

* **daily**: the daily availability series (:func:`edgeoff.traces.daily_availability`), every candidate of
  :func:`~edgeoff.forecasting.selection.default_candidates` (window 24 h) fitted on the first 80 % of the
  days and forecasting each later day one step ahead from the true earlier days (walk-forward): MAE and RMSE.
  ``belief`` is the two-state chain's expected availability of the next day given the last day
  (:class:`~edgeoff.forecasting.belief.BeliefForecaster`, the forecast behind ``mdp-belief``).
* **hourly**: the hourly up/down state series (:func:`hourly_states`): an hour is *down* (0) when any outage
  touches it, even for a minute or as a zero-length failure record, else *up* (1). So the series is binary
  and "up" means "a task sent in that hour meets no failure". A forecast is P(up next hour); scores are MAE,
  RMSE, the Brier score (mean squared error of the probability against the 0/1 outcome, so RMSE²) and a
  reliability table (:func:`~edgeoff.forecasting.metrics.reliability_table`). Candidates: the daily ones
  with window 1 h (``mttf`` is then ``exp(-1 / MTTF)``) plus ``markov``, the two-state chain one hour ahead
  of the current state (its probability of being up at the hour's end, where ``belief`` forecasts the hour's
  expected availability). The SVRs fit on the most recent :data:`MAX_SVR_SAMPLES` training hours only, which
  keeps a 16-node run near a minute.
* **selection**: :func:`~edgeoff.forecasting.selection.select_forecaster` on each series (inner split of
  the training part only), with the chosen forecaster's test errors.
* **prototype**: the published prototype's "forecast" (PARAMETERS.md, known defect 1): an RBF SVR regressed
  on the day INDEX with the prototype's settings, once with a seeded random 80/20 split (interpolation, what
  the prototype did) and once with the chronological split (forecasting), next to the training mean and
  median (constant predictors) on each split.

Parameters that come from the outages (MTTF for ``mttf``, MTTF and MTTR for ``markov`` and ``belief``) use
only the outages that ended by the end of the training part. The inner split of the selection reuses them as
given, so they have seen the inner validation part's outages; the other candidates have not.

This module is pure: numpy and scikit-learn only, no I/O, no clock; the only randomness is the seeded split
of :func:`~edgeoff.forecasting.prototype.prototype_contrast`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeoff.errors import PredictionError, TraceError
from edgeoff.forecasting.forecasters import LastValueForecaster, MarkovForecaster, TrainingMeanForecaster
from edgeoff.forecasting.metrics import (
    CALIBRATION_BINS,
    ForecastScore,
    ReliabilityBin,
    brier_score,
    reliability_table,
)
from edgeoff.forecasting.prototype import DEFAULT_SEED, PrototypeContrast, prototype_contrast
from edgeoff.forecasting.selection import DEFAULT_INNER_FRACTION, default_candidates, select_forecaster
from edgeoff.forecasting.series import DEFAULT_LAGS, DEFAULT_TRAIN_FRACTION, FloatArray, Forecaster
from edgeoff.forecasting.svr import DEFAULT_CONTEXT
from edgeoff.forecasting.walk_forward import ForecastError, walk_forward
from edgeoff.traces import HOURS_PER_DAY, NodeTrace, TwoStateModel, daily_availability, past_trace

__all__ = [
    "HOURLY_CONTEXT",
    "HOURLY_LAGS",
    "MAX_SVR_SAMPLES",
    "NAIVE_NAMES",
    "SVR_NAME",
    "BacktestSettings",
    "NodeBacktest",
    "SeriesBacktest",
    "backtest_node",
    "backtest_nodes",
    "backtest_series",
    "hourly_states",
    "training_model",
]

HOUR_H = 1.0  # step of the hourly series, hours

MAX_SVR_SAMPLES = 2000
"""Most recent training samples the hourly SVRs fit on (about 12 weeks of hours): libsvm's fit grows about
quadratically with samples and the longest hourly training part has ~51,000."""

HOURLY_LAGS = 24
"""Lag features of the hourly SVRs: the last day of hours."""

HOURLY_CONTEXT = 168
"""Hours svr-features searches for the last failure, and the hourly EWM window: one week."""

NAIVE_NAMES = (LastValueForecaster.name, TrainingMeanForecaster.name)
SVR_NAME = "svr"


@dataclass(frozen=True)
class BacktestSettings:
    """How the backtests split and fit; the defaults are the reported configuration."""

    train_fraction: float = DEFAULT_TRAIN_FRACTION
    inner_fraction: float = DEFAULT_INNER_FRACTION
    seed: int = DEFAULT_SEED
    daily_lags: int = DEFAULT_LAGS
    daily_context: int = DEFAULT_CONTEXT
    hourly_lags: int = HOURLY_LAGS
    hourly_context: int = HOURLY_CONTEXT
    max_svr_samples: int = MAX_SVR_SAMPLES
    calibration_bins: int = CALIBRATION_BINS

    def __post_init__(self) -> None:
        for name in ("train_fraction", "inner_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise PredictionError(f"{name} must lie in (0, 1), got {value}")
        for name in ("daily_lags", "daily_context", "hourly_lags", "hourly_context", "calibration_bins"):
            if getattr(self, name) < 1:
                raise PredictionError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_svr_samples < 2:
            raise PredictionError(f"max_svr_samples must be >= 2, got {self.max_svr_samples}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


# --------------------------------------------------------------------------- series and training parameters


def hourly_states(trace: NodeTrace) -> tuple[int, FloatArray]:
    """The node's hourly up (1) / down (0) states.

    Hour ``h`` is ``[h, h + 1)`` in hours since :data:`edgeoff.traces.EPOCH`. An hour is down when an outage
    ``[start, end]`` overlaps it (``start < h + 1`` and ``end > h``) or a zero-length outage starts in it.
    Hours run from the hour of the first outage's start to the last hour touched by the last outage.

    Returns:
        ``(first_hour, states)``: the first hour (int) and the states, float64 of 0.0/1.0, shape (hours,).
    """
    starts = np.floor(trace.outages[:, 0]).astype(np.int64)
    ends = np.maximum(starts, np.ceil(trace.outages[:, 1]).astype(np.int64) - 1)  # last down hour, inclusive
    first_hour = int(starts[0])
    count = int(ends.max()) - first_hour + 1
    marks = np.zeros(count + 1, dtype=np.int64)
    np.add.at(marks, starts - first_hour, 1)
    np.add.at(marks, ends - first_hour + 1, -1)
    down = np.cumsum(marks[:-1]) > 0
    return first_hour, np.where(down, 0.0, 1.0)


def training_model(trace: NodeTrace, cutoff_h: float) -> TwoStateModel | None:
    """Two-state model from the outages that ended by ``cutoff_h`` (hours since EPOCH); None if < 2."""
    past = past_trace(trace, cutoff_h)
    if past is None or past.failures < 2:
        return None
    return TwoStateModel(mttf_h=past.mttf_h, mttr_h=past.mttr_h)


@dataclass(frozen=True)
class SeriesBacktest:
    """Backtest of all candidates on one series (one node, one granularity).

    Attributes:
        granularity: "daily" or "hourly".
        n_values, n_train, n_test: series length and its chronological split.
        scores: test errors per candidate, in candidate order.
        calibration: reliability table per candidate name (hourly only, else empty).
        excluded: candidates that could not be fitted: name -> reason.
        selection_name, selection_reason: the per-site choice on the training part.
        selection_inner: inner-validation errors per candidate name.
    """

    granularity: str
    n_values: int
    n_train: int
    n_test: int
    scores: tuple[ForecastScore, ...]
    selection_name: str
    selection_reason: str
    selection_inner: dict[str, ForecastError]
    calibration: dict[str, tuple[ReliabilityBin, ...]] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)

    def score(self, name: str) -> ForecastScore | None:
        """The test score of the named candidate, or None if it was excluded."""
        return next((score for score in self.scores if score.name == name), None)

    @property
    def best(self) -> str:
        """The candidate with the lowest test MAE (in hindsight; not a usable choice, see the selection)."""
        return min(self.scores, key=lambda score: score.mae).name

    @property
    def best_brier(self) -> str | None:
        """The candidate with the lowest test Brier score (binary series only, else None)."""
        scored = [score for score in self.scores if score.brier is not None]
        return min(scored, key=lambda score: score.brier or 0.0).name if scored else None

    @property
    def best_naive_mae(self) -> float:
        """Lowest test MAE of the naive forecasters."""
        return min(score.mae for score in self.scores if score.name in NAIVE_NAMES)

    @property
    def svr_beats_naive(self) -> bool | None:
        """Whether the paper's SVR has a lower test MAE than both naive forecasters; None if excluded."""
        svr = self.score(SVR_NAME)
        return None if svr is None else svr.mae < self.best_naive_mae

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        selected = self.score(self.selection_name)
        values: dict[str, Any] = {
            "n_values": self.n_values,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "forecasters": {score.name: score.to_dict() for score in self.scores},
            "best": self.best,
            "best_brier": self.best_brier,
            "svr_beats_naive": self.svr_beats_naive,
            "selection": {
                "chosen": self.selection_name,
                "reason": self.selection_reason,
                "inner": {name: {"mae": e.mae, "rmse": e.rmse} for name, e in self.selection_inner.items()},
                "test": None if selected is None else selected.to_dict(),
            },
            "excluded": dict(self.excluded),
        }
        if self.calibration:
            values["calibration"] = {
                name: [b.to_dict() for b in table] for name, table in self.calibration.items()
            }
        return values


def backtest_series(
    series: npt.ArrayLike,
    candidates: Sequence[Forecaster],
    *,
    granularity: str,
    binary: bool,
    settings: BacktestSettings,
) -> SeriesBacktest:
    """Walk-forward every candidate on ``series`` (shape (n,)) and select one on its training part.

    Args:
        series: availability series (or 0/1 states when ``binary``), oldest first.
        candidates: forecasters with distinct names; fitted in place.
        granularity: label for reports.
        binary: score the forecasts as probabilities too (Brier, reliability table).
        settings: splits and calibration bins.

    Raises:
        PredictionError: the series is too short for even the naive forecasters.
    """
    values = np.asarray(series, dtype=np.float64)
    scores: list[ForecastScore] = []
    calibration: dict[str, tuple[ReliabilityBin, ...]] = {}
    excluded: dict[str, str] = {}
    n_train = int(values.size * settings.train_fraction)
    for candidate in candidates:
        try:
            result = walk_forward(values, candidate, train_fraction=settings.train_fraction)
        except PredictionError as error:
            excluded[candidate.name] = str(error)
            continue
        brier = brier_score(result.predictions, result.actual) if binary else None
        scores.append(ForecastScore(name=candidate.name, mae=result.mae, rmse=result.rmse, brier=brier))
        if binary:
            calibration[candidate.name] = reliability_table(
                result.predictions, result.actual, bins=settings.calibration_bins
            )
    if not any(score.name in NAIVE_NAMES for score in scores):
        raise PredictionError(f"{granularity} series of {values.size} values is too short to backtest")
    selection = select_forecaster(
        values,
        [candidate for candidate in candidates if candidate.name not in excluded],
        train_fraction=settings.train_fraction,
        inner_fraction=settings.inner_fraction,
    )
    return SeriesBacktest(
        granularity=granularity,
        n_values=int(values.size),
        n_train=n_train,
        n_test=int(values.size) - n_train,
        scores=tuple(scores),
        selection_name=selection.name,
        selection_reason=selection.reason,
        selection_inner=dict(selection.inner_errors),
        calibration=calibration,
        excluded=excluded,
    )


# --------------------------------------------------------------------------- per node


@dataclass(frozen=True)
class NodeBacktest:
    """All backtests of one node."""

    node: str
    failures: int
    daily: SeriesBacktest
    hourly: SeriesBacktest
    prototype: PrototypeContrast
    train_mttf_h: float | None
    train_mttr_h: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy: node, failures, train_mttf_h, train_mttr_h, daily, hourly, prototype."""
        return {
            "node": self.node,
            "failures": self.failures,
            "train_mttf_h": self.train_mttf_h,
            "train_mttr_h": self.train_mttr_h,
            "daily": self.daily.to_dict(),
            "hourly": self.hourly.to_dict(),
            "prototype": self.prototype.to_dict(),
        }


def backtest_node(trace: NodeTrace, settings: BacktestSettings | None = None) -> NodeBacktest:
    """Daily and hourly backtests, per-site selections and the prototype contrast of one node.

    Raises:
        TraceError: the node's series are too short to split (a node with a handful of days).
    """
    settings = settings or BacktestSettings()
    try:
        return _backtest_node(trace, settings)
    except PredictionError as error:
        raise TraceError(f"node {trace.node}: cannot backtest: {error}") from error


def _backtest_node(trace: NodeTrace, settings: BacktestSettings) -> NodeBacktest:
    daily = daily_availability(trace)
    first_day = math.floor(trace.outages[0, 0] / HOURS_PER_DAY)
    daily_cutoff_h = (first_day + int(daily.size * settings.train_fraction)) * HOURS_PER_DAY
    daily_model = training_model(trace, daily_cutoff_h)
    daily_result = backtest_series(
        daily,
        default_candidates(
            None if daily_model is None else daily_model.mttf_h,
            HOURS_PER_DAY,
            lags=settings.daily_lags,
            context=settings.daily_context,
            chain=daily_model,
        ),
        granularity="daily",
        binary=False,
        settings=settings,
    )

    first_hour, hourly = hourly_states(trace)
    hourly_cutoff_h = float(first_hour + int(hourly.size * settings.train_fraction))
    hourly_model = training_model(trace, hourly_cutoff_h)
    hourly_candidates = default_candidates(
        None if hourly_model is None else hourly_model.mttf_h,
        HOUR_H,
        lags=settings.hourly_lags,
        context=settings.hourly_context,
        max_svr_samples=settings.max_svr_samples,
        chain=hourly_model,
    )
    if hourly_model is not None:
        hourly_candidates.append(MarkovForecaster(hourly_model, HOUR_H))
    hourly_result = backtest_series(
        hourly, hourly_candidates, granularity="hourly", binary=True, settings=settings
    )
    return NodeBacktest(
        node=trace.node,
        failures=trace.failures,
        daily=daily_result,
        hourly=hourly_result,
        prototype=prototype_contrast(daily, seed=settings.seed, train_fraction=settings.train_fraction),
        train_mttf_h=None if hourly_model is None else hourly_model.mttf_h,
        train_mttr_h=None if hourly_model is None else hourly_model.mttr_h,
    )


def backtest_nodes(
    traces: Iterable[NodeTrace], settings: BacktestSettings | None = None
) -> list[NodeBacktest]:
    """:func:`backtest_node` of each trace, in order."""
    return [backtest_node(trace, settings) for trace in traces]
