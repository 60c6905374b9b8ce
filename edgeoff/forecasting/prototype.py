"""The published prototype's "forecast" for contrast: an RBF SVR regressed on the day INDEX (PARAMETERS.md,
known defect 1), once with a seeded random 80/20 split (interpolation, what the prototype did) and once with
the chronological split (forecasting), next to the training mean and median (constant predictors).

This module is pure: numpy and scikit-learn only; the only randomness is the seeded split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.svm import SVR

from edgeoff.errors import PredictionError
from edgeoff.forecasting.series import DEFAULT_TRAIN_FRACTION, FloatArray
from edgeoff.forecasting.svr import paper_hyperparameters
from edgeoff.forecasting.walk_forward import ForecastError

__all__ = ["DEFAULT_SEED", "PROTOTYPE_EPSILON", "PrototypeContrast", "SplitScores", "prototype_contrast"]

DEFAULT_SEED = 0
"""Seed of the prototype's random split."""

PROTOTYPE_EPSILON = 0.001
"""The published prototype's fixed SVR epsilon (it computed equation 2 but used this constant)."""


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
