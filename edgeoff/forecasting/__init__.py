"""Availability forecasting: the paper's SVR, the baselines it must beat, the per-site selection, and the
walk-forward backtests that judge them.

The package, by concern:

* :mod:`~edgeoff.forecasting.series`: the series every forecaster reads and the :class:`Forecaster` protocol;
* :mod:`~edgeoff.forecasting.svr`: the paper's SVR (equations 1 and 2) and the SVR with time since failure;
* :mod:`~edgeoff.forecasting.forecasters`: last value, training mean, MTTF, EWM, the two-state chain;
* :mod:`~edgeoff.forecasting.belief`: ``belief``, the probability that a site stays up for the next task
  given the detector's last observation, from its two-state chain (``mdp-belief``, ``dag-belief``);
* :mod:`~edgeoff.forecasting.selection`: the candidates of a site and the choice between them;
* :mod:`~edgeoff.forecasting.walk_forward`: the chronological walk-forward backtest of one forecaster;
* :mod:`~edgeoff.forecasting.backtest`: the daily and hourly backtests of a LANL node (the engine of
  ``edgeoff traces backtest``), scored by :mod:`~edgeoff.forecasting.metrics`, with the prototype's method
  for contrast (:mod:`~edgeoff.forecasting.prototype`), rendered by :mod:`~edgeoff.forecasting.report`.

The forecasters, the selection and the walk-forward backtest are importable from this package directly.
Everything here is pure (numpy and scikit-learn; no I/O, no clock) and raises
:class:`edgeoff.errors.PredictionError`.
"""

from edgeoff.forecasting.belief import BeliefForecaster, ChainBelief
from edgeoff.forecasting.forecasters import (
    EWMForecaster,
    LastValueForecaster,
    MarkovForecaster,
    MTTFForecaster,
    RecentHistoryForecaster,
    TrainingMeanForecaster,
    is_naive,
)
from edgeoff.forecasting.selection import (
    DEFAULT_INNER_FRACTION,
    MIN_IMPROVEMENT,
    Selection,
    default_candidates,
    select_forecaster,
)
from edgeoff.forecasting.series import (
    DEFAULT_LAGS,
    DEFAULT_TRAIN_FRACTION,
    Forecaster,
    as_series,
    as_windows,
    lagged,
    last_values,
)
from edgeoff.forecasting.svr import (
    DEFAULT_CONTEXT,
    PaperSVR,
    SVRFeaturesForecaster,
    SVRForecaster,
    paper_hyperparameters,
)
from edgeoff.forecasting.walk_forward import Backtest, ForecastError, compare_forecasters, walk_forward

__all__ = [
    "DEFAULT_CONTEXT",
    "DEFAULT_INNER_FRACTION",
    "DEFAULT_LAGS",
    "DEFAULT_TRAIN_FRACTION",
    "MIN_IMPROVEMENT",
    "Backtest",
    "BeliefForecaster",
    "ChainBelief",
    "EWMForecaster",
    "ForecastError",
    "Forecaster",
    "LastValueForecaster",
    "MTTFForecaster",
    "MarkovForecaster",
    "PaperSVR",
    "RecentHistoryForecaster",
    "SVRFeaturesForecaster",
    "SVRForecaster",
    "Selection",
    "TrainingMeanForecaster",
    "as_series",
    "as_windows",
    "compare_forecasters",
    "default_candidates",
    "is_naive",
    "lagged",
    "last_values",
    "paper_hyperparameters",
    "select_forecaster",
    "walk_forward",
]
