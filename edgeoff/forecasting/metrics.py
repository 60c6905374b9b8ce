"""Scores of forecasts on a test part: errors, the Brier score and the reliability table (calibration).

This module is pure: numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeoff.errors import PredictionError

__all__ = ["CALIBRATION_BINS", "ForecastScore", "ReliabilityBin", "brier_score", "reliability_table"]

CALIBRATION_BINS = 10
"""Equal-width bins of predicted probability in the reliability table."""


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
