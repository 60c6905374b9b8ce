"""The seeded simulator: reproducible, and its accounting checked on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from edgeoff.engines import ENGINES, get_engine
from edgeoff.errors import EvaluationError
from edgeoff.evaluation.simulator import Group, RunResult, SiteBehaviour, simulate, simulate_groups
from edgeoff.scenario import default_scenario

MD, ED, EC, ER, CD = range(5)
SCENARIO = default_scenario()


class ConstantForecaster:
    lags = 3

    def __init__(self, value: float) -> None:
        self.value = value

    def predict_many(self, recent: np.ndarray) -> np.ndarray:
        return np.full(recent.shape[0], self.value)


def _sites(mttf_h: float, mttr_h: float, forecast: float = 0.99) -> dict[int, SiteBehaviour]:
    return {
        i: SiteBehaviour(
            mttf_h, mttr_h, dict.fromkeys(("svr", "selected"), ConstantForecaster(forecast)), np.ones(10)
        )
        for i in (ED, EC, ER, CD)
    }


def _run(engine: str, sites: dict[int, SiteBehaviour], seed: int = 1, apps: int = 200) -> RunResult:
    return simulate(SCENARIO, sites, get_engine(engine), apps=apps, reps=4, seed=(seed,))


@pytest.mark.parametrize("engine", list(ENGINES))
def test_same_seed_same_bytes_other_seed_other_results(engine: str) -> None:
    sites = _sites(50.0, 5.0)
    a, b, c = _run(engine, sites, 7), _run(engine, sites, 7), _run(engine, sites, 8)
    for field in ("rt_s", "energy_j", "failures", "placements"):
        assert getattr(a, field).tobytes() == getattr(b, field).tobytes()
    assert a.rt_s.tobytes() != c.rt_s.tobytes()


def test_sites_that_never_fail_cause_no_failures() -> None:
    result = _run("mdp-svr", _sites(1e12, 1e-6, forecast=1.0))
    assert result.failures.sum() == 0
    assert result.offload_attempts.sum() > 0


def test_a_site_down_for_long_is_known_down_and_never_tried() -> None:
    sites = _sites(1e12, 1e-6, forecast=1.0)  # everything up and believed up ...
    sites[ED] = SiteBehaviour(1e-6, 1e12, {"svr": ConstantForecaster(1.0)}, np.ones(10))  # ... but ED
    result = _run("mdp-svr", sites)
    assert result.true_availability[:, ED].max() == 0.0
    # the detector declared ED down long ago (its outage began before the run): the agent knows it
    assert result.placements[:, ED].sum() == 0
    assert result.failures.sum() == 0
    assert result.predicted_availability[:, ED].max() == 0.0


def test_response_time_sums_the_slowest_task_of_each_dag_level() -> None:
    raw = SCENARIO.model_dump(by_alias=True)
    raw["apps"] = [a for a in raw["apps"] if a["name"] == "GPS"]
    raw["apps"][0]["probability"] = 1.0
    for cls in raw["task_classes"].values():  # fixed sizes: the lower bounds
        for key in ("mi", "input_kb", "output_kb"):
            cls[key] = [cls[key][0]] * 2
    for site in raw["sites"][1:]:
        site["memory_gb"] = 0.5  # no remote site can host a task: everything runs on the phone
    gps_only = type(SCENARIO).model_validate(raw)
    result = simulate(gps_only, {}, get_engine("mdp-svr"), apps=3, reps=2, seed=(0,))
    # levels: {CONF_PANEL, GPS} 0.1 s, CONTROL 0.55 s, {MAPS, TRAFFIC} 0.1 s, PATH_CALC 0.1 s, 3 leaves 0.1 s
    assert result.rt_s.tolist() == pytest.approx([3 * 0.95] * 2)
    # every task is charged, leaves included: 8 tasks of 100 MI and one of 550 MI at 0.9 W
    assert result.energy_j.tolist() == pytest.approx([3 * 1.35 * 0.9] * 2)
    assert result.offload_attempts.sum() == 0


def test_unknown_engine() -> None:
    with pytest.raises(EvaluationError, match="unknown engine"):
        get_engine("magic")


def test_groups_in_one_pass_equal_one_call_per_group() -> None:
    groups = [Group(_sites(50.0, 5.0), (3,)), Group(_sites(500.0, 20.0), (4,))]
    together = simulate_groups(SCENARIO, groups, get_engine("mdp-svr"), apps=60, reps=3)
    for group, joint in zip(groups, together, strict=True):
        alone = simulate(SCENARIO, group.sites, get_engine("mdp-svr"), apps=60, reps=3, seed=group.seed)
        for field in ("rt_s", "energy_j", "failures", "placements", "true_availability"):
            assert getattr(joint, field).tobytes() == getattr(alone, field).tobytes(), field


def test_the_oracle_fails_only_mid_task_and_less_than_the_reactive_engine() -> None:
    sites = _sites(3.0, 10.0, forecast=0.9)
    oracle, reactive = _run("mdp-oracle", sites, apps=400), _run("mdp-reactive", sites, apps=400)
    assert reactive.failures.sum() > oracle.failures.sum()
    assert reactive.rt_s.mean() > oracle.rt_s.mean()
