"""Running the DAG-aware engine: the plan of an application run at its start, and Algorithm 2 over it.

One implementation of the rule for the live agent (mobile_agent/dag_plan.py, N = 1) and the offline
simulator (edgeoff/evaluation/dag_runs.py, N applications of one shape at once):

1. When an application run starts, :func:`edgeoff.dag.plan_application` solves its finite-horizon MDP
   from what the agent knows then: every task's costs (:func:`application_costs`), the availability the
   per-task MDP of the same source would use (each task seen from the phone: the engine's input through
   :func:`edgeoff.knowledge.usable_availability`, computed by the caller, which knows the source) and the
   feasible sites (:func:`application_feasible`: memory, the phone
   for a task that cannot be offloaded, and the sites usable at the start).
2. Each attempt of task t takes the plan's best action in the task's state: the placement of the earlier
   tasks' results and the sites known down (failed during this run, or unusable in the view now);
   :func:`attempt_ranking` turns the plan's expected costs into the ranking Algorithm 2 reads
   (:func:`edgeoff.decision.next_actions`: higher is better, excluded actions barred). After a failure the
   failed site joins the known-down set and the next attempt ranks again: the plan's fallback chain.

The plan is not re-solved within the run. Pure: numpy only.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edgeoff.cost import CostModel, TaskCosts

__all__ = ["application_costs", "application_feasible", "attempt_ranking"]


def application_costs(
    model: CostModel, mi: npt.ArrayLike, input_kb: npt.ArrayLike, output_kb: npt.ArrayLike
) -> TaskCosts:
    """Expected time (s) and phone energy (J) of every task (arrays (N, T)) on every (input site, action)
    pair, shape (N, T, S, S): :meth:`edgeoff.cost.CostModel.tasks` per task."""
    sizes = [np.asarray(x, dtype=np.float64) for x in (mi, input_kb, output_kb)]
    N, T = sizes[0].shape
    costs = model.tasks(*(x.ravel() for x in sizes))
    S = model.n_sites
    return TaskCosts(costs.time_s.reshape(N, T, S, S), costs.energy_j.reshape(N, T, S, S))


def application_feasible(
    model: CostModel,
    site_memory_gb: npt.ArrayLike,
    memory_gb: npt.ArrayLike,
    offloadable: npt.ArrayLike,
    usable: npt.ArrayLike,
) -> npt.NDArray[np.bool_]:
    """(N, T, S) bool: the sites that can host each task of N runs: enough memory (`site_memory_gb` (S,) or
    (N, S) against `memory_gb` (N, T)), the phone only for a task that cannot be offloaded (`offloadable`
    (N, T)), and usable when the run starts (`usable` (N, S), the phone always)."""
    sites = np.arange(model.n_sites)
    site_memory = np.asarray(site_memory_gb, dtype=np.float64)
    site_memory = site_memory[None, None, :] if site_memory.ndim == 1 else site_memory[:, None, :]
    fits = site_memory >= np.asarray(memory_gb, dtype=np.float64)[:, :, None]
    where = np.asarray(offloadable, dtype=bool)[:, :, None] | (sites == model.mobile)
    up = np.asarray(usable, dtype=bool)[:, None, :] | (sites == model.mobile)
    out: npt.NDArray[np.bool_] = fits & where & up
    return out


def attempt_ranking(
    expected_cost: npt.ArrayLike, known_down: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Algorithm 2's input for one attempt: values (N, S) = minus the plan's expected costs to the end of
    the run of each action in the current state (`expected_cost` (N, S), +inf where barred), and the
    excluded actions (N, S): barred by the plan or known down (`known_down` (N, S) bool)."""
    cost = np.asarray(expected_cost, dtype=np.float64)
    values: npt.NDArray[np.float64] = -cost
    excluded: npt.NDArray[np.bool_] = ~np.isfinite(cost) | np.asarray(known_down, dtype=bool)
    return values, excluded
