"""The two-state chain's closed form against the matrix exponential of its generator, and its samplers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm

from edgeoff.chain import p_up_after, sample_sojourn, sample_state_after, stays_up, steady_state


@pytest.mark.parametrize(("mean_up", "mean_down"), [(100.0, 5.0), (3.0, 3.0), (2000.0, 250.0)])
@pytest.mark.parametrize("dt", [0.0, 0.01, 1.0, 7.5, 1e4])
def test_transition_equals_the_matrix_exponential_of_the_generator(
    mean_up: float, mean_down: float, dt: float
) -> None:
    lam, mu = 1.0 / mean_up, 1.0 / mean_down
    generator = np.array([[-lam, lam], [mu, -mu]])  # states: 0 up, 1 down
    transition = expm(generator * dt)
    assert p_up_after(True, dt, mean_up, mean_down) == pytest.approx(transition[0, 0], abs=1e-12)
    assert p_up_after(False, dt, mean_up, mean_down) == pytest.approx(transition[1, 0], abs=1e-12)
    # a belief (probability of being up) is carried forward linearly
    assert p_up_after(0.3, dt, mean_up, mean_down) == pytest.approx(
        0.3 * transition[0, 0] + 0.7 * transition[1, 0], abs=1e-12
    )


def test_long_run_is_the_steady_state_and_instant_repair_is_always_up() -> None:
    assert p_up_after(False, 1e9, 10.0, 2.0) == pytest.approx(steady_state(10.0, 2.0))
    assert steady_state(10.0, 2.0) == pytest.approx(10.0 / 12.0)
    np.testing.assert_allclose(p_up_after(np.array([True, False]), 0.5, 10.0, 0.0), [1.0, 1.0])


def test_vectorised_over_sites_and_repetitions() -> None:
    up_now = np.array([[True, False, True], [False, False, True]])  # (R, S)
    mean_up, mean_down = np.array([10.0, 20.0, 30.0]), np.array([1.0, 2.0, 0.0])
    dt = np.array([[0.5], [2.0]])  # one elapsed time per repetition
    got = p_up_after(up_now, dt, mean_up, mean_down)
    for r in range(2):
        for s in range(3):
            assert got[r, s] == pytest.approx(p_up_after(up_now[r, s], dt[r, 0], mean_up[s], mean_down[s]))


def test_samplers_follow_the_chain() -> None:
    rng = np.random.default_rng(7)
    n = 200_000
    up = sample_state_after(np.ones(n, bool), 3.0, 10.0, 2.0, rng.random(n))
    assert up.mean() == pytest.approx(p_up_after(True, 3.0, 10.0, 2.0), abs=0.005)
    sojourn = sample_sojourn(np.ones(n, bool), 10.0, 2.0, rng.random(n))
    assert sojourn.mean() == pytest.approx(10.0, rel=0.02)
    assert (sojourn > 4.0).mean() == pytest.approx(stays_up(4.0, 10.0), abs=0.005)
    down_sojourn = sample_sojourn(np.zeros(n, bool), 10.0, 2.0, rng.random(n))
    assert down_sojourn.mean() == pytest.approx(2.0, rel=0.02)


def test_edge_cases_are_finite() -> None:
    # no time elapsed: the state is what it was, also with an instant repair or a site that never fails
    np.testing.assert_allclose(p_up_after(np.array([True, False]), 0.0, 10.0, 0.0), [1.0, 0.0])
    np.testing.assert_allclose(p_up_after(np.array([True, False]), 0.0, np.inf, 2.0), [1.0, 0.0])
    # a site that never fails is always up in the long run, and stays up
    assert steady_state(np.inf, 2.0) == 1.0
    assert p_up_after(True, 5.0, np.inf, 2.0) == pytest.approx(1.0)
    assert p_up_after(False, 1e9, np.inf, 2.0) == pytest.approx(1.0)
    assert stays_up(5.0, np.inf) == 1.0
