"""The per-site choice of a forecaster, on the training part only, and the candidates of a site.

* :func:`default_candidates`: the candidate list of a site.
* :func:`select_forecaster`: the per-site choice the prediction worker, the offline engine and the backtests
  call; it uses the training part only and never picks a model that did not beat the naive forecasters by
  :data:`MIN_IMPROVEMENT`.

Errors: everything here raises :class:`edgeoff.errors.PredictionError`.

This module is pure: numpy and scikit-learn only, no I/O, no clock, no randomness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy.typing as npt

from edgeoff.errors import PredictionError
from edgeoff.forecasting.belief import BeliefForecaster
from edgeoff.forecasting.forecasters import (
    EWMForecaster,
    LastValueForecaster,
    MTTFForecaster,
    RecentHistoryForecaster,
    TrainingMeanForecaster,
    is_naive,
)
from edgeoff.forecasting.series import DEFAULT_LAGS, DEFAULT_TRAIN_FRACTION, Forecaster, as_series
from edgeoff.forecasting.svr import DEFAULT_CONTEXT, SVRFeaturesForecaster, SVRForecaster
from edgeoff.forecasting.walk_forward import ForecastError, walk_forward
from edgeoff.traces import TwoStateModel

__all__ = [
    "DEFAULT_INNER_FRACTION",
    "MIN_IMPROVEMENT",
    "Selection",
    "default_candidates",
    "select_forecaster",
]

DEFAULT_INNER_FRACTION = 0.8
"""Inner chronological split of the training part used by :func:`select_forecaster`."""

MIN_IMPROVEMENT = 0.01
"""Relative inner-MAE margin by which a model must beat the best naive forecaster to be chosen (1 %): a win
by rounding error (an EWM with alpha 0.9 against last value) is not a win."""


def default_candidates(
    mttf_h: float | None,
    window_h: float,
    *,
    lags: int = DEFAULT_LAGS,
    context: int = DEFAULT_CONTEXT,
    max_svr_samples: int | None = None,
    chain: TwoStateModel | None = None,
) -> list[Forecaster]:
    """The candidates of a site: svr (paper), svr-features, last-value, training-mean, ewm, mttf, belief.

    Args:
        mttf_h: the site's mean time to failure, hours; None (undefined: fewer than two outages) leaves out
            the ``mttf`` forecaster.
        window_h: length of one window of the series, hours (24 daily, 1 hourly); used by ``mttf``.
        lags: lag features of the SVRs.
        context: recent values searched for the last failure (svr-features) and EWM window.
        max_svr_samples: fit the SVRs on at most this many most recent samples (None: all).
        chain: the site's two-state chain fitted on its training outages, hours; given, it adds the
            ``belief`` forecaster (:class:`~edgeoff.forecasting.belief.BeliefForecaster`).

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
    if chain is not None:
        candidates.append(BeliefForecaster(chain, window_h))
    return candidates


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
    validation part one step ahead (:func:`~edgeoff.forecasting.walk_forward`). The candidate with the lowest
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
