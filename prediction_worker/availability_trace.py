"""A site's availability trace from detector verdicts, and its availability forecast: pure, time injected.

:class:`SiteTrace` turns up/down :class:`~prediction_worker.detector.Verdict` events (monotonic seconds)
into

* the site's up/down intervals (a bounded deque of :class:`Interval`), and
* an availability series: the share of each window of `window_s` seconds the site was up, oldest first,
  at most `max_windows` values (a deque; the oldest fall off). Windows start at the site's first verdict.

The series may start from a *seed*: a LANL node's history (:func:`seed_windows`, the node's daily
availability from :func:`edgeoff.traces.daily_availability`, one day per window), optionally followed by the
live windows a previous worker stored. A seed day and a live window are different lengths of time; the
seed gives the forecaster a node's failure *pattern* (how often windows are imperfect and how deep), the
live windows then replace it from the oldest end. With failure injection at one trace hour per wall second,
a live window of 24 s is exactly one trace day.

:class:`SitePredictor` forecasts the next window's availability:

* with at least `min_windows` values, the forecaster chosen by
  :func:`edgeoff.forecasting.select_forecaster` over :func:`edgeoff.forecasting.default_candidates` on the
  whole series (train_fraction 1), re-chosen every `refit_every` new windows, the forecast clipped to [0, 1].
  With a seed, the candidates include `belief`, the seed node's two-state chain: judged on the windows like
  every candidate, and when chosen it forecasts what `mdp-belief` needs, the probability that the site,
  which the detector holds up now, stays up for the next task of `task_windows` windows;
* before that (or when no forecaster can be fitted), a prior: the seed node's steady-state availability
  MTTF / (MTTF + MTTR) (model name `steady-state:{node}`), or 1.0 without a seed (model `prior`: a site
  that just said hello is assumed up; the detector, not the forecast, reports failures).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgeoff.errors import PredictionError
from edgeoff.forecasting import (
    DEFAULT_CONTEXT,
    DEFAULT_LAGS,
    Forecaster,
    default_candidates,
    select_forecaster,
)
from edgeoff.forecasting.belief import BeliefForecaster
from edgeoff.scenario import Simulation
from edgeoff.traces import NodeTrace, TwoStateModel, daily_availability, two_state_model

__all__ = [
    "DEFAULT_MAX_INTERVALS",
    "DEFAULT_MAX_WINDOWS",
    "DEFAULT_MIN_WINDOWS",
    "DEFAULT_REFIT_EVERY",
    "DEFAULT_TASK_S",
    "DEFAULT_WINDOW_S",
    "AvailabilityWindow",
    "Forecast",
    "Interval",
    "SitePredictor",
    "SiteTrace",
    "seed_model",
    "seed_windows",
]

FloatArray = npt.NDArray[np.float64]

DEFAULT_WINDOW_S = 60.0  # wall seconds per availability window of a SiteTrace made without one


@dataclass(frozen=True)
class AvailabilityWindow:
    """One availability window of the live forecasters: `seconds` of wall time standing for `trace_h`
    trace hours (the scenario's prediction_window_h at the sites' time compression)."""

    seconds: float
    trace_h: float

    @classmethod
    def of(cls, simulation: Simulation, time_compression: float | None = None) -> AvailabilityWindow:
        """The window of `simulation` at `time_compression` (None: the scenario's)."""
        return cls(simulation.window_s(time_compression), simulation.prediction_window_h)


DEFAULT_MAX_WINDOWS = 365  # a year of daily seed values, or six hours of one-minute live windows
DEFAULT_MAX_INTERVALS = 1000  # up/down intervals kept per site (the Redis copy is bounded separately)
DEFAULT_MIN_WINDOWS = 10  # below this the inner split of select_forecaster leaves nothing to compare
DEFAULT_REFIT_EVERY = 10  # windows between two forecaster selections (an SVR fit costs milliseconds)
PRIOR_AVAILABILITY = 1.0  # no seed, too few windows: a site that is alive is assumed to stay up
MAX_SVR_SAMPLES = 365  # bound on SVR training samples (fit time grows quadratically)
DEFAULT_TASK_S = 1.0  # wall seconds a task needs its site (transfers and execution): the belief's horizon


@dataclass(frozen=True)
class Interval:
    """The site was `up` (or down) from `start` to `end`, monotonic seconds."""

    up: bool
    start: float
    end: float


@dataclass(frozen=True)
class Forecast:
    """Predicted availability of the next window, the model that made it and that model's backtest MAE."""

    availability: float
    model: str
    error_mae: float | None = None


class SiteTrace:
    """Up/down intervals and availability windows of one site, built from verdicts.

    Args:
        window_s: window length, seconds, > 0.
        max_windows: most windows kept (seed included), >= 1.
        max_intervals: most closed intervals kept, >= 1.
        history: initial windows, oldest first, values in [0, 1] (seed, then restored live windows).
    """

    def __init__(
        self,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        max_windows: int = DEFAULT_MAX_WINDOWS,
        max_intervals: int = DEFAULT_MAX_INTERVALS,
        history: Sequence[float] = (),
    ) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        if max_windows < 1 or max_intervals < 1:
            raise ValueError("max_windows and max_intervals must be >= 1")
        self.window_s = window_s
        self.max_windows = max_windows
        self.windows: deque[float] = deque(
            (min(1.0, max(0.0, float(v))) for v in history), maxlen=max_windows
        )
        self.intervals: deque[Interval] = deque(maxlen=max_intervals)
        self.up: bool | None = None  # current state; None before the first verdict
        self.since = 0.0  # start of the current interval
        self._window_start = 0.0
        self._accounted_to = 0.0
        self._up_s = 0.0  # up seconds of the current window, up to _accounted_to

    def record(self, up: bool, at: float) -> int:
        """A verdict at `at`; returns the number of windows it closed."""
        if self.up is None:
            self.up, self.since = up, at
            self._window_start = self._accounted_to = at
            return 0
        closed = self.advance(at)
        if up != self.up:
            self.intervals.append(Interval(self.up, self.since, max(at, self.since)))
            self.up, self.since = up, max(at, self.since)
        return closed

    def advance(self, now: float) -> int:
        """Close every window that ended by `now`; returns how many were closed."""
        if self.up is None or now <= self._accounted_to:
            return 0
        due = int((now - self._window_start) // self.window_s)
        if due > self.max_windows:  # a long gap (suspended worker): only the last max_windows matter
            skip = due - self.max_windows
            self._account(self._window_start + self.window_s)
            self._window_start += skip * self.window_s
            self._accounted_to = self._window_start
            self._up_s = 0.0
            due = self.max_windows
        for _ in range(due):
            end = self._window_start + self.window_s
            self._account(end)
            self.windows.append(min(1.0, self._up_s / self.window_s))
            self._window_start, self._up_s = end, 0.0
        self._account(now)
        return due

    def _account(self, until: float) -> None:
        if until > self._accounted_to:
            if self.up:
                self._up_s += until - self._accounted_to
            self._accounted_to = until

    def series(self) -> FloatArray:
        """The availability windows, shape (n,), oldest first."""
        return np.fromiter(self.windows, dtype=np.float64, count=len(self.windows))


def seed_windows(trace: NodeTrace, max_windows: int = DEFAULT_MAX_WINDOWS) -> FloatArray:
    """The last `max_windows` daily availabilities of a LANL node, shape (<= max_windows,)."""
    return daily_availability(trace)[-max_windows:]


def seed_model(trace: NodeTrace) -> TwoStateModel | None:
    """The node's two-state model; None for a node with a single outage (MTTF undefined)."""
    return two_state_model(trace) if trace.failures >= 2 else None


class SitePredictor:
    """Forecast of one site's next window: a selected forecaster, or the prior while history is short.

    Args:
        seed_node: the LANL node name the site was seeded from (names the prior), or None.
        seed: its two-state model (MTTF feeds the `mttf` candidate and the prior), or None.
        window_h: trace hours one window stands for (24: a seed day), for the `mttf` candidate.
        min_windows: windows needed before a forecaster is selected.
        refit_every: new windows between two selections.
        task_windows: how long a task needs its site, in windows (task seconds / window seconds), >= 0:
            the horizon of the `belief` forecaster's stay-up probability.
    """

    def __init__(
        self,
        *,
        seed_node: str | None = None,
        seed: TwoStateModel | None = None,
        window_h: float = 24.0,
        min_windows: int = DEFAULT_MIN_WINDOWS,
        refit_every: int = DEFAULT_REFIT_EVERY,
        lags: int = DEFAULT_LAGS,
        context: int = DEFAULT_CONTEXT,
        task_windows: float = DEFAULT_TASK_S / DEFAULT_WINDOW_S,
    ) -> None:
        if min_windows < 2 or refit_every < 1:
            raise ValueError("min_windows must be >= 2 and refit_every >= 1")
        if not (np.isfinite(task_windows) and task_windows >= 0):
            raise ValueError(f"task_windows must be >= 0, got {task_windows}")
        self.seed_node = seed_node
        self.seed = seed
        self.window_h = window_h
        self.min_windows = min_windows
        self.refit_every = refit_every
        self.lags = lags
        self.context = context
        self.task_windows = task_windows
        self.forecaster_: Forecaster | None = None
        self.reason_: str | None = None
        self.error_mae_: float | None = None  # the selected forecaster's MAE on its selection backtest
        self._new_windows = 0

    @property
    def prior(self) -> Forecast:
        if self.seed is not None and self.seed_node is not None:
            return Forecast(self.seed.steady_state_availability, f"steady-state:{self.seed_node}")
        return Forecast(PRIOR_AVAILABILITY, "prior")

    def windows_closed(self, count: int) -> None:
        """Tell the predictor that `count` new windows exist (drives the refit period)."""
        self._new_windows += count

    def forecast(self, series: FloatArray) -> Forecast:
        """Availability of the window after `series` (shape (n,), oldest first)."""
        if series.size < self.min_windows:
            return self.prior
        if self.forecaster_ is None or self._new_windows >= self.refit_every:
            candidates = default_candidates(
                self.seed.mttf_h if self.seed is not None else None,
                self.window_h,
                lags=self.lags,
                context=self.context,
                max_svr_samples=MAX_SVR_SAMPLES,
                chain=self.seed,
            )
            try:
                selection = select_forecaster(series, candidates, train_fraction=1.0)
            except PredictionError as exc:
                self.reason_ = str(exc)
                return self.prior
            self.forecaster_, self.reason_ = selection.forecaster, selection.reason
            self.error_mae_ = selection.inner_errors[selection.name].mae
            self._new_windows = 0
        try:
            if isinstance(self.forecaster_, BeliefForecaster):  # the detector holds the site up just now
                value = self.forecaster_.per_task(self.task_windows * self.window_h)
            else:
                value = float(self.forecaster_.predict_next(series))
        except PredictionError as exc:
            self.reason_ = str(exc)
            return self.prior
        if not np.isfinite(value):
            return self.prior
        return Forecast(min(1.0, max(0.0, value)), self.forecaster_.name, self.error_mae_)
