"""The DAG-aware MDP against brute force: every placement, every outcome of every attempt."""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np
import pytest

from edgeoff.cost import CostModel, TaskCosts
from edgeoff.dag import DagStructure, plan_application
from edgeoff.dag.plan import NO_SOLUTION_COST
from edgeoff.engines import DAG_SOURCES, ENGINES, get_engine
from edgeoff.errors import DecisionError, EvaluationError
from edgeoff.scenario import Decision, default_scenario

DECISION = Decision(discount=0.0, time_weight_per_s=1.0, energy_weight_per_j=0.7)


def cost_model(n_sites: int, mobile: int, rng: np.random.Generator) -> CostModel:
    """A cost model of `n_sites` sites; the planner reads only its failure cost and the phone's index."""
    return CostModel(
        mips=np.full(n_sites, 1000.0),
        bandwidth_kbps=np.full((n_sites, n_sites), 1000.0),
        latency_s=np.zeros((n_sites, n_sites)),
        upload_power_w=np.ones((n_sites, n_sites)),
        execute_power_w=np.ones(n_sites),
        download_power_w=1.0,
        detection_s=float(rng.uniform(0.2, 2.0)),
        failure_power_w=rng.uniform(0.3, 1.3, n_sites),
        mobile=mobile,
    )


@dataclass(frozen=True)
class Instance:
    sources: tuple[int, ...]
    costs: TaskCosts  # (N, T, S, S)
    p: np.ndarray  # (N, T, S)
    feasible: np.ndarray  # (N, T, S)
    model: CostModel

    @property
    def weighted(self) -> np.ndarray:
        """c = w_t time + w_e energy, (N, T, S, S), computed here independently of the planner."""
        return (
            DECISION.time_weight_per_s * self.costs.time_s
            + DECISION.energy_weight_per_j * self.costs.energy_j
        )

    @property
    def fail_cost(self) -> np.ndarray:
        """The weighted cost of a failed attempt by the input's site, (S,)."""
        seconds = self.model.detection_s
        return DECISION.time_weight_per_s * seconds + DECISION.energy_weight_per_j * (
            seconds * self.model.failure_power_w
        )


def random_instance(rng: np.random.Generator, tasks: int, sites: int, reps: int = 1) -> Instance:
    mobile = int(rng.integers(sites))
    sources = tuple(int(rng.integers(-1, t)) if t else -1 for t in range(tasks))
    time = rng.uniform(0.05, 3.0, (reps, tasks, sites, sites))
    energy = rng.uniform(0.0, 2.0, (reps, tasks, sites, sites))
    p = rng.choice([0.0, 0.3, 0.7, 0.95, 1.0], size=(reps, tasks, sites)) * rng.uniform(
        0.9, 1.0, (reps, 1, 1)
    )
    p = np.where(rng.random((reps, tasks, sites)) < 0.2, rng.choice([0.0, 1.0], (reps, tasks, sites)), p)
    feasible = rng.random((reps, tasks, sites)) < 0.75
    pinned = rng.random(tasks) < 0.25  # tasks that cannot be offloaded: the phone only
    feasible[:, pinned, :] = False
    feasible[:, pinned, mobile] = True
    if rng.random() < 0.1:  # now and then a task nothing can host
        feasible[:, int(rng.integers(tasks)), :] = False
    return Instance(sources, TaskCosts(time, energy), p, feasible, cost_model(sites, mobile, rng))


def expectimin(instance: Instance, n: int) -> float:
    """The best expected cost over every adaptive strategy, by exhaustive search over full histories: the
    sites every earlier task ran on and every site that failed (no state compression). A task with no site
    left ends the application at NO_SOLUTION_COST."""
    c, fail, m = instance.weighted[n], instance.fail_cost, instance.model.mobile
    T, S = c.shape[0], c.shape[1]

    @functools.cache
    def best(t: int, history: tuple[int, ...], failed: frozenset[int]) -> float:
        if t == T:
            return 0.0
        source = instance.sources[t]
        here = history[source] if source >= 0 else m
        value = math.inf
        for a in range(S):
            if not instance.feasible[n, t, a] or a in failed:
                continue
            p = 1.0 if a == m else float(instance.p[n, t, a])
            total = 0.0
            if p > 0:
                total += p * (c[t, here, a] + best(t + 1, (*history, a), failed))
            if p < 1:
                total += (1 - p) * (fail[here] + best(t, history, failed | {a}))
            value = min(value, total)
        return NO_SOLUTION_COST if value == math.inf else value

    return best(0, (), frozenset())


def follow(instance: Instance, n: int, choose: object) -> float:
    """Expected cost of a given strategy `choose(t, history, failed) -> site | -1`, over every outcome."""
    c, fail, m = instance.weighted[n], instance.fail_cost, instance.model.mobile
    T = c.shape[0]

    def go(t: int, history: tuple[int, ...], failed: frozenset[int]) -> float:
        if t == T:
            return 0.0
        a = choose(t, history, failed)  # type: ignore[operator]
        if a < 0:
            return NO_SOLUTION_COST
        source = instance.sources[t]
        here = history[source] if source >= 0 else m
        p = 1.0 if a == m else float(instance.p[n, t, a])
        total = 0.0
        if p > 0:
            total += p * (c[t, here, a] + go(t + 1, (*history, a), failed))
        if p < 1:
            total += (1 - p) * (fail[here] + go(t, history, failed | {a}))
        return total

    return go(0, (), frozenset())


SHAPES = ((1, 2), (2, 3), (3, 3), (4, 3), (3, 4), (5, 3))  # (tasks, sites)
CASES = [(seed, tasks, sites) for seed in range(60) for tasks, sites in SHAPES]


@pytest.mark.parametrize(("seed", "tasks", "sites"), CASES)
def test_backward_induction_equals_exhaustive_search(seed: int, tasks: int, sites: int) -> None:
    rng = np.random.default_rng(seed)
    instance = random_instance(rng, tasks, sites, reps=2)
    plan = plan_application(
        instance.sources, instance.costs, instance.p, instance.feasible, instance.model, DECISION
    )
    structure = plan.structure
    for n in range(2):
        optimum = expectimin(instance, n)
        assert plan.expected_cost[n] == pytest.approx(optimum, rel=1e-12)

        def policy(t: int, history: tuple[int, ...], failed: frozenset[int], row: int = n) -> int:
            placement = structure.placement_of(t, np.array([[*history, 0]]))[0] if t else 0
            known = np.zeros((1, structure.n_sites), dtype=bool)
            known[0, list(failed)] = True
            mask = structure.mask_of(known)[0]
            return int(plan.actions(t, np.full(2, placement), np.full(2, mask))[row])

        # executing the plan (first choices and Algorithm 2's fallbacks) achieves the optimum
        achieved = follow(instance, n, policy)
        assert achieved == pytest.approx(optimum, rel=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_three_results_held_at_once(seed: int) -> None:
    """A fan-out then fan-in: before task 4 the results of tasks 1, 2 and 3 are all still needed."""
    rng = np.random.default_rng(500 + seed)
    instance = random_instance(rng, 7, 3, reps=1)
    instance = Instance((-1, 0, 0, 0, 3, 2, 1), instance.costs, instance.p, instance.feasible, instance.model)
    plan = plan_application(
        instance.sources, instance.costs, instance.p, instance.feasible, instance.model, DECISION
    )
    assert plan.structure.tasks[4].live == (1, 2, 3)
    assert plan.expected_cost[0] == pytest.approx(expectimin(instance, 0), rel=1e-12)


@pytest.mark.parametrize("seed", range(40))
def test_without_failures_the_plan_is_the_cheapest_of_every_placement(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    tasks, sites = int(rng.integers(1, 6)), int(rng.integers(2, 5))
    instance = random_instance(rng, tasks, sites)
    plan = plan_application(
        instance.sources, instance.costs, 1.0, instance.feasible, instance.model, DECISION
    )
    c = instance.weighted[0]
    best = math.inf
    for placement in itertools.product(range(sites), repeat=tasks):
        if not all(instance.feasible[0, t, a] for t, a in enumerate(placement)):
            continue
        m = instance.model.mobile
        total = sum(
            c[t, placement[s] if s >= 0 else m, a]
            for t, (s, a) in enumerate(zip(instance.sources, placement, strict=True))
        )
        best = min(best, total)
    if best == math.inf:  # a task no site can host: no placement completes the application
        assert plan.expected_cost[0] >= NO_SOLUTION_COST
    else:
        assert plan.expected_cost[0] == pytest.approx(best, rel=1e-12)


def test_the_fallback_chain_is_algorithm_2_over_the_plan() -> None:
    rng = np.random.default_rng(7)
    for _ in range(30):
        instance = random_instance(rng, 3, 4)
        plan = plan_application(
            instance.sources, instance.costs, instance.p, instance.feasible, instance.model, DECISION
        )
        m = instance.model.mobile
        for t in range(3):
            for placement in range(plan.structure.tasks[t].placements):
                chain = plan.fallback_chain(t, placement, 0)
                mask, expected = np.zeros(1, np.int64), []
                while (a := int(plan.actions(t, [placement], mask)[0])) >= 0:
                    expected.append(a)
                    if a == m:
                        break
                    mask = plan.after_failure(mask, [a])
                assert chain == tuple(expected)
                assert len(set(chain)) == len(chain)  # a failed site is never tried twice
                assert all(instance.feasible[0, t, a] for a in chain)
                if instance.feasible[0, t, m]:
                    assert chain[-1] == m  # the phone ends the chain when it can host the task


def greedy_strategy(instance: Instance) -> object:
    """Each task alone on its immediate expected cost, a failure falling back to the phone (the per-task MDP
    with discount 0), then Algorithm 2 over the same values."""
    c, fail, m = instance.weighted[0], instance.fail_cost, instance.model.mobile
    sites = np.arange(c.shape[1])

    def choose(t: int, history: tuple[int, ...], failed: frozenset[int]) -> int:
        source = instance.sources[t]
        here = history[source] if source >= 0 else m
        p = np.where(sites == m, 1.0, instance.p[0, t])
        immediate = p * c[t, here] + (1 - p) * (fail[here] + c[t, here, m])
        allowed = instance.feasible[0, t] & ~np.isin(sites, list(failed))
        return int(np.argmin(np.where(allowed, immediate, np.inf))) if allowed.any() else -1

    return choose


def test_it_never_loses_to_the_per_task_greedy_choice() -> None:
    """Deciding each task alone is one strategy among all: the plan's expected cost is never higher."""
    rng = np.random.default_rng(11)
    wins = 0
    for _ in range(40):
        instance = random_instance(rng, 4, 3)
        plan = plan_application(
            instance.sources, instance.costs, instance.p, instance.feasible, instance.model, DECISION
        )
        greedy_cost = follow(instance, 0, greedy_strategy(instance))
        assert plan.expected_cost[0] <= greedy_cost + 1e-9
        wins += plan.expected_cost[0] < greedy_cost - 1e-9
    assert wins > 0  # and it does better on some


def test_the_papers_applications_fit_in_small_tables() -> None:
    scenario = default_scenario()
    for app in scenario.apps:
        structure = DagStructure.of(app.sources, len(scenario.sites), scenario.mobile_index)
        assert max(task.placements for task in structure.tasks) <= len(scenario.sites)
        assert structure.n_masks == 16


@pytest.mark.parametrize(
    ("sources", "match"),
    [((), "at least one task"), ((0,), "task 0: source 0"), ((-1, 2, 0), "task 1: source 2")],
)
def test_malformed_applications_are_one_error(sources: tuple[int, ...], match: str) -> None:
    with pytest.raises(DecisionError, match=match):
        DagStructure.of(sources, 3, 0)


def test_bad_inputs_are_one_error() -> None:
    rng = np.random.default_rng(0)
    instance = random_instance(rng, 2, 3)
    args = (instance.sources, instance.costs)
    with pytest.raises(DecisionError, match=r"availabilities must lie in \[0, 1\]"):
        plan_application(*args, np.full(3, 1.5), instance.feasible, instance.model, DECISION)
    with pytest.raises(DecisionError, match="availability must broadcast"):
        plan_application(*args, np.ones((5, 3)), instance.feasible, instance.model, DECISION)
    with pytest.raises(DecisionError, match="costs must have shape"):
        plan_application((-1,), instance.costs, 1.0, instance.feasible, instance.model, DECISION)


def test_dag_engines_take_the_availability_of_the_per_task_engine_of_their_name() -> None:
    for source in DAG_SOURCES:
        dag, per_task = get_engine(f"dag-{source}"), get_engine(f"mdp-{source}")
        assert (dag.ranking, dag.recovery) == ("dag", "next-best")
        assert dag.availability == per_task.availability
    assert get_engine("mdp-belief").availability == "belief"
    assert "dag-selected" not in ENGINES  # offline 'all' takes them in once the simulator runs them
    with pytest.raises(EvaluationError, match="unknown engine source 'magic' in 'dag-magic'"):
        get_engine("dag-magic")
    with pytest.raises(EvaluationError, match="unknown engine 'magic'"):
        get_engine("magic")
