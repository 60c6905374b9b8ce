"""One model offline and live: the engines' information, the chain mapping, Algorithm 2 once."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgeoff import chain, knowledge
from edgeoff.decision import next_actions
from edgeoff.engines import get_engine
from edgeoff.evaluation.experiment import (
    ExperimentConfig,
    Setting,
    fit_forecasts,
    load_traces,
    run_experiment,
)
from edgeoff.evaluation.failures import markov_path
from edgeoff.evaluation.simulator import SiteBehaviour, simulate
from edgeoff.scenario import default_scenario
from edgeoff.wire.messages import Prediction, SiteStatus
from mobile_agent.planner import AgentView, Planner, TaskPlan, TaskSpec

MD, ED, EC, ER, CD = range(5)


def test_planner_and_simulator_both_combine_through_usable_availability(monkeypatch: Any) -> None:
    calls: list[str] = []
    real = knowledge.usable_availability

    def spy(availability: np.ndarray, known_down: np.ndarray) -> np.ndarray:
        calls.append("called")
        return real(availability, known_down)

    monkeypatch.setattr(knowledge, "usable_availability", spy)
    scenario = default_scenario()
    view = AgentView(scenario)
    for site in ("ed", "ec", "er", "cd"):
        view.apply_status(site, SiteStatus(state="online", session=1, ts=0.0))
    view.apply_prediction(
        "ec", Prediction(site="ec", availability=0.0, version=1, model="detector:down", ts=0)
    )
    task = TaskSpec("APP", "T", 0, 0, -1, 600.0, 6.0, 6.0, 1.0, True)
    p = Planner(scenario, get_engine("mdp-svr")).availability(task, MD, view)
    assert calls
    assert p[EC] == 0.0
    calls.clear()
    simulate(scenario, {ED: SiteBehaviour(10.0, 1.0)}, get_engine("mdp-reactive"), apps=2, reps=1, seed=(0,))
    assert calls  # the simulator decides on the same combination


def test_engine_inputs_at_the_decision_time_scale() -> None:
    d = np.array([[0.0, 0.5, 0.5]])
    up, down = np.array([np.inf, 10.0, 100.0]), np.array([0.0, 2.0, 5.0])
    reactive = knowledge.engine_input("detector", duration=d, mean_up=up, mean_down=down)
    assert reactive.tolist() == [[1.0, 1.0, 1.0]]
    efpo = knowledge.engine_input("mtbf-reliability", duration=d, mean_up=up, mean_down=down)
    assert efpo[0, 1] == pytest.approx(np.exp(-0.5 / 12.0))
    kube = knowledge.engine_input("mtbf-steady-state", duration=d, mean_up=up, mean_down=down)
    assert kube[0].tolist() == pytest.approx([1.0, 10 / 12, 100 / 105])
    forecast = np.array([[1.0, 0.9, 1.0]])
    svr = knowledge.engine_input("svr", duration=d, mean_up=up, mean_down=down, forecast=forecast)
    # A = 0.9 with MTTR 2 h implies MTTF 18 h: the site stays up for 0.5 h with e^{-0.5/18}
    assert svr[0].tolist() == pytest.approx([1.0, np.exp(-0.5 / 18.0), 1.0])
    oracle = knowledge.engine_input(
        "oracle", duration=d, mean_up=up, mean_down=down, up_now=np.array([[True, False, True]])
    )
    assert oracle.tolist() == [[1.0, 0.0, 1.0]]
    assert knowledge.usable_availability(svr, np.array([[False, True, False]]))[0, 1] == 0.0


def test_window_mapping_is_consistent_with_the_chain() -> None:
    # a forecast equal to the steady state gives back the node's own MTTF
    mttf, mttr = 40.0, 4.0
    a = chain.steady_state(mttf, mttr)
    assert chain.stays_up_given_window(a, mttr, 3.0) == pytest.approx(chain.stays_up(3.0, mttf))
    assert chain.stays_up_given_window(0.0, mttr, 3.0) == 0.0


def test_markov_path_steps_as_the_closed_form() -> None:
    mean_up, mean_down, reps = np.array([5.0, 50.0]), np.array([2.0, 10.0]), 20000
    path = markov_path(mean_up, mean_down, reps, np.random.default_rng(7))
    at0 = path.state_at(np.zeros(reps))
    assert at0.up.mean(axis=0) == pytest.approx(chain.steady_state(mean_up, mean_down), abs=0.01)
    for dt in (0.5, 3.0, 20.0):
        later = path.state_at(np.full(reps, dt))
        for s in range(2):
            for start in (True, False):
                rows = at0.up[:, s] == start
                expected = chain.p_up_after(start, dt, mean_up[s], mean_down[s])
                se = np.sqrt(expected * (1 - expected) / rows.sum())
                assert later.up[rows, s].mean() == pytest.approx(expected, abs=4 * se + 1e-3)


def test_task_plan_and_the_simulator_share_next_actions() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        q = rng.normal(size=5)
        q[rng.integers(5)] = q[rng.integers(5)]  # ties
        excluded = rng.random(5) < 0.3
        excluded[MD] = False
        plan = TaskPlan(state=MD, values=q, excluded=excluded, recovery="next-best", mobile=MD)
        seen, mask = [], excluded.copy()
        while True:
            a = int(next_actions(q[None, :], mask[None, :])[0])
            seen.append(a)
            assert plan.action == a
            if a == MD:
                break
            mask[a] = True
            plan.fail("test")
        assert seen[-1] == MD


def test_results_do_not_depend_on_the_number_of_workers() -> None:
    scenario = default_scenario()
    datasets = ("DS1", "DS2")
    traces = load_traces(scenario, datasets, None)
    forecasts = fit_forecasts(traces, scenario.simulation.prediction_window_h)
    settings = (Setting(3600.0, 1.5), Setting(360.0, 1.5))
    runs = [
        run_experiment(
            scenario,
            ExperimentConfig(datasets, ("mdp-svr", "kubehybrid"), settings, 40, 3, 5, workers),
            traces,
            forecasts,
        )
        for workers in (1, 2)
    ]
    assert runs[0] == runs[1]
