"""The agent's meter: the results record from running aggregates, equal to the all-in-memory computation
(tests/meter_oracle.py) on random runs, and bounded however long the run."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from edgeoff.cost import CostModel
from edgeoff.scenario import Scenario, default_scenario
from mobile_agent.meter import (
    LATENCY_RELATIVE_ERROR,
    Attempt,
    Detection,
    Injection,
    Phase,
    PhaseKind,
    TaskMeasurement,
    TaskMeter,
    detection_summary,
    phase_energy_j,
    summarise_run,
)
from mobile_agent.record import MAX_RECORDED_DETECTIONS, RunRecord
from mobile_agent.running import LogHistogram, RunningStat

from meter_oracle import detection_summary_all, response_times_s, summarise_all

MD, ED, EC, ER, CD = range(5)
KINDS: tuple[PhaseKind, ...] = ("upload", "execute", "download", "detect", "checkpoint", "restore")


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return default_scenario()


def meter_of(scenario: Scenario, tasks: list[TaskMeasurement]) -> TaskMeter:
    meter = TaskMeter(CostModel.from_scenario(scenario), scenario.site_types)
    for t in tasks:
        meter.add(t)
    return meter


def measurement(
    run: int, level: int, seconds: float, site: int, attempts: tuple[Attempt, ...]
) -> TaskMeasurement:
    phases = (Phase("execute", seconds, MD, site),)
    return TaskMeasurement(run, level, site != MD, True, site, phases, attempts)


def random_run(rng: np.random.Generator, runs: int) -> list[TaskMeasurement]:
    """Tasks of `runs` application runs in run order, every field drawn (lost and infeasible tasks too)."""
    tasks = []
    for run in range(runs):
        if rng.random() < 0.1:
            continue  # a run whose tasks never came (stopped before its first task)
        for _ in range(int(rng.integers(1, 8))):
            completed = bool(rng.random() < 0.9)
            site = int(rng.integers(0, 5)) if completed else None
            phases = tuple(
                Phase(
                    KINDS[int(rng.integers(0, 6))],
                    float(rng.exponential(2.0)),
                    *map(int, rng.integers(0, 5, 2)),
                )
                for _ in range(int(rng.integers(0, 5)))
            )
            attempts = tuple(
                Attempt(int(rng.integers(0, 5)), bool(rng.random() < 0.7), bool(rng.random() < 0.8))
                for _ in range(int(rng.integers(0, 4)))
            )
            tasks.append(
                TaskMeasurement(
                    run,
                    int(rng.integers(0, 4)),
                    bool(rng.random() < 0.8),
                    completed,
                    site,
                    phases,
                    attempts,
                    infeasible=bool(rng.random() < 0.05),
                )
            )
    return tasks


def assert_same_record(new: object, old: object, path: str = "record") -> None:
    """Equal shape and keys; numbers equal: integers exactly, floats up to rounding (rel 1e-9)."""
    assert type(new) is type(old) or {type(new), type(old)} <= {int, float}, path
    if isinstance(old, dict):
        assert isinstance(new, dict)
        assert list(new) == list(old), path
        for key in old:
            assert_same_record(new[key], old[key], f"{path}.{key}")
    elif isinstance(old, float):
        assert new == pytest.approx(old, rel=1e-9, abs=1e-9), path
    else:
        assert new == old, path


# -------------------------------------------------------------------------------------------- results


def test_phase_energy_uses_the_phone_power_of_each_phase(scenario: Scenario) -> None:
    model = CostModel.from_scenario(scenario)
    # power: upload 1.3 W, download 1.0 W, compute 0.9 W, idle 0.3 W
    assert phase_energy_j(model, Phase("upload", 2.0, MD, ED)) == pytest.approx(2.6)
    assert phase_energy_j(model, Phase("upload", 2.0, ED, EC)) == pytest.approx(0.6)  # two sites talk
    assert phase_energy_j(model, Phase("execute", 2.0, MD, MD)) == pytest.approx(1.8)
    assert phase_energy_j(model, Phase("execute", 2.0, MD, ED)) == pytest.approx(0.6)
    assert phase_energy_j(model, Phase("download", 2.0, ED, MD)) == pytest.approx(2.0)
    assert phase_energy_j(model, Phase("detect", 1.5, MD, ED)) == pytest.approx(1.95)
    assert phase_energy_j(model, Phase("detect", 1.5, EC, ED)) == pytest.approx(0.45)


def test_response_time_is_the_slowest_task_per_level_summed(scenario: Scenario) -> None:
    tasks = [
        measurement(0, 0, 1.0, MD, ()),
        measurement(0, 1, 2.0, ED, ()),
        measurement(0, 1, 3.0, EC, ()),  # same level: only the slowest counts
        measurement(0, 2, 0.5, MD, ()),
        measurement(1, 0, 4.0, MD, ()),
    ]
    rt = meter_of(scenario, tasks).response_time()
    assert (rt.count, rt.total, rt.mean) == (2, 8.5, 4.25)
    assert response_times_s(tasks).tolist() == [4.5, 4.0]  # the oracle agrees


def test_summary_on_a_hand_computed_run(scenario: Scenario) -> None:
    ok_remote = (Attempt(ED, True, True),)
    failed_then_ok = (Attempt(EC, False, True, "site offline"), Attempt(CD, True, True))
    tasks = [
        measurement(0, 0, 1.0, MD, (Attempt(MD, True, False),)),  # local: 0.9 J
        measurement(0, 1, 2.0, ED, ok_remote),  # remote execute: idle 0.3 W -> 0.6 J
        measurement(1, 0, 3.0, CD, failed_then_ok),  # 0.9 J
        TaskMeasurement(1, 1, True, False, None, (), ()),  # never completed
    ]
    usable = np.array([1.0, 1.0, 0.5, 1.0, 1.0])
    record = summarise_run(
        scenario,
        "DS1",
        "mdp-svr",
        meter_of(scenario, tasks),
        site_usable_share=usable,
        believed_availability=np.full(5, 0.9),
    )
    assert record["apps"] == 2
    assert record["rt_s"]["mean"] == pytest.approx(3.0)  # runs: 1 + 2 and 3 + 0
    assert record["rt_s"]["std"] == pytest.approx(0.0)
    assert record["rt_s_total"] == pytest.approx(6.0)
    assert record["energy_j"] == pytest.approx(2.4)
    assert record["battery_pct"]["mean"] == pytest.approx((34200 - 2.4) / 34200 * 100)
    assert record["availability_pct"]["mean"] == pytest.approx(200 / 3)  # 2 of 3 remote attempts
    assert record["failures"] == 1
    assert record["failures_per_1000_apps"] == pytest.approx(500.0)
    assert record["offloads_per_1000_apps"] == pytest.approx(1500.0)
    assert record["distribution_pct"] == {"MD": 0.0, "ED": 50.0, "EC": 0.0, "ER": 0.0, "CD": 50.0}
    assert record["tasks_lost"] == 1
    assert record["fallbacks"] == 1
    assert record["site_availability_pct"]["ec"] == pytest.approx(50.0)
    assert record["believed_availability_pct"]["ed"] == pytest.approx(90.0)


@pytest.mark.parametrize("seed", range(40))
def test_the_running_record_equals_the_all_in_memory_one(scenario: Scenario, seed: int) -> None:
    rng = np.random.default_rng(seed)
    tasks = random_run(rng, runs=int(rng.integers(0, 60)))
    usable, believed = rng.random(5), rng.random(5)
    args = {"site_usable_share": usable, "believed_availability": believed}
    new = summarise_run(scenario, "DS2", "efpo", meter_of(scenario, tasks), **args)
    old = summarise_all(scenario, "DS2", "efpo", tasks, **args)
    assert_same_record(new, old)


def test_a_task_of_an_earlier_run_is_refused(scenario: Scenario) -> None:
    meter = meter_of(scenario, [measurement(3, 0, 1.0, MD, ())])
    with pytest.raises(ValueError, match="run 2 after run 3"):
        meter.add(measurement(2, 0, 1.0, MD, ()))


# -------------------------------------------------------------------------------------------- detection


def test_detection_latency_matches_each_failure_with_the_first_detection_after_it() -> None:
    injections = [Injection("ec", 100.0, 3.0), Injection("cd", 200.0, 1.0), Injection("er", 300.0, 1.0)]
    detections = [
        Detection("ec", 99.0, "offline status"),  # before the failure: not this one
        Detection("ec", 100.25, "offline status"),
        Detection("cd", 200.75, "detector:down prediction"),
        Detection("er", 400.0, "offline status"),  # far too late: another failure
    ]
    summary = detection_summary(injections, detections, slack_s=5.0)
    assert summary["failures_injected"] == 3
    assert summary["failures_detected"] == 2
    latency = summary["detection_latency_ms"]
    assert latency["count"] == 2
    assert latency["mean"] == pytest.approx(500.0)
    assert latency["p50"] == pytest.approx(500.0, rel=LATENCY_RELATIVE_ERROR)
    empty = detection_summary([], [])
    assert empty["detection_latency_ms"]["mean"] is None


@pytest.mark.parametrize("seed", range(40))
def test_streamed_detection_matching_equals_the_search_over_all(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sites = ("ed", "ec", "er")
    injections, detections = [], []
    for site in sites:
        t = 0.0
        for _ in range(int(rng.integers(0, 40))):
            t += float(rng.exponential(8.0))
            down = float(rng.exponential(3.0))
            injections.append(Injection(site, round(t, 1), down))  # rounded: ties happen
            for _ in range(int(rng.integers(0, 3))):  # missed, detected, or detected twice
                detections.append(Detection(site, round(t + float(rng.exponential(2.0)), 1), "x"))
            t += down
        for _ in range(int(rng.integers(0, 4))):  # spurious
            detections.append(Detection(site, round(float(rng.uniform(0, t + 10)), 1), "y"))
    injections.sort(key=lambda i: i.ts)
    detections.sort(key=lambda d: d.ts)
    new = detection_summary(injections, detections, slack_s=2.0)
    old = detection_summary_all(injections, detections, slack_s=2.0)
    assert new["failures_injected"] == old["failures_injected"]
    assert new["failures_detected"] == old["failures_detected"]
    lat, exact = new["detection_latency_ms"], old["detection_latency_ms"]
    assert lat["count"] == exact["count"]
    if exact["count"] == 0:
        assert lat == exact
        return
    assert lat["mean"] == pytest.approx(exact["mean"], rel=1e-9)
    assert lat["std"] == pytest.approx(exact["std"], rel=1e-9, abs=1e-9)
    for q in ("p50", "p99"):  # the documented bound of the histogram
        assert abs(lat[q] - exact[q]) <= LATENCY_RELATIVE_ERROR * exact[q] + 1e-3


@pytest.mark.parametrize("seed", range(10))
def test_histogram_quantiles_are_within_their_bound(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.lognormal(3.0, 2.5, int(rng.integers(1, 3000))), np.zeros(seed)])
    hist = LogHistogram(relative_error=0.02, min_value=1e-3)
    for v in values:
        hist.add(float(v))
    for q in (0, 1, 25, 50, 90, 99, 99.9, 100):
        exact = float(np.percentile(values, q))
        assert abs(hist.quantile(q) - exact) <= 0.02 * exact + 1e-3  # type: ignore[operator]
    assert LogHistogram().quantile(50) is None


def test_running_stat_matches_numpy() -> None:
    x = np.random.default_rng(1).normal(1e6, 3.0, 10_000)  # a large mean: a naive sum of squares fails
    stat = RunningStat()
    for v in x:
        stat.add(float(v))
    assert stat.mean == pytest.approx(x.mean(), rel=1e-12)
    assert stat.std == pytest.approx(x.std(ddof=1), rel=1e-9)


# -------------------------------------------------------------------------------------------- bounded


def test_a_million_tasks_leave_the_meter_the_same_size(scenario: Scenario) -> None:
    """The meter's whole state (pickled) after 1,000,000 tasks is the size it was after 1,000: nothing in it
    grows with the run (its integers and floats are fixed-size)."""
    meter = TaskMeter(CostModel.from_scenario(scenario), scenario.site_types)
    attempts = (Attempt(EC, False, True), Attempt(ED, True, True))
    phases = (Phase("upload", 0.1, MD, EC), Phase("detect", 0.5, MD, EC), Phase("execute", 1.0, MD, ED))
    record = RunRecord(meter=meter)
    sizes = {}
    for k in range(1_000_000):
        meter.add(TaskMeasurement(k // 5, k % 5 // 2, True, k % 97 != 0, ED, phases, attempts))
        if k % 500 == 0:
            record.detected(Detection("ec", float(k), "offline status"))
        if k + 1 in (1_000, 1_000_000):
            sizes[k + 1] = len(pickle.dumps(record))
    assert meter.tasks == 1_000_000
    assert meter.response_time().count == 200_000
    assert len(meter._levels) <= 3  # the open application run's levels only
    assert len(record.detections) == MAX_RECORDED_DETECTIONS
    assert record.detection_count == 2000
    assert sizes[1_000_000] <= sizes[1_000] + len(pickle.dumps(record.detections)) + 64


def test_a_million_latencies_fill_a_bounded_histogram() -> None:
    hist = LogHistogram()
    rng = np.random.default_rng(2)
    for v in rng.lognormal(5.0, 4.0, 1_000_000):
        hist.add(float(v))
    bound = np.log(hist.max_value / hist.min_value) / np.log(1.01 / 0.99) + 2
    assert hist.count == 1_000_000
    assert hist.bins <= bound < 1750
