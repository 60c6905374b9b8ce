"""Backward induction over an application's tasks: the expected cost of every state and action, and the
fallback chains Algorithm 2 executes.

The finite-horizon MDP (states: :mod:`edgeoff.dag.structure`). Before task t the agent is in a state
(placement F, known-down mask K); it tries a site a that is feasible for the task and not in K:

* with probability ``p[t, a]`` (the site stays up for the task) it pays ``c_t(s, a)`` and moves on to task
  t + 1 in (F', K), F' the placement with task t on a;
* otherwise it pays the failed attempt ``c_fail(s)`` (the wait for the detector's verdict) and stays at task
  t, now knowing a is down: (F, K | a). That is Algorithm 2: the next action after a failure is the policy's
  action in the new state, and the phone (which never fails) ends every chain.

``s`` is the site holding the task's input in F, ``c = w_t · time + w_e · energy`` with the decision's
weights, the task costs of :meth:`edgeoff.cost.CostModel.tasks` and the failure cost of
:meth:`edgeoff.cost.CostModel.failure` (the per-task MDP's ingredients,
:func:`edgeoff.decision.build_rewards`).
The horizon is the application: the objective is the expected total cost, undiscounted, solved exactly
by backward induction from the last task, once per application (per-site availabilities fixed at planning
time, as for the per-task MDP). An action's expected cost ``Q[t][n, F, K, a]`` is +inf where it cannot be
taken. A state with no action left (no feasible solution: every site that could host the task is known
down) ends the application at the cost :data:`NO_SOLUTION_COST`, finite and far above any real cost (as
:data:`edgeoff.decision.INFEASIBLE_REWARD` in the per-task MDP), so that earlier tasks still rank their
actions, avoiding dead ends.

This module is pure: numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from edgeoff.cost import CostModel, TaskCosts
from edgeoff.dag.structure import DagStructure, IntArray
from edgeoff.decision import INFEASIBLE_REWARD
from edgeoff.errors import DecisionError
from edgeoff.scenario import Decision

__all__ = ["NO_SOLUTION_COST", "ApplicationPlan", "plan_application"]

NO_SOLUTION_COST = -INFEASIBLE_REWARD
"""Cost of reaching a task with no site left to try: the application cannot complete."""

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class ApplicationPlan:
    """The solved MDP of N applications of one shape.

    Attributes:
        structure: the state tables.
        q: per task t, the expected cost to the end of the application of trying each site, shape
            (N, F_t, M, S) (M knowledge masks); +inf where the site cannot be tried.
        value: per task t, the expected cost to the end of the best action, shape (N, F_t, M); value[T] = 0.
    """

    structure: DagStructure
    q: tuple[FloatArray, ...]
    value: tuple[FloatArray, ...]

    @property
    def expected_cost(self) -> FloatArray:
        """Expected weighted cost of each whole application from its start with nothing known down, (N,)."""
        out: FloatArray = self.value[0][:, 0, 0].copy()
        return out

    def action_values(self, t: int, placement: npt.ArrayLike, mask: npt.ArrayLike) -> FloatArray:
        """Expected costs (N, S) of each action of task t in the states (placement (N,), mask (N,))."""
        n = np.arange(self.q[t].shape[0])
        out: FloatArray = self.q[t][n, np.asarray(placement), np.asarray(mask)]
        return out

    def actions(self, t: int, placement: npt.ArrayLike, mask: npt.ArrayLike) -> IntArray:
        """The policy's action (N,) for task t in the given states; -1 where none is left. Ties go to the
        lowest site index."""
        q = self.action_values(t, placement, mask)
        best = np.argmin(q, axis=1).astype(np.int64)
        out: IntArray = np.where(np.isfinite(q).any(axis=1), best, -1)
        return out

    def after_failure(self, mask: npt.ArrayLike, failed: npt.ArrayLike) -> IntArray:
        """Knowledge masks (N,) once site ``failed`` (N,) is known down too."""
        out: IntArray = np.asarray(mask, dtype=np.int64) | self.structure.site_bit[np.asarray(failed)]
        return out

    def fallback_chain(self, t: int, placement: int, mask: int, row: int = 0) -> tuple[int, ...]:
        """The sites task t tries in turn, each after the previous failed (Algorithm 2 driven by the plan),
        for application ``row``: ends with a site that never fails (the phone), or where nothing is left."""
        chain: list[int] = []
        while True:
            q = self.q[t][row, placement, mask]
            action = int(np.argmin(q)) if np.isfinite(q).any() else -1
            if action < 0:
                return tuple(chain)
            chain.append(action)
            if action == self.structure.mobile:
                return tuple(chain)
            mask |= int(self.structure.site_bit[action])


def plan_application(
    sources: Sequence[int],
    costs: TaskCosts,
    availability: npt.ArrayLike,
    feasible: npt.ArrayLike,
    model: CostModel,
    decision: Decision,
) -> ApplicationPlan:
    """Solve the MDP of N applications of one shape (same ``sources``) by backward induction.

    Args:
        sources: per task, the earlier task whose site holds its input, -1 for the phone (``App.sources``),
            tasks in topological order, shape (T,).
        costs: expected time (s) and phone energy (J) of each task on every (input site, action) pair,
            shape (N, T, S, S) (or (T, S, S) for N = 1), from :meth:`edgeoff.cost.CostModel.tasks`.
        availability: probability that each site stays up for each task, shape (N, T, S), (N, 1, S) (one
            vector per application), (T, S) or (S,); the phone's is taken as 1 whatever it says.
        feasible: the sites that can host each task (memory, the phone only for a task that cannot be
            offloaded), bool, shape (N, T, S) or (T, S).
        model: the cost model (failure cost, the phone's index).
        decision: the weights of time and energy.

    Returns:
        The :class:`ApplicationPlan`.

    Raises:
        DecisionError: inconsistent shapes, probabilities outside [0, 1], or a malformed application.
    """
    S, m = model.n_sites, model.mobile
    structure = DagStructure.of(sources, S, m)
    T = structure.n_tasks
    time, energy = np.asarray(costs.time_s, dtype=np.float64), np.asarray(costs.energy_j, dtype=np.float64)
    if time.ndim == 3:
        time, energy = time[None], energy[None]
    if time.shape[1:] != (T, S, S) or energy.shape != time.shape:
        raise DecisionError(f"costs must have shape (N, {T}, {S}, {S}), got {time.shape} and {energy.shape}")
    N = time.shape[0]
    p: FloatArray = _per_task(availability, (N, T, S), "availability", np.float64)
    if not (np.all(p >= 0.0) and np.all(p <= 1.0)):
        raise DecisionError("availabilities must lie in [0, 1]")
    p[:, :, m] = 1.0  # the phone never fails
    ok = _per_task(feasible, (N, T, S), "feasible", np.bool_)

    cost = decision.time_weight_per_s * time + decision.energy_weight_per_j * energy  # (N, T, S, S)
    fail = model.failure()
    fail_weighted = decision.time_weight_per_s * fail.time_s + decision.energy_weight_per_j * fail.energy_j
    fail_cost = fail_weighted[0, :, 0]  # (S,): by the site holding the input
    tables = _mask_tables(S, m)
    M = tables.known.shape[0]

    values: list[FloatArray] = [np.zeros((N, 1, M))]
    qs: list[FloatArray] = []
    for t in range(T - 1, -1, -1):
        states = structure.tasks[t]
        s_in = states.input_site  # (F,)
        # success: the task's cost from its input site, then the next task from (F', K)
        run = cost[:, t][:, s_in, :]  # (N, F, S)
        later = values[0][:, states.next_placement, :]  # (N, F, S, M)
        success = run[:, :, None, :] + np.moveaxis(later, 3, 2)  # (N, F, M, S), finite
        barred = np.where(ok[:, t][:, None, None, :] & ~tables.known[None, None], 0.0, np.inf)  # (N, 1, M, S)
        p_t = p[:, t][:, None, None, :]  # (N, 1, 1, S)
        if np.all((p_t == 1.0) | np.isinf(barred[:, :, :1])):  # no allowed site can fail: K stays as it is
            q = success + barred
        else:
            q = _with_failures(success, barred, p_t, fail_cost[s_in], tables)
        best = q.min(axis=3)
        values.insert(0, np.where(np.isinf(best), NO_SOLUTION_COST, best))
        qs.insert(0, q)
    for array in (*values, *qs):
        array.setflags(write=False)
    return ApplicationPlan(structure=structure, q=tuple(qs), value=tuple(values))


def _with_failures(
    success: FloatArray, barred: FloatArray, p: FloatArray, fail_cost: FloatArray, tables: _MaskTables
) -> FloatArray:
    """Q (N, F, M, S) of one task whose sites may fail: masks with more known-down sites first, since a
    failure of a leads from K to K | a. Every term is finite (a barred action adds +inf at the end), so
    ``0 · x`` never meets an infinity."""
    q = np.empty(success.shape)
    value = np.zeros(success.shape[:3])  # (N, F, M); read only at masks already solved
    fail = fail_cost[None, :, None, None]  # (1, F, 1, 1)
    for level, retry in zip(tables.levels, tables.retry, strict=True):
        after_failure = value[:, :, retry] + fail  # (N, F, L, S)
        q_level = p * success[:, :, level] + (1.0 - p) * after_failure + barred[:, :, level]
        q[:, :, level] = q_level
        best = q_level.min(axis=3)
        value[:, :, level] = np.where(np.isinf(best), NO_SOLUTION_COST, best)
    return q


@dataclass(frozen=True)
class _MaskTables:
    """Knowledge masks of S sites: ``known`` (M, S) site a in mask K; ``levels`` the masks by how many sites
    they hold, most first; ``retry[i]`` (L_i, S) the mask after a failure of each site (the same mask for the
    phone and for a site already in it, whose actions are barred or cannot fail)."""

    known: npt.NDArray[np.bool_]
    levels: tuple[IntArray, ...]
    retry: tuple[IntArray, ...]


@lru_cache(maxsize=16)
def _mask_tables(n_sites: int, mobile: int) -> _MaskTables:
    bits = DagStructure.of((-1,), n_sites, mobile).site_bit
    masks = np.arange(1 << (n_sites - 1), dtype=np.int64)
    known = (masks[:, None] & bits[None, :]) != 0
    counts = np.array([bin(int(mask)).count("1") for mask in masks])
    levels = tuple(masks[counts == c] for c in range(int(counts.max()), -1, -1))
    return _MaskTables(
        known=known, levels=levels, retry=tuple(level[:, None] | bits[None, :] for level in levels)
    )


def _per_task(values: npt.ArrayLike, shape: tuple[int, int, int], what: str, dtype: type) -> np.ndarray:
    """A fresh copy of ``values`` broadcast to ``shape`` (N, T, S)."""
    array: np.ndarray = np.asarray(values, dtype=dtype)
    try:
        out: np.ndarray = np.array(np.broadcast_to(array, shape))
    except ValueError:
        raise DecisionError(f"{what} must broadcast to {shape}, got shape {array.shape}") from None
    return out
