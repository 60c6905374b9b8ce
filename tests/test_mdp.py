"""Tests of edgeoff.mdp: policy iteration against pymdptoolbox, the batch solver, validation."""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import numpy as np
import pytest

from edgeoff.errors import DecisionError
from edgeoff.mdp import (
    action_values,
    evaluate_policy,
    greedy_policy,
    policy_iteration,
    policy_iteration_batch,
)

from needs import missing

DISCOUNTS = (0.0, 0.5, 0.9, 0.96, 0.99)


def random_transitions(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    """Row-stochastic transition probabilities of the given shape (last two axes (S, S)), some zeros."""
    weights = rng.random(shape) * (rng.random(shape) > 0.3)
    weights[..., 0] += 1e-3  # no all-zero row
    transitions: np.ndarray[Any, Any] = weights / weights.sum(axis=-1, keepdims=True)
    return transitions


def offloading_problem(availability: np.ndarray[Any, Any], cost: np.ndarray[Any, Any]) -> tuple[Any, Any]:
    """The structure of the offloading MDP: action a succeeds with availability[a] and moves to site a;
    a failure falls back to site 0. R = -cost, shape (S, A) with S = A = number of sites."""
    sites = availability.size
    P = np.zeros((sites, sites, sites))
    for action in range(sites):
        P[action, :, action] += availability[action]
        P[action, :, 0] += 1.0 - availability[action]
    return P, -cost


@pytest.fixture(scope="module")
def mdptoolbox_mdp() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module("mdptoolbox.mdp")
        except ImportError:
            missing("pymdptoolbox is not installed (pip install -e '.[test]')")


def test_agrees_with_pymdptoolbox_on_1200_random_mdps(mdptoolbox_mdp: Any) -> None:
    rng = np.random.default_rng(20240601)
    for case in range(1200):
        n_states = int(rng.integers(2, 9))
        n_actions = int(rng.integers(2, 9))
        discount = DISCOUNTS[1 + case % (len(DISCOUNTS) - 1)]  # pymdptoolbox refuses discount 0
        P = random_transitions(rng, (n_actions, n_states, n_states))
        R = rng.normal(scale=float(rng.choice([0.1, 1.0, 100.0])), size=(n_states, n_actions))
        if case % 5 == 0:
            R = np.round(R)  # integer rewards: ties in the initial policy
        reference = mdptoolbox_mdp.PolicyIteration(P, R, discount, eval_type=0)
        reference.run()

        solution = policy_iteration(P, R, discount)

        context = f"case {case}: S={n_states} A={n_actions} discount={discount}"
        assert tuple(solution.policy.tolist()) == reference.policy, context
        np.testing.assert_allclose(solution.values, reference.V, rtol=0, atol=1e-9, err_msg=context)
        assert solution.iterations == reference.iter, context


def test_agrees_with_pymdptoolbox_on_offloading_problems_with_ties(mdptoolbox_mdp: Any) -> None:
    rng = np.random.default_rng(7)
    for case in range(200):
        availability = rng.choice([0.5, 0.9, 0.99, 1.0], size=5)
        cost = rng.choice([1.0, 2.0, 3.0], size=(5, 5))  # coarse costs: many exact ties
        P, R = offloading_problem(availability, cost)
        reference = mdptoolbox_mdp.PolicyIteration(P, R, 0.96, eval_type=0)
        reference.run()

        solution = policy_iteration(P, R, 0.96)

        assert tuple(solution.policy.tolist()) == reference.policy, f"case {case}"
        np.testing.assert_allclose(solution.values, reference.V, rtol=0, atol=1e-9)


def test_max_iter_returns_the_last_evaluated_policy_like_pymdptoolbox(mdptoolbox_mdp: Any) -> None:
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(300):
        P = random_transitions(rng, (6, 8, 8))
        R = rng.normal(size=(8, 6))
        if policy_iteration(P, R, 0.99).iterations < 3:
            continue
        reference = mdptoolbox_mdp.PolicyIteration(P, R, 0.99, max_iter=2, eval_type=0)
        reference.run()
        solution = policy_iteration(P, R, 0.99, max_iter=2)
        assert solution.iterations == reference.iter == 2
        assert tuple(solution.policy.tolist()) == reference.policy
        np.testing.assert_allclose(solution.values, reference.V, rtol=0, atol=1e-9)
        checked += 1
    assert checked > 10


def test_q_is_the_bellman_backup_of_the_final_values() -> None:
    rng = np.random.default_rng(11)
    P = random_transitions(rng, (4, 6, 6))
    R = rng.normal(size=(6, 4))

    solution = policy_iteration(P, R, 0.9)

    assert solution.q.shape == (6, 4)
    np.testing.assert_allclose(solution.q, R + 0.9 * np.einsum("ast,t->sa", P, solution.values), atol=1e-12)
    np.testing.assert_array_equal(solution.policy, solution.q.argmax(axis=1))
    np.testing.assert_allclose(solution.values, solution.q.max(axis=1), atol=1e-9)


def test_the_step_functions_compose_to_the_solver() -> None:
    rng = np.random.default_rng(12)
    P = random_transitions(rng, (3, 5, 5))
    R = rng.normal(size=(5, 3))
    solution = policy_iteration(P, R, 0.8)

    values = evaluate_policy(P, R, 0.8, solution.policy)
    q = action_values(P, R, 0.8, values)

    np.testing.assert_allclose(values, solution.values, atol=1e-12)
    np.testing.assert_allclose(q, solution.q, atol=1e-12)
    np.testing.assert_array_equal(greedy_policy(q), solution.policy)


def test_hand_checked_two_state_example() -> None:
    # State 0 "home", state 1 "away". Action 0 "stay" keeps the state; action 1 "move" switches it.
    # Staying home pays 1, staying away pays 2, moving costs 1 (reward -1). With γ = 0.5:
    #   always stay away: v1 = 2 / (1 - 0.5) = 4; from home, moving gives -1 + 0.5 * 4 = 1,
    #   staying home gives at best 1 / (1 - 0.5) = 2 > 1, so home stays: v0 = 2, policy (stay, stay).
    # With γ = 0.9: v1 = 20; moving from home gives -1 + 0.9 * 20 = 17 > 1 / 0.1 = 10: policy (move, stay),
    #   v0 = 17.
    P = np.array([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]])
    R = np.array([[1.0, -1.0], [2.0, -1.0]])

    patient = policy_iteration(P, R, 0.9)
    impatient = policy_iteration(P, R, 0.5)

    np.testing.assert_array_equal(patient.policy, [1, 0])
    np.testing.assert_allclose(patient.values, [17.0, 20.0], rtol=1e-12)
    np.testing.assert_allclose(patient.q, [[1.0 + 0.9 * 17.0, 17.0], [20.0, -1.0 + 0.9 * 17.0]], rtol=1e-12)
    np.testing.assert_array_equal(impatient.policy, [0, 0])
    np.testing.assert_allclose(impatient.values, [2.0, 4.0], rtol=1e-12)


def test_discount_zero_is_the_greedy_immediate_reward() -> None:
    rng = np.random.default_rng(5)
    P = random_transitions(rng, (3, 4, 4))
    R = rng.normal(size=(4, 3))

    solution = policy_iteration(P, R, 0.0)

    np.testing.assert_array_equal(solution.policy, R.argmax(axis=1))
    np.testing.assert_allclose(solution.values, R.max(axis=1))
    assert solution.iterations == 1


def test_solution_arrays_are_read_only() -> None:
    P = np.full((2, 3, 3), 1 / 3)
    solution = policy_iteration(P, np.zeros((3, 2)), 0.5)
    with pytest.raises(ValueError, match="read-only"):
        solution.policy[0] = 1


@pytest.mark.parametrize("shared", [True, False], ids=["shared-P", "per-problem-P"])
def test_batch_equals_the_single_solver(shared: bool) -> None:
    rng = np.random.default_rng(99)
    n_problems, n_states, n_actions = 400, 5, 4
    P = random_transitions(
        rng, (n_actions, n_states, n_states) if shared else (n_problems, n_actions, n_states, n_states)
    )
    R = rng.normal(size=(n_problems, n_states, n_actions))
    R[::7] = np.round(R[::7])  # some ties

    batch = policy_iteration_batch(P, R, 0.95)

    assert batch.policy.shape == (n_problems, n_states)
    assert batch.values.shape == (n_problems, n_states)
    assert batch.q.shape == (n_problems, n_states, n_actions)
    assert batch.iterations.shape == (n_problems,)
    assert batch.iterations.max() > 1  # some problems needed more rounds than others
    for n in range(n_problems):
        single = policy_iteration(P if shared else P[n], R[n], 0.95)
        np.testing.assert_array_equal(batch.policy[n], single.policy, err_msg=f"problem {n}")
        np.testing.assert_allclose(batch.values[n], single.values, rtol=0, atol=1e-12)
        np.testing.assert_allclose(batch.q[n], single.q, rtol=0, atol=1e-12)
        assert batch.iterations[n] == single.iterations


def test_batch_equals_the_single_solver_on_offloading_problems_with_ties() -> None:
    rng = np.random.default_rng(8)
    problems = [
        offloading_problem(rng.choice([0.5, 0.9, 1.0], size=5), rng.choice([1.0, 2.0], size=(5, 5)))
        for _ in range(200)
    ]
    P = np.stack([p for p, _ in problems])
    R = np.stack([r for _, r in problems])

    batch = policy_iteration_batch(P, R, 0.96)

    for n, (p, r) in enumerate(problems):
        np.testing.assert_array_equal(batch.policy[n], policy_iteration(p, r, 0.96).policy)


def test_batch_respects_max_iter() -> None:
    rng = np.random.default_rng(4)
    P = random_transitions(rng, (6, 8, 8))
    R = rng.normal(size=(50, 8, 6))

    batch = policy_iteration_batch(P, R, 0.99, max_iter=2)

    assert batch.iterations.max() == 2
    for n in range(50):
        single = policy_iteration(P, R[n], 0.99, max_iter=2)
        np.testing.assert_array_equal(batch.policy[n], single.policy)


def _valid() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    return np.full((2, 3, 3), 1 / 3), np.zeros((3, 2))


@pytest.mark.parametrize(
    ("P", "R", "discount", "message"),
    [
        (np.full((3, 3), 1 / 3), np.zeros((3, 2)), 0.9, "shape"),
        (np.full((2, 3, 4), 1 / 4), np.zeros((3, 2)), 0.9, "shape"),
        (_valid()[0], np.zeros((2, 3)), 0.9, "shape"),
        (_valid()[0], np.zeros(3), 0.9, "shape"),
        (np.full((2, 3, 3), 0.3), _valid()[1], 0.9, "sum to 1"),
        (np.array([[[1.5, -0.5], [0.0, 1.0]]] * 2), np.zeros((2, 2)), 0.9, "non-negative"),
        (np.full((2, 3, 3), np.nan), _valid()[1], 0.9, "non-negative"),
        (_valid()[0], np.full((3, 2), np.inf), 0.9, "finite"),
        (*_valid(), 1.0, "discount"),
        (*_valid(), -0.1, "discount"),
        (*_valid(), float("nan"), "discount"),
        ([["a"]], _valid()[1], 0.9, "numeric"),
    ],
)
def test_invalid_input_raises_decision_error(P: Any, R: Any, discount: float, message: str) -> None:
    with pytest.raises(DecisionError, match=message):
        policy_iteration(P, R, discount)


def test_invalid_max_iter_raises_decision_error() -> None:
    with pytest.raises(DecisionError, match="max_iter"):
        policy_iteration(*_valid(), 0.9, max_iter=0)


@pytest.mark.parametrize(
    ("P", "R", "discount", "message"),
    [
        (np.full((2, 3, 3), 1 / 3), np.zeros((3, 2)), 0.9, "R must have shape"),
        (np.full((2, 3, 3), 1 / 3), np.zeros((4, 3, 3)), 0.9, "P must have shape"),
        (np.full((5, 2, 3, 3), 1 / 3), np.zeros((4, 3, 2)), 0.9, "P must have shape"),
        (np.full((2, 3, 3), 0.5), np.zeros((4, 3, 2)), 0.9, "sum to 1"),
        (np.full((2, 3, 3), 1 / 3), np.zeros((4, 3, 2)), 1.0, "discount"),
    ],
)
def test_invalid_batch_raises_decision_error(P: Any, R: Any, discount: float, message: str) -> None:
    with pytest.raises(DecisionError, match=message):
        policy_iteration_batch(P, R, discount)
