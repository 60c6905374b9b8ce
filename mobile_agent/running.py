"""Running aggregates of constant size: a mean and standard deviation (Welford) and quantiles (a histogram
of logarithmic bins), so that a long-running agent summarises its measurements without keeping them."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

__all__ = ["LogHistogram", "RunningStat"]


@dataclass
class RunningStat:
    """Count, sum, mean and sample standard deviation of a stream of floats (Welford's update: stable)."""

    count: int = 0
    total: float = 0.0
    mean: float = 0.0
    _m2: float = 0.0  # sum of squared deviations from the running mean

    def add(self, x: float) -> None:
        self.count += 1
        self.total += x
        delta = x - self.mean
        self.mean += delta / self.count
        self._m2 += delta * (x - self.mean)

    def copy(self) -> RunningStat:
        return dataclasses.replace(self)

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof 1); 0.0 below two values."""
        return math.sqrt(max(self._m2, 0.0) / (self.count - 1)) if self.count > 1 else 0.0


@dataclass
class LogHistogram:
    """Exact counts in logarithmic bins: quantiles of a stream of non-negative values in bounded memory.

    Bin i holds the values in (g^(i-1), g^i], g = (1 + a) / (1 - a), and reports them as 2 g^i / (g + 1),
    which is within a relative error `a` of each of them. Values up to `min_value` share a bin reported
    as 0.0, values above `max_value` are counted as `max_value`; so the bins number at most
    log(max_value / min_value) / log(g) + 2 (1,729 for the defaults). :meth:`quantile` interpolates
    between order statistics as numpy's default percentile does, so for values in [0, max_value] it is
    within a * true + min_value of `np.percentile` of the same values.
    """

    relative_error: float = 0.01
    min_value: float = 1e-3
    max_value: float = 1e12
    _counts: dict[int, int] = field(default_factory=dict)  # bin index -> values in it
    _small: int = 0  # values <= min_value
    count: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.relative_error < 1 or not 0 < self.min_value < self.max_value:
            raise ValueError("need 0 < relative_error < 1 and 0 < min_value < max_value")
        self._log_gamma = math.log((1 + self.relative_error) / (1 - self.relative_error))

    @property
    def bins(self) -> int:
        """Bins in use (bounded, see the class docstring)."""
        return len(self._counts) + (self._small > 0)

    def add(self, value: float) -> None:
        if not value >= 0:  # NaN or negative
            raise ValueError(f"values must be non-negative, got {value}")
        self.count += 1
        if value <= self.min_value:
            self._small += 1
            return
        i = math.ceil(math.log(min(value, self.max_value)) / self._log_gamma)
        self._counts[i] = self._counts.get(i, 0) + 1

    def _value(self, i: int) -> float:
        gamma = math.exp(self._log_gamma)
        return 2.0 * math.exp(i * self._log_gamma) / (gamma + 1.0)

    def _order_statistic(self, rank: int, bins: list[tuple[int, int]]) -> float:
        """The value at 0-based `rank` of the sorted values (as its bin reports it)."""
        if rank < self._small:
            return 0.0
        seen = self._small
        for i, n in bins:
            seen += n
            if rank < seen:
                return self._value(i)
        return self._value(bins[-1][0])

    def quantile(self, q: float) -> float | None:
        """The `q` percentile (0 to 100), interpolated linearly as numpy's; None when empty."""
        if not self.count:
            return None
        bins = sorted(self._counts.items())
        h = (self.count - 1) * q / 100.0
        lo = math.floor(h)
        below = self._order_statistic(lo, bins)
        if h == lo:
            return below
        above = self._order_statistic(lo + 1, bins)
        return below + (above - below) * (h - lo)
