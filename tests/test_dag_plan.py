"""The DAG-aware engines in the live agent's core: one plan per application run, Algorithm 2 over it."""

from __future__ import annotations

import numpy as np
import pytest

from edgeoff.engines import get_engine
from edgeoff.errors import NoFeasibleSolutionError
from edgeoff.scenario import Scenario, default_scenario
from edgeoff.wire.messages import DOWN_MODEL, Prediction, SiteStatus
from mobile_agent.dag_plan import DagApplication, start_application
from mobile_agent.planner import LIVE_ENGINES, AgentView, Planner, TaskSpec, sample_app_run

SITES = ("ed", "ec", "er", "cd")
MD, ED, EC, ER, CD = range(5)


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return default_scenario()


def online_view(scenario: Scenario, availability: dict[str, float] | None = None) -> AgentView:
    view = AgentView(scenario)
    for version, site in enumerate(SITES):
        view.apply_status(site, SiteStatus(state="online", session=1, ts=0.0))
        p = (availability or {}).get(site)
        if p is not None:
            view.apply_prediction(
                site, Prediction(site=site, availability=p, version=version, model="svr", ts=0.0)
            )
    return view


def app_run(scenario: Scenario, name: str, seed: int = 3) -> tuple[TaskSpec, ...]:
    rng = np.random.default_rng(seed)
    while (specs := sample_app_run(scenario, rng))[0].app != name:
        pass
    return specs


def test_only_dag_engines_plan_per_application(scenario: Scenario) -> None:
    assert "dag-selected" in LIVE_ENGINES
    view = online_view(scenario)
    specs = app_run(scenario, "FACEBOOK")
    assert start_application(Planner(scenario, get_engine("mdp-selected")), specs, view) is None
    assert isinstance(
        start_application(Planner(scenario, get_engine("dag-selected")), specs, view), DagApplication
    )


def test_each_task_takes_the_plans_action_in_its_state(scenario: Scenario) -> None:
    view = online_view(scenario, {"ed": 0.95, "ec": 0.6, "er": 0.99, "cd": 0.9})
    planner = Planner(scenario, get_engine("dag-selected"))
    specs = app_run(scenario, "GPS")
    application = start_application(planner, specs, view)
    assert application is not None
    plan = application.plan
    site_of: list[int] = []
    for spec in specs:
        state = MD if spec.source < 0 else site_of[spec.source]
        task_plan = application.task_plan(spec, state, site_of, view)
        placement = plan.structure.placement_of(spec.index, np.array([[*site_of, MD]]))
        assert task_plan.action == plan.actions(spec.index, placement, [0])[0]
        if not spec.offloadable:
            assert task_plan.action == MD
        site_of.append(task_plan.action)
    assert plan.expected_cost[0] > 0


def test_a_failure_leads_to_the_plans_action_once_the_site_is_known_down(scenario: Scenario) -> None:
    view = online_view(scenario, {"ed": 0.9, "ec": 0.9, "er": 0.9, "cd": 0.9})
    planner = Planner(scenario, get_engine("dag-selected"))
    specs = app_run(scenario, "CHESS")
    application = start_application(planner, specs, view)
    assert application is not None
    spec = specs[1]  # UPDATE_CHESS, offloadable, input on the phone (GUI ran there)
    task_plan = application.task_plan(spec, MD, [MD], view)
    chain = application.plan.fallback_chain(1, 0, 0)
    tried = [task_plan.action]
    while tried[-1] != MD:
        tried.append(task_plan.fail("timeout"))
    assert tuple(tried) == chain  # Algorithm 2 follows the plan's chain, the phone last
    assert [f.from_site for f in task_plan.fallbacks] == list(chain[:-1])
    # what failed stays known down for the rest of the run
    assert application.failed[list(chain[:-1])].all()
    later = application.task_plan(specs[2], chain[-1], [MD, chain[-1]], view)
    assert later.excluded[list(chain[:-1])].all()


def test_sites_the_view_holds_down_are_never_planned(scenario: Scenario) -> None:
    view = online_view(scenario, {"ed": 0.99, "ec": 0.99, "er": 0.99, "cd": 0.99})
    view.apply_prediction("ed", Prediction(site="ed", availability=0.0, version=9, model=DOWN_MODEL, ts=0.0))
    view.apply_status("ec", SiteStatus(state="offline", session=1, ts=0.0))
    planner = Planner(scenario, get_engine("dag-selected"))
    specs = app_run(scenario, "FACEBOOK")
    application = start_application(planner, specs, view)
    assert application is not None
    site_of: list[int] = []
    for spec in specs:
        state = MD if spec.source < 0 else site_of[spec.source]
        task_plan = application.task_plan(spec, state, site_of, view)
        assert task_plan.excluded[[ED, EC]].all()
        assert task_plan.action not in (ED, EC)
        site_of.append(task_plan.action)


def test_no_site_left_is_no_feasible_solution(scenario: Scenario) -> None:
    view = online_view(scenario)
    planner = Planner(scenario, get_engine("dag-reactive"))
    big = TaskSpec("APP", "BIG", 0, 0, -1, 600.0, 6.0, 6.0, 64.0, True)  # only the cloud has 64 GB
    application = start_application(planner, (big,), view)
    assert application is not None
    task_plan = application.task_plan(big, MD, [], view)
    assert task_plan.action == CD
    with pytest.raises(NoFeasibleSolutionError):
        task_plan.fail("site offline")
    assert task_plan.fallbacks[-1].to_site is None
