"""Honest forecasting backtests of LANL nodes, daily and hourly, and the prototype's method for contrast.

For one node trace (:class:`edgeoff.traces.NodeTrace`) :func:`backtest_node` runs:

* **daily**: the daily availability series (:func:`edgeoff.traces.daily_availability`), every candidate of
  :func:`edgeoff.forecasters.default_candidates` (window 24 h) fitted on the first 80 % of the days and
  forecasting each later day one step ahead from the true earlier days (walk-forward): MAE and RMSE.
* **hourly**: the hourly up/down state series (:func:`hourly_states`): an hour is *down* (0) when any outage
  touches it, even for a minute or as a zero-length failure record, else *up* (1). So the series is binary
  and "up" means "a task sent in that hour meets no failure". A forecast is P(up next hour); scores are MAE,
  RMSE, the Brier score (mean squared error of the probability against the 0/1 outcome, so RMSE²) and a
  reliability table (:func:`reliability_table`). Candidates: the daily ones with window 1 h (``mttf`` is then
  ``exp(-1 / MTTF)``) plus ``markov``, the two-state chain one hour ahead of the current state. The SVRs fit
  on the most recent :data:`MAX_SVR_SAMPLES` training hours only, which keeps a 16-node run near a minute.
* **selection**: :func:`edgeoff.forecasters.select_forecaster` on each series (inner split of the training
  part only), with the chosen forecaster's test errors.
* **prototype**: the published prototype's "forecast" (PARAMETERS.md, known defect 1): an RBF SVR regressed
  on the day INDEX with the prototype's settings, once with a seeded random 80/20 split (interpolation, what
  the prototype did) and once with the chronological split (forecasting), next to the training mean and
  median (constant predictors) on each split.

Parameters that come from the outages (MTTF for ``mttf``, MTTF and MTTR for ``markov``) use only the outages
that ended by the end of the training part. The inner split of the selection reuses them as given, so they
have seen the inner validation part's outages; the other candidates have not.

This module is pure: numpy and scikit-learn only, no I/O, no clock; the only randomness is the seeded split
of :func:`prototype_contrast`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.svm import SVR

from edgeoff.availability import (
    DEFAULT_LAGS,
    DEFAULT_TRAIN_FRACTION,
    Forecaster,
    LastValueForecaster,
    TrainingMeanForecaster,
    paper_hyperparameters,
    walk_forward,
)
from edgeoff.errors import PredictionError, TraceError
from edgeoff.forecasters import (
    DEFAULT_CONTEXT,
    DEFAULT_INNER_FRACTION,
    ForecastError,
    MarkovForecaster,
    default_candidates,
    select_forecaster,
)
from edgeoff.traces import HOURS_PER_DAY, NodeTrace, TwoStateModel, daily_availability

__all__ = [
    "CALIBRATION_BINS",
    "DEFAULT_SEED",
    "HOURLY_CONTEXT",
    "HOURLY_LAGS",
    "MAX_SVR_SAMPLES",
    "BacktestSettings",
    "ForecastScore",
    "NodeBacktest",
    "PrototypeContrast",
    "ReliabilityBin",
    "SeriesBacktest",
    "SplitScores",
    "backtest_node",
    "backtest_nodes",
    "backtest_series",
    "brier_score",
    "hourly_states",
    "prototype_contrast",
    "reliability_table",
    "render_markdown",
    "report",
    "training_model",
]

FloatArray = npt.NDArray[np.float64]

REPORT_FORMAT_VERSION = 1
HOUR_H = 1.0  # step of the hourly series, hours

MAX_SVR_SAMPLES = 2000
"""Most recent training samples the hourly SVRs fit on (about 12 weeks of hours): libsvm's fit grows about
quadratically with samples and the longest hourly training part has ~51,000."""

HOURLY_LAGS = 24
"""Lag features of the hourly SVRs: the last day of hours."""

HOURLY_CONTEXT = 168
"""Hours svr-features searches for the last failure, and the hourly EWM window: one week."""

CALIBRATION_BINS = 10
"""Equal-width bins of predicted probability in the reliability table."""

DEFAULT_SEED = 0
"""Seed of the prototype's random split."""

PROTOTYPE_EPSILON = 0.001
"""The published prototype's fixed SVR epsilon (it computed equation 2 but used this constant)."""

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
    seen = trace.outages[trace.outages[:, 1] <= cutoff_h]
    if len(seen) < 2:
        return None
    past = NodeTrace(node=trace.node, outages=seen)
    return TwoStateModel(mttf_h=past.mttf_h, mttr_h=past.mttr_h)


# --------------------------------------------------------------------------- scores


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin ``[low, high)`` of predicted probability (the last bin includes 1.0).

    ``mean_predicted`` and ``observed_frequency`` are None for an empty bin.
    """

    low: float
    high: float
    count: int
    mean_predicted: float | None
    observed_frequency: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return {
            "low": self.low,
            "high": self.high,
            "count": self.count,
            "mean_predicted": self.mean_predicted,
            "observed_frequency": self.observed_frequency,
        }


def brier_score(probabilities: npt.ArrayLike, outcomes: npt.ArrayLike) -> float:
    """Mean squared error of probabilities against 0/1 outcomes, both shape (k,), k >= 1; 0 is perfect."""
    p = np.asarray(probabilities, dtype=np.float64)
    o = np.asarray(outcomes, dtype=np.float64)
    if p.shape != o.shape or p.ndim != 1 or p.size == 0:
        raise PredictionError(f"probabilities {p.shape} and outcomes {o.shape} must be equal non-empty 1-D")
    return float(np.mean((p - o) ** 2))


def reliability_table(
    probabilities: npt.ArrayLike, outcomes: npt.ArrayLike, *, bins: int = CALIBRATION_BINS
) -> tuple[ReliabilityBin, ...]:
    """Calibration of probability forecasts: per equal-width bin, count, mean forecast and observed frequency.

    Args:
        probabilities: forecasts in [0, 1], shape (k,).
        outcomes: 0/1 outcomes, shape (k,).
        bins: number of bins, >= 1.

    Returns:
        ``bins`` bins in increasing order; their counts sum to k.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    o = np.asarray(outcomes, dtype=np.float64)
    if p.shape != o.shape or p.ndim != 1:
        raise PredictionError(f"probabilities {p.shape} and outcomes {o.shape} must be equal 1-D shapes")
    if bins < 1:
        raise PredictionError(f"bins must be >= 1, got {bins}")
    index = np.clip(np.floor(p * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    predicted = np.bincount(index, weights=p, minlength=bins)
    observed = np.bincount(index, weights=o, minlength=bins)
    table = []
    for b in range(bins):
        n = int(counts[b])
        table.append(
            ReliabilityBin(
                low=b / bins,
                high=(b + 1) / bins,
                count=n,
                mean_predicted=float(predicted[b] / n) if n else None,
                observed_frequency=float(observed[b] / n) if n else None,
            )
        )
    return tuple(table)


@dataclass(frozen=True)
class ForecastScore:
    """Test-part errors of one forecaster; ``brier`` only for the binary (hourly) series."""

    name: str
    mae: float
    rmse: float
    brier: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (without the name, which keys it)."""
        values: dict[str, Any] = {"mae": self.mae, "rmse": self.rmse}
        if self.brier is not None:
            values["brier"] = self.brier
        return values


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


# --------------------------------------------------------------------------- the prototype's method


@dataclass(frozen=True)
class SplitScores:
    """Held-out daily MAE of the index SVR and of the two training constants on one split."""

    svr_mae: float
    svr_rmse: float
    mean_mae: float
    median_mae: float

    @property
    def best_constant_mae(self) -> float:
        """The lower MAE of the training mean and the training median."""
        return min(self.mean_mae, self.median_mae)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return {
            "svr": {"mae": self.svr_mae, "rmse": self.svr_rmse},
            "training_mean_mae": self.mean_mae,
            "training_median_mae": self.median_mae,
        }


@dataclass(frozen=True)
class PrototypeContrast:
    """SVR on the day index: random split (interpolation) against chronological split (forecasting).

    Each split holds out ``1 - train_fraction`` of the days. The constants are the training part's mean and
    median (the median, 1.0 for most nodes, is the constant with the lowest MAE when most days are up).
    """

    seed: int
    random_split: SplitScores
    chronological: SplitScores

    @property
    def constant_beats_chronological(self) -> bool:
        """Whether a training constant (mean or median) beats the index SVR on the chronological split."""
        return self.chronological.best_constant_mae < self.chronological.svr_mae

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return {
            "seed": self.seed,
            "svr_epsilon": PROTOTYPE_EPSILON,
            "random_split": self.random_split.to_dict(),
            "chronological": self.chronological.to_dict(),
            "constant_beats_chronological": self.constant_beats_chronological,
        }


def _index_split_scores(
    series: FloatArray, train: npt.NDArray[np.int64], test: npt.NDArray[np.int64]
) -> SplitScores:
    """Fit the prototype's index SVR on ``series[train]``, score it and the constants on ``series[test]``."""
    days = np.arange(series.size, dtype=np.float64).reshape(-1, 1)
    c, _ = paper_hyperparameters(series[train])
    model = SVR(kernel="rbf", C=c, epsilon=PROTOTYPE_EPSILON, gamma="scale").fit(days[train], series[train])
    svr = ForecastError.of(np.asarray(model.predict(days[test]), dtype=np.float64), series[test])
    actual = series[test]
    return SplitScores(
        svr_mae=svr.mae,
        svr_rmse=svr.rmse,
        mean_mae=float(np.mean(np.abs(actual - series[train].mean()))),
        median_mae=float(np.mean(np.abs(actual - np.median(series[train])))),
    )


def prototype_contrast(
    series: npt.ArrayLike, *, seed: int = DEFAULT_SEED, train_fraction: float = DEFAULT_TRAIN_FRACTION
) -> PrototypeContrast:
    """The prototype's "forecast": RBF SVR of daily availability on the day index, as the prototype set it up.

    ``C`` from the paper's equation 1, ``epsilon`` fixed at :data:`PROTOTYPE_EPSILON` (the prototype's value,
    not equation 2), ``gamma="scale"``, predictions not clipped. Fitted once on a seeded random split (what
    the prototype did) and once on the chronological split.

    Args:
        series: daily availability, shape (n,), n >= 5.
        seed: seed of the random split (``numpy.random.default_rng``).
        train_fraction: share of days fitted, in (0, 1).
    """
    values = np.asarray(series, dtype=np.float64)
    n_train = int(values.size * train_fraction)
    if n_train < 2 or n_train >= values.size:
        raise PredictionError(f"series of {values.size} days is too short for the prototype contrast")
    shuffled = np.random.default_rng(seed).permutation(values.size)
    ordered = np.arange(values.size, dtype=np.int64)
    return PrototypeContrast(
        seed=seed,
        random_split=_index_split_scores(values, np.sort(shuffled[:n_train]), np.sort(shuffled[n_train:])),
        chronological=_index_split_scores(values, ordered[:n_train], ordered[n_train:]),
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


# --------------------------------------------------------------------------- reports


def report(results: Sequence[NodeBacktest], *, source: str, settings: BacktestSettings) -> dict[str, Any]:
    """The JSON document of ``edgeoff traces backtest``.

    Keys: ``format``, ``acknowledgement``, ``source``, ``settings``, ``hourly_state_rule``, ``summary``
    (per granularity: nodes where SVR beats the naive forecasters, winners, selections) and ``nodes`` (one
    :meth:`NodeBacktest.to_dict` each).
    """
    summary: dict[str, Any] = {}
    for granularity in ("daily", "hourly"):
        runs = [(result.node, getattr(result, granularity)) for result in results]
        summary[granularity] = {
            "svr_beats_naive": [node for node, run in runs if run.svr_beats_naive],
            "best": {node: run.best for node, run in runs},
            "best_brier": {node: run.best_brier for node, run in runs},
            "selected": {node: run.selection_name for node, run in runs},
        }
    summary["prototype_constant_beats_chronological"] = [
        result.node for result in results if result.prototype.constant_beats_chronological
    ]
    return {
        "format": REPORT_FORMAT_VERSION,
        "acknowledgement": "Failure data provided by Los Alamos National Laboratory (LA-UR-05-7318)",
        "source": source,
        "settings": settings.to_dict(),
        "hourly_state_rule": "an hour is down (0) when any outage touches it, else up (1)",
        "summary": summary,
        "nodes": [result.to_dict() for result in results],
    }


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _series_table(results: Sequence[NodeBacktest], granularity: str) -> list[str]:
    runs = [(result.node, getattr(result, granularity)) for result in results]
    names: list[str] = []
    for _, run in runs:
        names.extend(score.name for score in run.scores if score.name not in names)
    hourly = granularity == "hourly"
    metrics = "MAE / RMSE / Brier" if hourly else "MAE / RMSE"
    extra = " best Brier |" if hourly else ""
    lines = [
        f"## {granularity.capitalize()} one-step-ahead forecasts ({metrics}, test part)",
        "",
        "| node | " + " | ".join(names) + f" | best |{extra} selected | SVR beats naive |",
        "|---|" + "---|" * (len(names) + 3 + hourly),
    ]
    for node, run in runs:
        cells = []
        for name in names:
            score = run.score(name)
            if score is None:
                cells.append("n/a")
                continue
            parts = [score.mae, score.rmse] + ([score.brier] if score.brier is not None else [])
            cell = " / ".join(_number(part) for part in parts)
            cells.append(f"**{cell}**" if name == run.best else cell)
        beats = {True: "yes", False: "no", None: "n/a"}[run.svr_beats_naive]
        brier = f" {run.best_brier} |" if hourly else ""
        lines.append(
            f"| {node} | " + " | ".join(cells) + f" | {run.best} |{brier} {run.selection_name} | {beats} |"
        )
    beating = sum(1 for _, run in runs if run.svr_beats_naive)
    lines += ["", f"SVR beats both naive forecasters on {beating} of {len(runs)} nodes.", ""]
    return lines


def render_markdown(results: Sequence[NodeBacktest], *, source: str, settings: BacktestSettings) -> str:
    """The markdown report: a table per granularity, the selections with reasons, the prototype contrast."""
    lines = [
        "# Availability forecasting backtest (LANL)",
        "",
        f"Source: {source}. Chronological split {settings.train_fraction:g}/"
        f"{1 - settings.train_fraction:.2g}; each test value is forecast from the true values before it."
        " Hourly series: an hour is down (0) when any outage touches it, else up (1); hourly SVRs fit on the"
        f" last {settings.max_svr_samples} training hours. Bold: the lowest test MAE (hindsight). Selected:"
        f" chosen on the training part only (inner split {settings.inner_fraction:g}), never a model that"
        " did not beat the naive forecasters.",
        "",
        "Failure data provided by Los Alamos National Laboratory (LA-UR-05-7318).",
        "",
    ]
    lines += _series_table(results, "daily")
    lines += _series_table(results, "hourly")
    lines += ["## Per-site selection", "", "| node | granularity | chosen | reason |", "|---|---|---|---|"]
    for result in results:
        for granularity in ("daily", "hourly"):
            run: SeriesBacktest = getattr(result, granularity)
            lines.append(f"| {result.node} | {granularity} | {run.selection_name} | {run.selection_reason} |")
    lines += [
        "",
        "## The prototype's method: SVR on the day index (daily MAE)",
        "",
        f"RBF SVR on the day index, C from equation 1, epsilon {PROTOTYPE_EPSILON} (the prototype's value)."
        f" Random split (seed {settings.seed}): interpolation between neighbouring days, what the prototype"
        " reported. Chronological split: forecasting. Mean/median: the training constant on the same days.",
        "",
        "| node | random: SVR | random: mean | random: median | chronological: SVR | chronological: mean |"
        " chronological: median | constant beats SVR |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        r, c = result.prototype.random_split, result.prototype.chronological
        cells = [r.svr_mae, r.mean_mae, r.median_mae, c.svr_mae, c.mean_mae, c.median_mae]
        beats = "yes" if result.prototype.constant_beats_chronological else "no"
        lines.append(f"| {result.node} | " + " | ".join(_number(cell) for cell in cells) + f" | {beats} |")
    beating = sum(1 for result in results if result.prototype.constant_beats_chronological)
    lines += [
        "",
        f"A training constant beats the index SVR on the chronological split on {beating} of"
        f" {len(results)} nodes.",
    ]
    return "\n".join(lines) + "\n"
