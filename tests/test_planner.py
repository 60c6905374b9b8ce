"""The mobile agent's pure core: view, Algorithm 2 over failing sites, policy recomputation (the meter:
test_meter.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgeoff.chain import stays_up_given_window
from edgeoff.cost import CostModel
from edgeoff.engines import get_engine
from edgeoff.errors import EvaluationError, NoFeasibleSolutionError
from edgeoff.scenario import Scenario, default_scenario
from edgeoff.traces import load_node_table
from edgeoff.wire.messages import DOWN_MODEL, Prediction, SiteStatus
from mobile_agent.planner import (
    AgentView,
    Planner,
    PlannerSettings,
    TaskSpec,
    chain_means,
    expected_phases,
    sample_app_run,
)

SITES = ("ed", "ec", "er", "cd")
MD, ED, EC, ER, CD = range(5)


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    """The paper's scenario with discount 0, on which Q = R and the hand-worked orders below rest (the
    tuned discount, 0.5, adds the value of what follows; the mechanics of Algorithm 2 are the same)."""
    paper = default_scenario()
    return paper.model_copy(update={"decision": paper.decision.model_copy(update={"discount": 0.0})})


def online_view(scenario: Scenario) -> AgentView:
    view = AgentView(scenario)
    for site in SITES:
        view.apply_status(site, SiteStatus(state="online", session=1, ts=0.0))
    return view


def task(*, offloadable: bool = True, memory_gb: float = 1.0, mi: float = 600.0) -> TaskSpec:
    return TaskSpec("APP", "T", 0, 0, -1, mi, 6.0, 6.0, memory_gb, offloadable)


def predict(view: AgentView, site: str, availability: float, version: int, model: str = "svr") -> str:
    return view.apply_prediction(
        site, Prediction(site=site, availability=availability, version=version, model=model, ts=0.0)
    )


# ------------------------------------------------------------------------------------------------ view


def test_sites_without_status_are_unusable_and_the_phone_always_usable(scenario: Scenario) -> None:
    view = AgentView(scenario)
    assert view.usable().tolist() == [True, False, False, False, False]


def test_offline_of_an_older_session_is_ignored(scenario: Scenario) -> None:
    view = online_view(scenario)
    assert view.apply_status("ed", SiteStatus(state="online", session=2, ts=0.0)) == "unchanged"
    assert view.apply_status("ed", SiteStatus(state="offline", session=1, ts=0.0)) == "ignored"  # late will
    assert view.usable()[ED]
    assert view.apply_status("ed", SiteStatus(state="offline", session=2, ts=0.0)) == "down"
    assert not view.usable()[ED]
    assert view.apply_status("nosuchsite", SiteStatus(state="online", session=9, ts=0.0)) == "ignored"


def test_predictions_detector_down_and_stale_versions(scenario: Scenario) -> None:
    view = online_view(scenario)
    assert predict(view, "ec", 0.9, 3) == "changed"
    assert predict(view, "ec", 0.9, 4) == "unchanged"
    assert predict(view, "ec", 0.1, 2) == "ignored"  # older than the one held
    assert predict(view, "ec", 0.0, 5, DOWN_MODEL) == "down"
    assert view.known_down()[EC]
    assert predict(view, "ec", 0.8, 6) == "up"
    assert not view.known_down()[EC]
    assert view.forecasts()[EC] == 0.8
    assert view.forecasts()[ER] == 1.0  # no prediction yet: the prior


# ------------------------------------------------------------------------------------- Algorithm 2


# Expected costs of `task()` (600 MI, 6 KB in, 6 KB out) sent from the phone, worked out by hand from
# PARAMETERS.md with the scenario's weights (1 per s, 1 per J): cost = time + energy, where a transfer takes
# size / bandwidth + one-way latency, the phone spends 1.3 W uploading, 0.3 W (idle) while a site computes,
# 1.0 W downloading and 0.9 W computing itself.
#   site  upload = download (s)     run (s)             time   + energy = cost
#   MD    -                         600/1000  = 0.6     0.6    + 0.54   = 1.1400  (local, at 0.9 W)
#   ED    6/2500  + 0.015 = 0.0174  600/5000  = 0.12    0.1548 + 0.0760 = 0.2308
#   EC    6/687.5 + 0.015 = 0.0237  600/8000  = 0.075   0.1225 + 0.0771 = 0.1995
#   ER    6/687.5 + 0.015 = 0.0237  600/5000  = 0.12    0.1675 + 0.0906 = 0.2580
#   CD    6/2500  + 0.254 = 0.2564  600/12000 = 0.05    0.5628 + 0.6047 = 1.1675
#   (the MD-CD latency is 54 ms + the 200 ms mean of its jitter)
COST_FROM_MD = {MD: 1.1400, ED: 0.2308, EC: 0.1995, ER: 0.2580, CD: 1.1675}
# A failed offload from the phone: 1.5 s of detection at the upload power, then the local re-run.
FAILED_FROM_MD = 1.5 + 1.5 * 1.3 + COST_FROM_MD[MD]  # 4.59


def test_the_tuned_discount_makes_q_the_expected_cost(scenario: Scenario) -> None:
    """The hand-worked orders below rest on discount 0: Q(s, a) = R(s, a), no future term."""
    planner = Planner(scenario, get_engine("mdp-svr"))
    assert planner.decision.discount == 0.0
    plan = planner.plan(task(), MD, online_view(scenario))
    assert plan.values == pytest.approx([-COST_FROM_MD[a] for a in range(5)], abs=1e-4)


def test_failure_takes_the_next_best_action_and_records_the_reason(scenario: Scenario) -> None:
    planner = Planner(scenario, get_engine("mdp-svr"))
    view = online_view(scenario)
    predict(view, "ec", 0.5, 1)
    plan = planner.plan(task(), MD, view)
    # All sites up, EC predicted at 0.5: R(MD, EC) = -(0.5 x 0.1995 + 0.5 x 4.59) = -2.3948, so the cheapest
    # site falls to the end; the others keep their costs (availability 1). Best first:
    # ED 0.2308, ER 0.2580, MD 1.1400 (local beats the cloud's slow link), CD 1.1675, EC 2.3948.
    assert 0.5 * COST_FROM_MD[EC] + 0.5 * FAILED_FROM_MD == pytest.approx(2.3948, abs=1e-4)
    order = [ED, ER, MD, CD, EC]
    assert plan.action == order[0]
    nxt = plan.fail("deadline passed")
    assert nxt == order[1]
    assert plan.fallbacks[-1].from_site == order[0]
    assert plan.fallbacks[-1].to_site == order[1]
    assert plan.fallbacks[-1].reason == "deadline passed"
    assert plan.excluded[order[0]]
    for failed, expected in itertools.pairwise(order[1:]):  # every further step takes the next one down
        assert plan.fail("site offline") == expected
        assert (plan.fallbacks[-1].from_site, plan.fallbacks[-1].to_site) == (failed, expected)
        assert plan.excluded[failed]
    with pytest.raises(NoFeasibleSolutionError):
        plan.fail("site offline")
    assert plan.fallbacks[-1].from_site == EC
    assert plan.fallbacks[-1].to_site is None
    assert len(plan.fallbacks) == 5


def test_offline_and_detector_down_sites_are_excluded_up_front(scenario: Scenario) -> None:
    planner = Planner(scenario, get_engine("mdp-svr"))
    view = online_view(scenario)
    best = planner.plan(task(), MD, view).action
    assert best != MD
    view.apply_status(scenario.site_ids[best], SiteStatus(state="offline", session=1, ts=0.0))
    other = planner.plan(task(), MD, view).action
    assert other not in (best, MD)
    predict(view, scenario.site_ids[other], 0.0, 1, DOWN_MODEL)
    plan = planner.plan(task(), MD, view)
    assert plan.excluded[best]
    assert plan.excluded[other]
    assert plan.action not in (best, other)


def test_sites_down_since_the_plan_are_excluded_on_failure(scenario: Scenario) -> None:
    planner = Planner(scenario, get_engine("mdp-svr"))
    view = online_view(scenario)
    plan = planner.plan(task(), MD, view)
    # all up: EC 0.1995, ED 0.2308, ER 0.2580, MD 1.1400, CD 1.1675 (COST_FROM_MD)
    assert plan.action == EC
    unusable = np.zeros(5, dtype=bool)
    unusable[ED] = True  # the second best went down meanwhile: EC's failure skips it
    assert plan.fail("site offline", unusable=unusable) == ER
    assert plan.excluded[ED]


def test_no_feasible_solution_when_nothing_is_left(scenario: Scenario) -> None:
    planner = Planner(scenario, get_engine("mdp-svr"))
    view = online_view(scenario)
    big = task(memory_gb=64.0)  # only the cloud (128 GB) can host it
    plan = planner.plan(big, MD, view)
    assert plan.action == CD
    with pytest.raises(NoFeasibleSolutionError):
        plan.fail("site offline")
    assert plan.fallbacks[-1].to_site is None
    view.apply_status("cd", SiteStatus(state="offline", session=1, ts=0.0))
    with pytest.raises(NoFeasibleSolutionError):
        planner.plan(big, MD, view)


def test_non_offloadable_tasks_run_on_the_phone(scenario: Scenario) -> None:
    planner = Planner(scenario, get_engine("mdp-svr"))
    plan = planner.plan(task(offloadable=False), MD, online_view(scenario))
    assert plan.action == MD
    assert plan.excluded.tolist() == [False, True, True, True, True]


def test_efpo_re_executes_locally_and_kubehybrid_resumes_on_the_next_best(scenario: Scenario) -> None:
    view = online_view(scenario)
    efpo = Planner(scenario, get_engine("efpo")).plan(task(), MD, view)
    assert efpo.action != MD
    assert efpo.fail("deadline") == MD
    kube_planner = Planner(scenario, get_engine("kubehybrid"))
    kube = kube_planner.plan(task(), MD, view)
    order = list(np.argsort(-kube.values))
    assert kube.fail("site offline") == order[1]
    assert kube_planner.restore_s() > 0
    assert kube_planner.checkpoint_s(task(), ED) > 0
    assert kube_planner.checkpoint_s(task(), MD) == 0


def test_offline_only_engines_are_refused(scenario: Scenario) -> None:
    with pytest.raises(EvaluationError, match="cannot run live"):
        Planner(scenario, get_engine("mdp-oracle"))


# ------------------------------------------------------------------------------------------- policy


def ds1_settings(scenario: Scenario) -> PlannerSettings:
    table = load_node_table()
    up, down = chain_means(scenario, "DS1", {n: (t.mttf_h, t.mttr_h) for n, t in table.items()})
    return PlannerSettings(mean_up_h=up, mean_down_h=down)


def test_a_prediction_change_changes_the_policy(scenario: Scenario) -> None:
    settings = ds1_settings(scenario)
    planner = Planner(scenario, get_engine("mdp-svr"), settings)
    view = online_view(scenario)
    before = planner.policy(view)
    best = int(before.policy[MD])
    assert best != MD
    predict(view, scenario.site_ids[best], 0.05, 1)
    after = planner.policy(view)
    assert int(after.policy[MD]) != best
    # the window forecast mapped to the reference task's time at risk through the site's chain
    ph = expected_phases(planner.model, planner.reference, MD, best)
    at_risk_h = (ph[0] + ph[1]) * settings.time_compression / 3600.0
    expected = stays_up_given_window(0.05, settings.mean_down_h[best], at_risk_h)  # type: ignore[index]
    assert after.availability[best] == pytest.approx(float(expected))
    body = after.to_json(scenario.site_ids)
    availability, policy = body["availability"], body["policy"]
    assert isinstance(availability, dict)
    assert isinstance(policy, dict)
    assert availability["md"] == 1.0
    assert set(policy) == set(scenario.site_ids)


def test_mdp_reactive_ignores_predictions(scenario: Scenario) -> None:
    planner = Planner(scenario, get_engine("mdp-reactive"))
    view = online_view(scenario)
    predict(view, "ed", 0.01, 1)
    assert planner.policy(view).availability[ED] == 1.0


def test_deadline_is_the_expected_time_times_the_factor_plus_the_margin(scenario: Scenario) -> None:
    planner = Planner(scenario, get_engine("mdp-svr"))
    t = task()
    expected = sum(expected_phases(planner.model, t, MD, ED))
    assert planner.result_deadline_s(t, MD, ED, 0.5) == pytest.approx(3.0 * expected * 0.5 + 0.5)


def test_expected_phases_match_the_cost_model(scenario: Scenario) -> None:
    model = CostModel.from_scenario(scenario)
    t = task()
    costs = model.tasks(np.array([t.mi]), np.array([t.input_kb]), np.array([t.output_kb]))
    for src in range(5):
        for dst in range(5):
            assert sum(expected_phases(model, t, src, dst)) == pytest.approx(costs.time_s[0, src, dst])


def test_sampled_runs_follow_the_dag(scenario: Scenario) -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        run = sample_app_run(scenario, rng)
        for spec in run:
            assert spec.source < spec.index
            assert spec.mi > 0
