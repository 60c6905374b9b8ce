"""Policy iteration for finite discounted MDPs: the solver of the pure core.

Conventions follow pymdptoolbox so that results can be cross-checked against it:

* ``P`` has shape ``(A, S, S)``; ``P[a, s, s']`` is the probability of moving from state ``s`` to ``s'``
  under action ``a``; every row ``P[a, s, :]`` sums to 1.
* ``R`` has shape ``(S, A)``; ``R[s, a]`` is the expected reward of taking action ``a`` in state ``s``.
* The solver maximises the expected discounted reward, with a discount ``γ`` in ``[0, 1)``.

The algorithm is Howard's policy iteration with exact evaluation, step by step:

1. initial policy: the greedy policy of the immediate reward, ``argmax_a R[s, a]``
   (pymdptoolbox applies the Bellman operator to ``V = 0``);
2. evaluation (:func:`evaluate_policy`): solve ``(I - γ P_π) v = R_π``;
3. improvement (:func:`greedy_policy` of :func:`action_values`): ``π'(s) = argmax_a R[s, a] + γ (P_a v)(s)``,
   ties going to the lowest action index (``numpy.argmax``); the improvement does *not* keep the current
   action on a tie, exactly like pymdptoolbox;
4. stop when ``π' == π`` (the returned policy is ``π`` and the values are ``v_π``) or after ``max_iter``
   evaluations (then the last *evaluated* policy is returned, not the improved one, again as pymdptoolbox).

:func:`policy_iteration_batch` solves N independent MDPs at once with stacked linear solves: it is the
solver the decision engine (live and offline) uses. :func:`policy_iteration` solves one MDP, step for step
as pymdptoolbox does: it is the reference the batched solver is tested against (same policies, problem by
problem), and the one the benchmarks compare with pymdptoolbox.
Invalid input raises :class:`edgeoff.errors.DecisionError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from edgeoff.errors import DecisionError

__all__ = [
    "BatchSolution",
    "Solution",
    "action_values",
    "evaluate_policy",
    "greedy_policy",
    "policy_iteration",
    "policy_iteration_batch",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
_Array = TypeVar("_Array", bound=NDArray[Any])


#: Largest accepted deviation of a transition row sum from 1 (rounding of normalised probabilities).
ROW_SUM_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Solution:
    """The optimal policy of one MDP and what it is worth.

    Attributes:
        policy: shape ``(S,)``, integer; the action taken in each state.
        values: shape ``(S,)``, float; the expected discounted reward of following ``policy`` from each state.
        q: shape ``(S, A)``, float; ``q[s, a] = R[s, a] + γ Σ_s' P[a, s, s'] values[s']``, the value of taking
            ``a`` in ``s`` and following ``policy`` afterwards (the ranking of fallback actions).
        iterations: number of policy evaluations performed.
    """

    policy: IntArray
    values: FloatArray
    q: FloatArray
    iterations: int


@dataclass(frozen=True)
class BatchSolution:
    """The optimal policies of N independent MDPs with the same numbers of states and actions.

    Attributes:
        policy: shape ``(N, S)``, integer.
        values: shape ``(N, S)``, float.
        q: shape ``(N, S, A)``, float.
        iterations: shape ``(N,)``, integer; policy evaluations performed for each problem (as the single
            solver would report them).
    """

    policy: IntArray
    values: FloatArray
    q: FloatArray
    iterations: IntArray


# --------------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------------


def _check_discount(discount: float) -> None:
    if not 0.0 <= discount < 1.0:  # also rejects NaN
        raise DecisionError(f"discount must be in [0, 1), got {discount!r}")


def _check_max_iter(max_iter: int) -> None:
    if max_iter < 1:
        raise DecisionError(f"max_iter must be at least 1, got {max_iter}")


def _check_probabilities(P: FloatArray) -> None:
    """Check that ``P`` (shape ``(..., S, S)``) holds non-negative rows summing to 1."""
    if not P.min() >= 0.0:  # also rejects NaN
        raise DecisionError("transition probabilities must be non-negative")
    row_sums = P.sum(axis=-1)
    if not (row_sums.max() <= 1.0 + ROW_SUM_TOLERANCE and row_sums.min() >= 1.0 - ROW_SUM_TOLERANCE):
        raise DecisionError(f"every transition row P[a, s, :] must sum to 1 (within {ROW_SUM_TOLERANCE:g})")


def _check_rewards(R: FloatArray) -> None:
    if not np.isfinite(R).all():
        raise DecisionError("rewards must be finite")


def _as_float_array(array: ArrayLike, name: str) -> FloatArray:
    try:
        return np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise DecisionError(f"{name} is not a numeric array: {error}") from error


def _validate_single(P: FloatArray, R: FloatArray, discount: float, max_iter: int) -> None:
    if P.ndim != 3 or P.shape[1] != P.shape[2] or P.shape[0] < 1 or P.shape[1] < 1:
        raise DecisionError(f"P must have shape (A, S, S) with A, S >= 1, got {P.shape}")
    n_actions, n_states, _ = P.shape
    if R.shape != (n_states, n_actions):
        raise DecisionError(f"R must have shape (S, A) = {(n_states, n_actions)}, got {R.shape}")
    _check_discount(discount)
    _check_max_iter(max_iter)
    _check_probabilities(P)
    _check_rewards(R)


def _validate_batch(P: FloatArray, R: FloatArray, discount: float, max_iter: int) -> None:
    if R.ndim != 3 or min(R.shape) < 1:
        raise DecisionError(f"R must have shape (N, S, A) with N, S, A >= 1, got {R.shape}")
    n_problems, n_states, n_actions = R.shape
    shared = (n_actions, n_states, n_states)
    if P.shape not in (shared, (n_problems, *shared)):
        raise DecisionError(f"P must have shape (A, S, S) = {shared} or (N, A, S, S), got {P.shape}")
    _check_discount(discount)
    _check_max_iter(max_iter)
    _check_probabilities(P)
    _check_rewards(R)


# --------------------------------------------------------------------------------------------------------
# The steps of the algorithm (one MDP)
# --------------------------------------------------------------------------------------------------------


def evaluate_policy(P: FloatArray, R: FloatArray, discount: float, policy: IntArray) -> FloatArray:
    """Exact value of a policy: the solution ``v`` of ``(I - γ P_π) v = R_π``.

    Args:
        P: shape ``(A, S, S)``, transition probabilities.
        R: shape ``(S, A)``, expected rewards.
        discount: ``γ`` in ``[0, 1)``.
        policy: shape ``(S,)``, integer actions.

    Returns:
        shape ``(S,)``, the expected discounted reward of following ``policy`` from each state.
    """
    states = np.arange(P.shape[1])
    system: FloatArray = np.eye(P.shape[1]) - discount * P[policy, states]
    return cast(FloatArray, np.linalg.solve(system, R[states, policy]))


def action_values(P: FloatArray, R: FloatArray, discount: float, values: FloatArray) -> FloatArray:
    """One Bellman backup: ``q[s, a] = R[s, a] + γ Σ_s' P[a, s, s'] values[s']``.

    Args:
        P: shape ``(A, S, S)``.
        R: shape ``(S, A)``.
        discount: ``γ``.
        values: shape ``(S,)``.

    Returns:
        shape ``(S, A)``.
    """
    q: FloatArray = R + discount * (P @ values).T
    return q


def greedy_policy(q: FloatArray) -> IntArray:
    """The best action of each state, ties to the lowest action index.

    Args:
        q: shape ``(..., S, A)``.

    Returns:
        shape ``(..., S)``, integer.
    """
    policy: IntArray = q.argmax(axis=-1)
    return policy


# --------------------------------------------------------------------------------------------------------
# Solvers
# --------------------------------------------------------------------------------------------------------


def policy_iteration(
    P: ArrayLike, R: ArrayLike, discount: float, *, max_iter: int = 1000, validate: bool = True
) -> Solution:
    """Solve one MDP by policy iteration; same result as ``mdptoolbox.mdp.PolicyIteration(eval_type=0)``.

    Args:
        P: shape ``(A, S, S)``, ``P[a, s, s']`` the probability of ``s -> s'`` under ``a``; rows sum to 1.
        R: shape ``(S, A)``, expected reward of taking ``a`` in ``s`` (maximised).
        discount: ``γ`` in ``[0, 1)``.
        max_iter: at most this many policy evaluations.
        validate: check shapes, probabilities, rewards and discount first (a few microseconds).

    Returns:
        The :class:`Solution`: ``policy (S,)``, ``values (S,)``, ``q (S, A)``, ``iterations``.

    Raises:
        DecisionError: the input does not describe a discounted MDP.
    """
    P = _as_float_array(P, "P")
    R = _as_float_array(R, "R")
    if validate:
        _validate_single(P, R, discount, max_iter)
    n_states = P.shape[1]
    # The hot loop below is evaluate_policy / action_values / greedy_policy with everything that does not
    # depend on the policy hoisted out of it, keeping the numpy calls per iteration to a minimum (each costs
    # about a microsecond on 5x5 arrays). The arithmetic is the same, operation by operation, so values and
    # tie-breaking are those of pymdptoolbox.
    states = np.arange(n_states)
    system_rows = np.eye(n_states) - discount * P  # (A, S, S): rows of I - γ P_a
    rewards_by_action = R.T  # (A, S)
    policy: IntArray = R.argmax(axis=1)  # greedy for V = 0: R + γ P 0 = R
    iterations = 0
    while True:
        iterations += 1
        values = cast(FloatArray, np.linalg.solve(system_rows[policy, states], R[states, policy]))
        q_by_action = P @ values  # (A, S): one (S, S) product per action, like pymdptoolbox
        q_by_action *= discount
        q_by_action += rewards_by_action
        improved: IntArray = q_by_action.argmax(axis=0)
        if improved.tobytes() == policy.tobytes() or iterations >= max_iter:
            break
        policy = improved
    q: FloatArray = q_by_action.T.copy()
    return Solution(policy=_frozen(policy), values=_frozen(values), q=_frozen(q), iterations=iterations)


def policy_iteration_batch(
    P: ArrayLike, R: ArrayLike, discount: float, *, max_iter: int = 1000, validate: bool = True
) -> BatchSolution:
    """Solve N independent MDPs by policy iteration at once; problem ``n`` gets ``policy_iteration``'s answer.

    Each round evaluates every not-yet-stable problem with one stacked ``np.linalg.solve`` and improves it;
    problems whose policy is stable drop out of later rounds.

    Args:
        P: shape ``(N, A, S, S)``, one model per problem, or ``(A, S, S)`` shared by all problems.
        R: shape ``(N, S, A)``.
        discount: ``γ`` in ``[0, 1)``, common to all problems.
        max_iter: at most this many evaluations per problem.
        validate: check shapes, probabilities, rewards and discount first (a full pass over P and R).

    Returns:
        The :class:`BatchSolution`: policy ``(N, S)``, values ``(N, S)``, q ``(N, S, A)``,
        iterations ``(N,)``.

    Raises:
        DecisionError: the input does not describe N discounted MDPs.
    """
    P = _as_float_array(P, "P")
    R = _as_float_array(R, "R")
    if validate:
        _validate_batch(P, R, discount, max_iter)
    n_problems, n_states, n_actions = R.shape
    shared = P.ndim == 3  # one model (A, S, S) for all problems
    policy: IntArray = R.argmax(axis=2)  # (N, S), greedy for V = 0
    if discount == 0.0:  # no lookahead: Q = R exactly, and the greedy policy is stable after one round
        return BatchSolution(
            policy=policy,
            values=np.take_along_axis(R, policy[:, :, None], axis=2)[:, :, 0],
            q=R.copy(),
            iterations=np.ones(n_problems, dtype=np.intp),
        )
    values = np.empty((n_problems, n_states))
    q = np.empty((n_problems, n_states, n_actions))
    iterations = np.zeros(n_problems, dtype=np.intp)

    active: IntArray = np.arange(n_problems)  # problems whose policy may still change
    for iteration in range(1, max_iter + 1):
        everyone = active.size == n_problems
        active_policy = policy if everyone else policy[active]  # (n, S)
        active_rewards = R if everyone else R[active]  # (n, S, A)
        active_P = P if shared or everyone else P[active]  # (A, S, S) or (n, A, S, S)
        active_values = _evaluate_policies(active_P, active_rewards, discount, active_policy)
        active_q = _action_values_batch(active_P, active_rewards, discount, active_values)
        improved = active_q.argmax(axis=2)  # (n, S)

        values[active] = active_values
        q[active] = active_q
        iterations[active] = iteration
        moving = (improved != active_policy).any(axis=1)  # (n,)
        active = active[moving]
        if active.size == 0 or iteration == max_iter:
            break
        policy[active] = improved[moving]
    return BatchSolution(
        policy=_frozen(policy), values=_frozen(values), q=_frozen(q), iterations=_frozen(iterations)
    )


def _evaluate_policies(P: FloatArray, R: FloatArray, discount: float, policy: IntArray) -> FloatArray:
    """:func:`evaluate_policy` for n problems with one stacked solve.

    Args:
        P: shape ``(A, S, S)`` shared, or ``(n, A, S, S)``.
        R: shape ``(n, S, A)``.
        discount: ``γ``.
        policy: shape ``(n, S)``.

    Returns:
        shape ``(n, S)``.
    """
    n_problems, n_states = policy.shape
    states = np.arange(n_states)
    shared = P.ndim == 3
    transitions = (
        P[policy, states] if shared else P[np.arange(n_problems)[:, None], policy, states]
    )  # (n, S, S)
    rewards = np.take_along_axis(R, policy[..., None], axis=2)  # (n, S, 1)
    values = np.linalg.solve(np.eye(n_states) - discount * transitions, rewards)[..., 0]
    return cast(FloatArray, values)


def _action_values_batch(P: FloatArray, R: FloatArray, discount: float, values: FloatArray) -> FloatArray:
    """:func:`action_values` for n problems.

    Args:
        P: shape ``(A, S, S)`` shared, or ``(n, A, S, S)``.
        R: shape ``(n, S, A)``.
        discount: ``γ``.
        values: shape ``(n, S)``.

    Returns:
        shape ``(n, S, A)``.
    """
    # (A, S, S) or (n, A, S, S) @ (n, 1, S, 1) -> (n, A, S) -> (n, S, A). A stacked matmul runs one
    # (S, S) matrix-vector product per problem and action, the very product pymdptoolbox and the single
    # solver compute; a single (A*S, S) @ (S, n) matrix product would be faster but rounds differently, and
    # exact ties between actions (common in structured problems) would then break differently.
    expected_next = (P @ values[:, None, :, None])[..., 0].transpose(0, 2, 1)
    q: FloatArray = R + discount * expected_next
    return q


def _frozen(array: _Array) -> _Array:
    """Mark ``array`` read-only, so that a frozen solution cannot be changed through its arrays."""
    array.flags.writeable = False
    return array
