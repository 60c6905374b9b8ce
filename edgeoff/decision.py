"""The decision engine: Algorithm 1 (build P and R, solve the MDP) and Algorithm 2 (execute with fallback).

States and actions are the scenario's sites (S of them, the phone included): the state is the site that holds
the next task's input, the action the site that runs it. With predicted availability p[a] an action succeeds
and moves to a; it fails with 1 - p[a] and falls back to the phone, which re-runs the task locally.
The reward is minus the expected weighted cost of the action:

    R[s, a] = -( p[a] c(s, a) + (1 - p[a]) (c_fail(s) + c(s, phone)) ),  c = w_t time + w_e energy

All functions take a leading batch axis N so that the live agent (N = 1) and the simulator (N = repetitions)
run the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeoff.cost import CostModel, TaskCosts
from edgeoff.errors import NoFeasibleSolutionError
from edgeoff.mdp import policy_iteration_batch
from edgeoff.scenario import Decision

__all__ = [
    "INFEASIBLE_REWARD",
    "Policy",
    "ResultDeadline",
    "build_rewards",
    "build_transitions",
    "is_feasible_value",
    "next_action",
    "next_actions",
    "solve",
]

# An action the site cannot host (memory) gets this reward: finite, so the linear solve stays exact, and far
# below any real cost (seconds and joules of one task are O(1..100)).
INFEASIBLE_REWARD = -1e9


def is_feasible_value(q: np.ndarray) -> np.ndarray:
    """Mask of action values (any shape) that belong to feasible actions: finite and far above
    INFEASIBLE_REWARD (a Q-value adds the discounted value of what follows, so it is never exactly it)."""
    out: np.ndarray = np.isfinite(q) & (q > INFEASIBLE_REWARD / 2)
    return out


@dataclass(frozen=True)
class Policy:
    """Solved MDPs: policy (N, S) action per state, q (N, S, A) action values."""

    policy: np.ndarray
    q: np.ndarray


def build_transitions(p_success: np.ndarray, fallback: int) -> np.ndarray:
    """P of shape (N, A, S, S) from availabilities p_success (N, A): success -> a, failure -> fallback."""
    p = np.asarray(p_success, dtype=float)
    n, a = p.shape
    P = np.zeros((n, a, a, a))
    actions = np.arange(a)
    P[:, actions, :, actions] = p.T[:, :, None]  # P[n, a, s, a] = p[n, a] for every s
    P[:, :, :, fallback] += (1.0 - p)[:, :, None]
    return P


def build_rewards(
    costs: TaskCosts,
    p_success: np.ndarray,
    model: CostModel,
    decision: Decision,
    feasible: np.ndarray | None = None,
) -> np.ndarray:
    """R of shape (N, S, A) from task costs (N, S, A), availabilities (N, A) and a feasibility mask (N, A)."""
    w_t, w_e = decision.time_weight_per_s, decision.energy_weight_per_j
    cost = w_t * costs.time_s + w_e * costs.energy_j  # (N, S, A)
    fail = model.failure()
    fail_cost = w_t * fail.time_s + w_e * fail.energy_j  # (1, S, 1)
    local = cost[:, :, model.mobile][:, :, None]  # (N, S, 1): re-run on the phone after a failure
    p = np.asarray(p_success, dtype=float)[:, None, :]
    R = -(p * cost + (1.0 - p) * (fail_cost + local))
    if feasible is not None:
        R = np.where(feasible[:, None, :], R, INFEASIBLE_REWARD)
    return R


def solve(
    costs: TaskCosts,
    p_success: np.ndarray,
    model: CostModel,
    decision: Decision,
    feasible: np.ndarray | None = None,
    *,
    validate: bool = True,
) -> Policy:
    """Algorithm 1 for N tasks: P from availability, R from time and energy, policy iteration.

    `validate=False` skips the solver's input checks on a hot path whose P and R are built here.
    """
    P = build_transitions(p_success, model.mobile)
    R = build_rewards(costs, p_success, model, decision, feasible)
    solution = policy_iteration_batch(P, R, decision.discount, validate=validate)
    return Policy(policy=solution.policy, q=solution.q)


def next_actions(q: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """Algorithm 2, one step for N tasks: the best action of each row of values q (N, A) (higher is better)
    not yet excluded (N, A) bool; ties go to the lowest site index; -1 where every action is excluded."""
    masked = np.where(excluded, -np.inf, q)
    best: np.ndarray = np.argmax(masked, axis=1)
    return np.where(excluded.all(axis=1), -1, best)


def next_action(q_row: np.ndarray, excluded: np.ndarray) -> int:
    """Algorithm 2, one step: :func:`next_actions` for one state's values (A,) and exclusions (A,).

    Raises NoFeasibleSolutionError when every action is excluded (Q is empty).
    """
    action = int(next_actions(np.asarray(q_row)[None, :], np.asarray(excluded)[None, :])[0])
    if action < 0:
        raise NoFeasibleSolutionError("no feasible solution: every site failed or cannot host the task")
    return action


@dataclass(frozen=True)
class ResultDeadline:
    """How long the agent waits for a remote attempt's result when no verdict comes (a failure shorter
    than the detector's delay loses the task silently): `factor` x the attempt's expected time, plus
    `margin_s` wall seconds (broker and Redis round trips)."""

    factor: float = 3.0
    margin_s: float = 0.5

    def wall_s(self, expected_s: float | np.ndarray, time_scale: float) -> float | np.ndarray:
        """Wall seconds from sending the request; `expected_s` in model seconds."""
        return self.factor * expected_s * time_scale + self.margin_s

    def model_s(self, expected_s: float | np.ndarray, time_scale: float = 1.0) -> float | np.ndarray:
        """The same deadline in model seconds."""
        return self.factor * expected_s + self.margin_s / time_scale
