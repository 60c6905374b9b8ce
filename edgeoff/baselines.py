"""The KubeHybrid baseline's scorer: Kubernetes-style greedy multi-criteria placement.

As the paper describes it (section 5.1): filter the sites that can host the task (memory), then rank them by a
weighted sum of min-max normalised criteria, each in [0, 1] with 1 best:

- response time of the task on the site (lower is better),
- the phone's energy (lower is better),
- free resources: the site's MIPS relative to the largest (Kubernetes' LeastAllocated on an idle cluster),
- availability estimated from MTBF: MTBF / (MTBF + MTTR), the steady-state availability.

Recovery is reactive (see edgeoff/evaluation/lockstep.py): after a failure the task resumes on the next-best
site from its last checkpoint (taken every `checkpoint_interval_s` of execution), or is re-computed locally
when the phone is next, and every offloaded task pays for writing checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeoff.cost import TaskCosts

__all__ = ["KubeHybridSettings", "kubehybrid_scores"]


@dataclass(frozen=True)
class KubeHybridSettings:
    """Score weights (they sum to 1) and the cost of check-pointing.

    The weights are the best of four candidates on a tuning seed (benchmarks/tune.py,
    docs/evaluation/tune.log), the same effort the MDP engines' discount got: even weights, 724.8 s per
    1000 apps against 725.4 s for the untuned 0.4/0.3/0.1/0.2 and 732.4 s for the availability-heavy
    0.3/0.2/0/0.5 that won before the model knew the detector.
    """

    response_time_weight: float = 0.25
    energy_weight: float = 0.25
    resources_weight: float = 0.25
    availability_weight: float = 0.25
    # Writing checkpoints slows an offloaded task's execution by this fraction (periodic state snapshots).
    checkpoint_overhead: float = 0.05
    # Seconds to restore the last checkpoint on another site after a failure (phone idle meanwhile).
    restore_s: float = 0.1
    # Model seconds of execution between two checkpoints: a failure loses at most this much work.
    checkpoint_interval_s: float = 0.02


def _benefit(x: np.ndarray, feasible: np.ndarray) -> np.ndarray:
    """Min-max normalise costs x (N, A) over feasible actions to [0, 1], 1 for the cheapest."""
    lo = np.where(feasible, x, np.inf).min(axis=1, keepdims=True)
    hi = np.where(feasible, x, -np.inf).max(axis=1, keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    benefit: np.ndarray = np.clip((hi - x) / span, 0.0, 1.0)
    return benefit


def kubehybrid_scores(
    costs: TaskCosts,
    mips: np.ndarray,
    availability: np.ndarray,
    feasible: np.ndarray,
    settings: KubeHybridSettings,
) -> np.ndarray:
    """Scores (N, A) of placing N tasks, from their costs (N, A) in the current state.

    mips (A,), availability (N, A) or (A,), feasible (N, A) bool. Infeasible sites score -inf.
    """
    score = (
        settings.response_time_weight * _benefit(costs.time_s, feasible)
        + settings.energy_weight * _benefit(costs.energy_j, feasible)
        + settings.resources_weight * (mips / mips.max())
        + settings.availability_weight * availability
    )
    return np.where(feasible, score, -np.inf)
