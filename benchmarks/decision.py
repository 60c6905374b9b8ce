"""Benchmark of the decision engine's MDP solver against pymdptoolbox.

Run as ``python benchmarks/decision.py``. The problem has the structure of the offloading MDP with five
sites (MD, ED, EC, ER, CD): choosing site ``a`` succeeds with the predicted availability of ``a`` and moves to
``a``; a failure falls back to the mobile device (site 0). Rewards are negative costs (response time and
energy, including moving the task's data from the site that ran the previous task).

The single solver and ``mdptoolbox.mdp.PolicyIteration(..., eval_type=0).run()`` are timed in alternating
blocks in the same run; the batch solver is timed on 100,000 problems. The last line printed is a JSON object
with the medians.
"""

from __future__ import annotations

import json
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from edgeoff.mdp import policy_iteration, policy_iteration_batch

SITES = ("MD", "ED", "EC", "ER", "CD")
DISCOUNT = 0.96  # the prototype's discount (PARAMETERS.md)
SEED = 20240601
BLOCKS = 40  # alternating timing blocks per solver
REPETITIONS_PER_BLOCK = 50  # 40 x 50 = 2000 timed solves per solver
BATCH_PROBLEMS = 100_000
BATCH_RUNS = 3


def offloading_model(
    availability: np.ndarray[Any, Any], cost: np.ndarray[Any, Any]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """P (..., A, S, S) and R (..., S, A) from availabilities (..., A) and costs (..., S, A).

    S = A = the number of sites."""
    sites = availability.shape[-1]
    P = np.zeros((*availability.shape[:-1], sites, sites, sites))
    for action in range(sites):
        P[..., action, :, action] += availability[..., action, None]
        P[..., action, :, 0] += 1.0 - availability[..., action, None]
    return P, -cost


def random_costs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    """Costs (..., S, A): running on a site (response time and energy) plus moving data between sites."""
    sites = len(SITES)
    run_cost = np.array([3.0, 1.0, 1.2, 1.5, 2.0]) * rng.uniform(0.7, 1.3, (*shape, 1, sites))
    transfer_cost = rng.uniform(0.0, 1.0, (*shape, sites, sites))
    transfer_cost[..., np.arange(sites), np.arange(sites)] = 0.0
    cost: np.ndarray[Any, Any] = run_cost + transfer_cost
    return cost


def random_availability(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    """Predicted availabilities (..., A): the mobile device is always available, the others mostly."""
    availability = rng.uniform(0.6, 0.999, (*shape, len(SITES)))
    availability[..., 0] = 1.0
    return availability


def time_alternating(solvers: dict[str, Callable[[], object]]) -> dict[str, list[int]]:
    """Per-call wall times in ns of each solver, timed in alternating blocks so that drift hits all alike."""
    timings: dict[str, list[int]] = {name: [] for name in solvers}
    for solve in solvers.values():  # warm up caches and lazy imports
        for _ in range(20):
            solve()
    for _ in range(BLOCKS):
        for name, solve in solvers.items():
            record = timings[name]
            for _ in range(REPETITIONS_PER_BLOCK):
                start = time.perf_counter_ns()
                solve()
                record.append(time.perf_counter_ns() - start)
    return timings


def main() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mdptoolbox.mdp  # the reference implementation, imported only when run

    rng = np.random.default_rng(SEED)
    P, R = offloading_model(random_availability(rng, ()), random_costs(rng, ()))

    ours = policy_iteration(P, R, DISCOUNT)
    reference = mdptoolbox.mdp.PolicyIteration(P, R, DISCOUNT, eval_type=0)
    reference.run()
    same_policy = tuple(ours.policy.tolist()) == reference.policy
    max_value_gap = float(np.abs(ours.values - np.asarray(reference.V)).max())

    def solve_ours() -> object:
        return policy_iteration(P, R, DISCOUNT)

    def solve_reference() -> object:
        solver = mdptoolbox.mdp.PolicyIteration(P, R, DISCOUNT, eval_type=0)
        solver.run()
        return solver

    timings = time_alternating({"pia": solve_ours, "pymdptoolbox": solve_reference})
    pia_us = statistics.median(timings["pia"]) / 1e3
    reference_us = statistics.median(timings["pymdptoolbox"]) / 1e3

    # Batch: per-problem availabilities and costs (the simulator's case), and one shared model.
    batch_P, batch_R = offloading_model(
        random_availability(rng, (BATCH_PROBLEMS,)), random_costs(rng, (BATCH_PROBLEMS,))
    )
    batch_times = []
    for _ in range(BATCH_RUNS):
        start = time.perf_counter_ns()
        batch = policy_iteration_batch(batch_P, batch_R, DISCOUNT)
        batch_times.append(time.perf_counter_ns() - start)
    batch_us = statistics.median(batch_times) / 1e3 / BATCH_PROBLEMS
    shared_times = []
    for _ in range(BATCH_RUNS):
        start = time.perf_counter_ns()
        policy_iteration_batch(P, batch_R, DISCOUNT)
        shared_times.append(time.perf_counter_ns() - start)
    shared_us = statistics.median(shared_times) / 1e3 / BATCH_PROBLEMS
    checked = range(0, BATCH_PROBLEMS, BATCH_PROBLEMS // 1000)
    batch_agrees = all(
        np.array_equal(batch.policy[n], policy_iteration(batch_P[n], batch_R[n], DISCOUNT).policy)
        for n in checked
    )

    policy_names = ", ".join(f"{SITES[s]}->{SITES[a]}" for s, a in enumerate(ours.policy))
    print(f"5-site offloading MDP, discount {DISCOUNT}, seed {SEED}")
    print(f"  optimal policy: {policy_names}  ({ours.iterations} policy evaluations)")
    print(f"  same policy as pymdptoolbox: {same_policy}; largest value difference {max_value_gap:.2e}")
    solves = len(timings["pia"])
    print(f"  policy_iteration:             median {pia_us:8.1f} us over {solves} solves")
    print(f"  pymdptoolbox PolicyIteration: median {reference_us:8.1f} us over {solves} solves")
    print(f"  speed-up: {reference_us / pia_us:.1f}x")
    print(
        f"  policy_iteration_batch, N={BATCH_PROBLEMS:,}: {batch_us:.2f} us per problem (per-problem P), "
        f"{shared_us:.2f} us per problem (shared P); evaluations per problem {np.bincount(batch.iterations)}"
    )
    print(f"  batch agrees with the single solver on {len(checked)} sampled problems: {batch_agrees}")
    print(
        json.dumps(
            {
                "pia_median_us": round(pia_us, 2),
                "pymdptoolbox_median_us": round(reference_us, 2),
                "ratio": round(reference_us / pia_us, 2),
                "batch_us_per_problem": round(batch_us, 3),
                "batch_shared_p_us_per_problem": round(shared_us, 3),
                "same_policy": same_policy and batch_agrees,
            }
        )
    )


if __name__ == "__main__":
    main()
