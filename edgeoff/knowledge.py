"""What an engine knows of the sites when it decides: the detector's view, and the availability it uses.

One implementation for the live agent (mobile_agent/planner.py) and the offline simulator
(edgeoff/evaluation/), so that both decide on the same information:

- The detector view (:func:`detector_known_down`): a failure becomes known `detection` after it starts
  (10 missed heartbeats of 150 ms by default); a recovery as soon as heartbeats resume. Live, the view is
  the worker's `detector:down` predictions and the sites' offline statuses; offline it is computed from the
  simulated up/down path with this function. It carries over from one application to the next.
- The engine's input (:func:`engine_input`), per action, at the decision's time scale: the probability
  that the site stays up for this task from now on (its expected upload and execution, in trace time):

  | source | engine | input |
  |---|---|---|
  | `detector` | mdp-reactive | 1: every site not known down is assumed up |
  | `svr`, `selected` | mdp-svr, mdp-selected | window forecast A through the chain: e^{-d (1-A) / (A MTTR)} |
  | `mtbf-reliability` | efpo | 1 - P(failure within d) = e^{-d / MTBF} |
  | `mtbf-steady-state` | kubehybrid | MTTF / (MTTF + MTTR) (the score's availability criterion) |
  | `oracle` | mdp-oracle | the true state now (1 up, 0 down); it still cannot see a failure coming |
  | `belief` | mdp-belief | the chain's belief: up now (heartbeats), no failure within d: e^{-d / MTTF} |

- :func:`usable_availability` combines the two: a site known down gets 0 whatever the engine believed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

from edgeoff import chain
from edgeoff.scenario import Scenario

__all__ = ["chain_means", "detector_known_down", "engine_input", "usable_availability"]


def detector_known_down(
    up: np.ndarray, since: np.ndarray, now: ArrayLike, detection: ArrayLike
) -> np.ndarray:
    """Sites the detector has declared down at `now`: down, and down for at least `detection` already.

    `up` (..., S) bool, `since` (..., S) the time of the last change of state, `now` broadcastable (...,
    1) or scalar, `detection` the detector's delay, all in one unit of time.
    """
    elapsed = np.asarray(now, dtype=float) - since
    out: np.ndarray = ~up & (elapsed >= detection)
    return out


def engine_input(
    source: str,
    *,
    duration: np.ndarray,
    mean_up: np.ndarray,
    mean_down: np.ndarray,
    forecast: np.ndarray | None = None,
    up_now: np.ndarray | None = None,
) -> np.ndarray:
    """The availability (N, A) an engine uses for a task, before the detector view (see the module table).

    `duration` (N, A): the task's expected time at risk on each action (upload and execution), in the unit
    of `mean_up` and `mean_down` ((A,) per site: MTTF and MTTR; the phone: inf and 0; NaN where the chain
    is unknown, e.g. a live agent started without a dataset's node table). `forecast` (N, A):
    window availability forecasts (sources svr, selected); `up_now` (N, A) bool: the true state (oracle).
    """
    shape = np.shape(duration)
    match source:
        case "detector":
            return np.ones(shape)
        case "svr" | "selected":
            if forecast is None:
                raise ValueError(f"source {source!r} needs a forecast")
            mapped = chain.stays_up_given_window(forecast, np.nan_to_num(mean_down), duration)
            # an unknown chain (mean_down NaN): the window forecast is the probability itself
            out: np.ndarray = np.where(np.isnan(mean_down), np.asarray(forecast, dtype=float), mapped)
            return out
        case "mtbf-reliability":  # an unknown chain (NaN): assumed up
            reliability: np.ndarray = chain.stays_up(duration, np.asarray(mean_up) + np.asarray(mean_down))
            return np.asarray(np.nan_to_num(reliability, nan=1.0), dtype=float)
        case "mtbf-steady-state":
            steady = np.nan_to_num(chain.steady_state(mean_up, mean_down), nan=1.0)
            return np.broadcast_to(steady, shape).astype(float)
        case (
            "belief"
        ):  # the chain's belief, the detector observing the site up now (edgeoff.forecasting.belief)
            return np.asarray(
                chain.p_up_after(True, 0.0, mean_up, mean_down) * chain.stays_up(duration, mean_up),
                dtype=float,
            )
        case "oracle":
            if up_now is None:
                raise ValueError("source 'oracle' needs the true state")
            return np.asarray(up_now, dtype=float) * np.ones(shape)
    raise ValueError(f"unknown availability source {source!r}")


def usable_availability(availability: np.ndarray, known_down: np.ndarray) -> np.ndarray:
    """The availability an engine decides on: its input (N, A), 0 where the detector knows a site is down
    (N, A) bool (the phone is never down)."""
    out: np.ndarray = np.where(known_down, 0.0, availability)
    return out


def chain_means(
    scenario: Scenario, dataset: str, mttf_mttr_h: Mapping[str, tuple[float, float]]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The sites' chains (S,) for PlannerSettings: MTTF and MTTR (trace hours) of each site's node in
    `dataset` (`mttf_mttr_h` by node name); inf and 0 for sites that never fail (the phone)."""
    nodes = scenario.dataset(dataset)
    up, down = [], []
    for sid in scenario.site_ids:
        node = nodes.get(sid)
        mttf, mttr = mttf_mttr_h.get(node, (float("inf"), 0.0)) if node is not None else (float("inf"), 0.0)
        up.append(float(mttf))
        down.append(float(mttr))
    return tuple(up), tuple(down)
