"""Benchmark of the decision engine's MDP solver against pymdptoolbox, and of the DAG-aware planner.

Run as ``python benchmarks/decision.py``. The problem has the structure of the offloading MDP with five
sites (MD, ED, EC, ER, CD): choosing site ``a`` succeeds with the predicted availability of ``a`` and moves to
``a``; a failure falls back to the mobile device (site 0). Rewards are negative costs (response time and
energy, including moving the task's data from the site that ran the previous task).

The single solver and ``mdptoolbox.mdp.PolicyIteration(..., eval_type=0).run()`` are timed in alternating
blocks in the same run; the batch solver is timed on 100,000 problems.

The DAG-aware engine (``edgeoff.dag.plan_application``) plans a whole application once: its decision time
per application is timed for each of the paper's five applications (the default scenario's costs, sampled
task sizes, availabilities in [0.9, 1)), alternating with the per-task engine's decisions for the same
application (one batched ``edgeoff.decision.solve`` of its offloadable tasks, as the simulator does), and
batched over 100 applications of one shape (the simulator's lockstep). The target is 2 ms per application.
The last line printed is a JSON object with the medians.
"""

from __future__ import annotations

import json
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeoff.cost import CostModel, TaskCosts
from edgeoff.dag import plan_application
from edgeoff.decision import solve as solve_tasks
from edgeoff.mdp import policy_iteration, policy_iteration_batch
from edgeoff.scenario import App, Scenario, default_scenario

SITES = ("MD", "ED", "EC", "ER", "CD")
DISCOUNT = 0.96  # the prototype's discount (PARAMETERS.md)
SEED = 20240601
BLOCKS = 40  # alternating timing blocks per solver
REPETITIONS_PER_BLOCK = 50  # 40 x 50 = 2000 timed solves per solver
BATCH_PROBLEMS = 100_000
BATCH_RUNS = 3
DAG_TARGET_MS = 2.0  # issue 9: decision time per application
DAG_BATCH = 100  # applications of one shape planned together (the simulator's repetitions)


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


@dataclass(frozen=True)
class AppProblem:
    """One application of the scenario with sampled task sizes: what either engine decides on."""

    app: App
    costs: TaskCosts  # (T, S, S)
    availability: np.ndarray[Any, Any]  # (T, S)
    feasible: np.ndarray[Any, Any]  # (T, S)


def app_problem(scenario: Scenario, model: CostModel, app: App, rng: np.random.Generator) -> AppProblem:
    classes = [scenario.task_classes[task.class_] for task in app.tasks]
    mi, input_kb, output_kb = (
        np.array([rng.uniform(*getattr(c, name)) for c in classes])
        for name in ("mi", "input_kb", "output_kb")
    )
    sites = np.arange(model.n_sites)
    memory = np.array([task.memory_gb for task in app.tasks])
    offloadable = np.array([task.offloadable for task in app.tasks])
    feasible = (scenario.memory_gb[None, :] >= memory[:, None]) & (
        offloadable[:, None] | (sites == model.mobile)[None, :]
    )
    availability = rng.uniform(0.9, 1.0, (len(app.tasks), model.n_sites))
    return AppProblem(app, model.tasks(mi, input_kb, output_kb), availability, feasible)


def dag_figures(rng: np.random.Generator) -> dict[str, Any]:
    """Decision time per application of the DAG planner and of the per-task engine, per paper application."""
    scenario = default_scenario()
    model = CostModel.from_scenario(scenario)
    decision = scenario.decision
    per_app: dict[str, Any] = {}
    for app in scenario.apps:
        problem = app_problem(scenario, model, app, rng)
        rows = np.flatnonzero(np.array([task.offloadable for task in app.tasks]))

        def plan(problem: AppProblem = problem) -> object:
            return plan_application(
                problem.app.sources, problem.costs, problem.availability, problem.feasible, model, decision
            )

        def per_task(problem: AppProblem = problem, rows: np.ndarray[Any, Any] = rows) -> object:
            costs = TaskCosts(problem.costs.time_s[rows], problem.costs.energy_j[rows])
            p, ok = problem.availability[rows], problem.feasible[rows]
            return solve_tasks(costs, p, model, decision, ok, validate=False)

        timings = time_alternating({"dag": plan, "per-task": per_task})
        batch = [app_problem(scenario, model, app, rng) for _ in range(DAG_BATCH)]
        costs = TaskCosts(
            np.stack([b.costs.time_s for b in batch]), np.stack([b.costs.energy_j for b in batch])
        )
        availability = np.stack([b.availability for b in batch])
        feasible = np.stack([b.feasible for b in batch])
        batch_times = []
        for _ in range(BATCH_RUNS):
            start = time.perf_counter_ns()
            plan_application(app.sources, costs, availability, feasible, model, decision)
            batch_times.append(time.perf_counter_ns() - start)
        per_app[app.name] = {
            "tasks": len(app.tasks),
            "dag_median_ms": round(statistics.median(timings["dag"]) / 1e6, 4),
            "dag_p99_ms": round(float(np.percentile(timings["dag"], 99)) / 1e6, 4),
            "per_task_median_ms": round(statistics.median(timings["per-task"]) / 1e6, 4),
            "dag_batched_ms_per_app": round(statistics.median(batch_times) / 1e6 / DAG_BATCH, 4),
        }
    return per_app


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

    dag = dag_figures(rng)
    dag_worst_ms = max(figures["dag_median_ms"] for figures in dag.values())

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
    print(f"DAG-aware planner, the paper's applications (target {DAG_TARGET_MS} ms per application):")
    for name, figures in dag.items():
        print(
            f"  {name:15s} {figures['tasks']} tasks: plan median {figures['dag_median_ms']:.3f} ms"
            f" (p99 {figures['dag_p99_ms']:.3f}), per-task MDPs {figures['per_task_median_ms']:.3f} ms,"
            f" batched x{DAG_BATCH}: {figures['dag_batched_ms_per_app']:.4f} ms per application"
        )
    print(
        json.dumps(
            {
                "pia_median_us": round(pia_us, 2),
                "pymdptoolbox_median_us": round(reference_us, 2),
                "ratio": round(reference_us / pia_us, 2),
                "batch_us_per_problem": round(batch_us, 3),
                "batch_shared_p_us_per_problem": round(shared_us, 3),
                "same_policy": same_policy and batch_agrees,
                "dag_ms_per_app": {name: figures["dag_median_ms"] for name, figures in dag.items()},
                "dag_worst_app_median_ms": dag_worst_ms,
                "dag_within_target": dag_worst_ms <= DAG_TARGET_MS,
                "per_task_ms_per_app": {name: figures["per_task_median_ms"] for name, figures in dag.items()},
                "dag_batched_ms_per_app": {
                    name: figures["dag_batched_ms_per_app"] for name, figures in dag.items()
                },
            }
        )
    )


if __name__ == "__main__":
    main()
