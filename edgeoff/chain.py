"""The two-state (up/down) continuous-time Markov chain of a site, in closed form, vectorised.

A site is up for an exponential time of mean `mean_up` (its node's MTTF), then down for an exponential time
of mean `mean_down` (MTTR), and so on. With failure rate λ = 1 / mean_up and repair rate μ = 1 / mean_down,
the probability of being up after `dt` is (Kolmogorov forward equations, solved exactly):

    P(up at t + dt | up at t)   = π + (1 - π) e^{-(λ + μ) dt}
    P(up at t + dt | down at t) = π (1 - e^{-(λ + μ) dt}),        π = mean_up / (mean_up + mean_down)

and a site that is up now stays up for the next `d` with probability e^{-λ d} (memorylessness). A site
with `mean_down` 0 never stays down (π = 1). Every function takes numpy arrays that broadcast together;
`mean_up`, `mean_down`, `dt` and `d` share one unit of time (hours for the LANL node table, trace seconds
in the simulator). This module is the one implementation of these formulas: the simulator steps its sites
with it, the failure injection of the live sites samples the same chain, and the belief forecaster
(the probability that a site stays up for the next task) derives from it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "p_up_after",
    "sample_sojourn",
    "sample_state_after",
    "stays_up",
    "stays_up_given_window",
    "steady_state",
]


def steady_state(mean_up: ArrayLike, mean_down: ArrayLike) -> np.ndarray:
    """π, the long-run share of time up: mean_up / (mean_up + mean_down); 1 where mean_down is 0."""
    up, down = np.asarray(mean_up, dtype=float), np.asarray(mean_down, dtype=float)
    out: np.ndarray = np.where(np.isinf(up) | (down <= 0), 1.0, up / np.where(np.isinf(up), 1.0, up + down))
    return out


def p_up_after(up_now: ArrayLike, dt: ArrayLike, mean_up: ArrayLike, mean_down: ArrayLike) -> np.ndarray:
    """P(up after `dt` | the state now): `up_now` is bool (known state) or a probability of being up."""
    up, down = np.asarray(mean_up, dtype=float), np.asarray(mean_down, dtype=float)
    p0 = np.asarray(up_now, dtype=float)
    pi = steady_state(up, down)
    rate = 1.0 / up + np.where(down > 0, 1.0 / np.where(down > 0, down, 1.0), np.inf)  # λ + μ, μ = inf at 0
    elapsed = np.asarray(dt, dtype=float)
    # e^{-(λ+μ) dt}: 1 for dt = 0 (also when μ is infinite: nothing happens in no time), 0 for dt > 0 and
    # μ infinite (an instant repair), e^{-λ dt} when the site never fails and never repairs (λ = μ = 0).
    with np.errstate(invalid="ignore"):
        decay = np.where(elapsed > 0, np.exp(-rate * np.where(elapsed > 0, elapsed, 0.0)), 1.0)
    out: np.ndarray = pi + (p0 - pi) * decay
    return out


def stays_up(d: ArrayLike, mean_up: ArrayLike) -> np.ndarray:
    """P(no failure during the next `d` | up now) = e^{-d / mean_up}."""
    out: np.ndarray = np.exp(-np.asarray(d, dtype=float) / np.asarray(mean_up, dtype=float))
    return out


def sample_state_after(
    up_now: np.ndarray, dt: ArrayLike, mean_up: ArrayLike, mean_down: ArrayLike, uniform: np.ndarray
) -> np.ndarray:
    """The state after `dt` drawn exactly from the chain, given uniforms in [0, 1) of the same shape."""
    out: np.ndarray = uniform < p_up_after(up_now, dt, mean_up, mean_down)
    return out


def sample_sojourn(
    up_now: np.ndarray, mean_up: ArrayLike, mean_down: ArrayLike, uniform: np.ndarray
) -> np.ndarray:
    """Time until the next change of state (exponential, memoryless): of mean `mean_up` while up, `mean_down`
    while down, by inversion of uniforms in [0, 1) (so common random numbers stay aligned)."""
    mean = np.where(up_now, np.asarray(mean_up, dtype=float), np.asarray(mean_down, dtype=float))
    out: np.ndarray = -mean * np.log1p(-uniform)
    return out


def stays_up_given_window(availability: ArrayLike, mean_down: ArrayLike, d: ArrayLike) -> np.ndarray:
    """P(no failure during the next `d` | up now) when a forecaster says the site is up a share
    `availability` of the coming window (a share of time, in [0, 1]).

    The mapping from a window forecast to the decision's time scale: keep the site's repair time
    `mean_down` (its node's MTTR) and solve π = mean_up / (mean_up + mean_down) for the failure time the
    forecast implies, mean_up = mean_down A / (1 - A); then e^{-d / mean_up} = e^{-d (1 - A) / (A mean_down)}.
    A forecast of 1 (or a site that never stays down) gives 1, a forecast of 0 gives 0.
    """
    a = np.clip(np.asarray(availability, dtype=float), 0.0, 1.0)
    down = np.asarray(mean_down, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where((a >= 1.0) | (down <= 0), 0.0, (1.0 - a) / (np.maximum(a, 1e-300) * down))
        out: np.ndarray = np.where(a <= 0.0, 0.0, np.exp(-rate * np.asarray(d, dtype=float)))
    return out
