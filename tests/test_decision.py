"""Algorithm 1 (P and R from availability and costs, policy iteration) and Algorithm 2 (fallback)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeoff.cost import CostModel
from edgeoff.decision import build_rewards, build_transitions, next_action, solve
from edgeoff.errors import NoFeasibleSolutionError
from edgeoff.mdp import policy_iteration
from edgeoff.scenario import default_scenario

MD, ED, EC, ER, CD = range(5)
SCENARIO = default_scenario()
MODEL = CostModel.from_scenario(SCENARIO)


def _task(mi: float = 600.0, kb: float = 6.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.array([mi]), np.array([kb]), np.array([kb])


def test_transitions_success_to_action_failure_to_phone() -> None:
    p = np.array([[1.0, 0.9, 0.5, 0.99, 0.0]])
    P = build_transitions(p, MD)
    assert P.shape == (1, 5, 5, 5)
    np.testing.assert_allclose(P.sum(axis=3), 1.0)
    assert P[0, EC, ER, EC] == 0.5
    assert P[0, EC, ER, MD] == 0.5
    assert P[0, CD, ED, MD] == 1.0


def test_rewards_are_minus_expected_cost() -> None:
    costs = MODEL.tasks(*_task())
    sure = build_rewards(costs, np.ones((1, 5)), MODEL, SCENARIO.decision)
    np.testing.assert_allclose(sure, -(costs.time_s + costs.energy_j))
    risky = build_rewards(costs, np.array([[1.0, 1.0, 0.5, 1.0, 1.0]]), MODEL, SCENARIO.decision)
    assert risky[0, MD, EC] < sure[0, MD, EC]  # a likely failure costs detection plus local re-execution


def test_compute_heavy_task_goes_to_the_fast_edge_when_it_is_available() -> None:
    costs = MODEL.tasks(*_task(600.0, 6.0))
    up = solve(costs, np.ones((1, 5)), MODEL, SCENARIO.decision)
    assert up.policy[0, MD] != MD
    flaky = np.ones((1, 5))
    flaky[0, up.policy[0, MD]] = 0.2
    down = solve(costs, flaky, MODEL, SCENARIO.decision)
    assert down.policy[0, MD] != up.policy[0, MD]  # the forecast moved the decision


def test_batched_solve_equals_the_single_solver() -> None:
    rng = np.random.default_rng(3)
    costs = MODEL.tasks(rng.uniform(100, 650, 20), rng.uniform(4, 120, 20), rng.uniform(4, 80, 20))
    p = rng.uniform(0.5, 1.0, (20, 5))
    p[:, MD] = 1.0
    batch = solve(costs, p, MODEL, SCENARIO.decision)
    for n in range(20):
        P = build_transitions(p[n : n + 1], MD)[0]
        R = build_rewards(
            type(costs)(costs.time_s[n : n + 1], costs.energy_j[n : n + 1]),
            p[n : n + 1],
            MODEL,
            SCENARIO.decision,
        )[0]
        single = policy_iteration(P, R, SCENARIO.decision.discount)
        np.testing.assert_array_equal(batch.policy[n], single.policy)
        np.testing.assert_allclose(batch.q[n], single.q, rtol=1e-12)


def test_infeasible_sites_are_never_chosen() -> None:
    costs = MODEL.tasks(*_task())
    feasible = np.array([[True, False, False, False, True]])
    policy = solve(costs, np.ones((1, 5)), MODEL, SCENARIO.decision, feasible).policy
    assert set(policy[0].tolist()) <= {MD, CD}


def test_next_best_action_and_no_feasible_solution() -> None:
    q = np.array([-3.0, -1.0, -2.0, -5.0, -4.0])
    excluded = np.zeros(5, dtype=bool)
    order = []
    while True:
        try:
            a = next_action(q, excluded)
        except NoFeasibleSolutionError:
            break
        order.append(a)
        excluded[a] = True
    assert order == [1, 2, 0, 4, 3]
    with pytest.raises(NoFeasibleSolutionError, match="no feasible solution"):
        next_action(q, np.ones(5, dtype=bool))
