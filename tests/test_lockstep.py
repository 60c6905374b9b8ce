"""The lockstep loop's rules on hand-computed cases: mid-task failures, detector delays, checkpoints.

One application: GUI (phone, 100 MI) then WORK (offloadable, 600 MI, 6 KB in and out). Only ED (and, where
a test says so, ER) can host WORK. At the default time compression one model second is one trace hour.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgeoff.baselines import KubeHybridSettings
from edgeoff.engines import get_engine
from edgeoff.evaluation.failures import fixed_path
from edgeoff.evaluation.lockstep import DelayDetector, Inputs, Totals, run_lockstep
from edgeoff.evaluation.workload import RecordedTask, recorded_workload
from edgeoff.knowledge import detector_known_down
from edgeoff.scenario import Scenario, default_scenario

MD, ED, EC, ER, CD = range(5)
UP = 6 / 2500 + 0.015  # MD -> ED, and the download ED -> MD
UP_ER = 6 / 687.5 + 0.015
EX = 600 / 5000
GUI = 0.1


def _scenario(*, er_hosts: bool = False) -> Scenario:
    raw: dict[str, Any] = default_scenario().model_dump(by_alias=True)
    raw["apps"] = [
        {
            "name": "ONE",
            "probability": 1.0,
            "tasks": [
                {"name": "GUI", "memory_gb": 1, "class": "MODERATE", "offloadable": False},
                {"name": "WORK", "memory_gb": 1, "class": "CI", "offloadable": True, "after": ["GUI"]},
            ],
        }
    ]
    for site in raw["sites"]:
        if site["id"] in ("ec", "cd") or (site["id"] == "er" and not er_hosts):
            site["memory_gb"] = 0.5
    return Scenario.model_validate(raw)


def _run(
    engine: str, ed_changes: list[float], *, apps: int = 1, er_hosts: bool = False, ed_up0: bool = True
) -> Totals:
    scenario = _scenario(er_hosts=er_hosts)
    runs = [
        [RecordedTask(i, "ONE", 0, 100.0, 6.0, 6.0), RecordedTask(i, "ONE", 1, 600.0, 6.0, 6.0)]
        for i in range(apps)
    ]
    work = recorded_workload(scenario, runs)
    changes = [[[], ed_changes, [], [], []]]
    up0 = np.ones((1, 5), dtype=bool)
    up0[0, ED] = ed_up0
    path = fixed_path(up0, np.full((1, 5), -np.inf), changes)
    inputs = Inputs(
        path=path,
        detector=DelayDetector(1.5),
        mean_up_h=np.full((1, 5), np.inf),
        mean_down_h=np.zeros((1, 5)),
    )
    return run_lockstep(scenario, get_engine(engine), work, inputs, KubeHybridSettings())


def test_an_offload_that_stays_up_costs_upload_execution_and_download() -> None:
    t = _run("mdp-reactive", [])
    assert t.site_of[0].tolist() == [MD, ED]
    assert t.task_time_s[0].tolist() == pytest.approx([GUI, UP + EX + UP])
    assert t.failures[0] == 0
    # GUI computes at 0.9 W; WORK: the phone sends (1.3 W), idles while ED computes, receives (1.0 W)
    assert t.energy_j[0] == pytest.approx(GUI * 0.9 + UP * 1.3 + EX * 0.3 + UP * 1.0)


def test_a_site_failing_mid_execution_fails_the_attempt_when_the_detector_notices() -> None:
    start = GUI
    fail = start + UP + 0.07  # 70 ms into the execution, for good
    t = _run("mdp-reactive", [fail])
    wait = fail + 1.5 - (start + UP)  # from the end of the upload until the verdict
    assert t.failures[0] == 1
    assert t.site_of[0, 1] == MD  # Algorithm 2: the next best action is the phone
    assert t.task_time_s[0, 1] == pytest.approx(UP + wait + 0.6)
    # the phone sent from itself: it waits for the verdict at upload power (rule 5), then computes
    assert t.energy_j[0] == pytest.approx(GUI * 0.9 + UP * 1.3 + wait * 1.3 + 0.6 * 0.9)


def test_kubehybrid_resumes_from_its_last_checkpoint_on_the_next_best_site() -> None:
    start = GUI
    fail = start + UP + 0.07  # checkpoints every 20 ms of execution: 60 ms of work are saved
    t = _run("kubehybrid", [fail], er_hosts=True)
    wait = fail + 1.5 - (start + UP)
    kube = KubeHybridSettings()
    left = (600 - 0.06 * 5000) / 5000  # ER resumes with the remaining work
    assert t.site_of[0, 1] == ER
    assert t.failures[0] == 1
    expected = UP + wait + kube.restore_s + UP_ER + left * (1 + kube.checkpoint_overhead) + UP_ER
    assert t.task_time_s[0, 1] == pytest.approx(expected)
    # without checkpoints the same failure costs the whole execution again
    no_ck = _run("mdp-reactive", [fail], er_hosts=True)
    assert no_ck.site_of[0, 1] == ER
    assert no_ck.task_time_s[0, 1] == pytest.approx(UP + wait + UP_ER + EX + UP_ER)


def test_the_detector_view_is_delayed_carried_across_apps_and_cleared_on_recovery() -> None:
    # ED fails at 0.05 h, before WORK starts, and recovers at 5 h
    t = _run("mdp-reactive", [0.05, 5.0], apps=4)
    # app 0: the failure is 50 ms old, the detector has not spoken (1.5 s): ED is tried and fails at 1.55
    assert t.task_failures[0, 1] == 1
    assert t.task_time_s[0, 1] == pytest.approx(1.55 - GUI + 0.6)
    # apps 1 and 2 start before 5 h: ED is known down, no attempt
    assert t.task_failures[0, 3] == t.task_failures[0, 5] == 0
    assert t.site_of[0, 3] == t.site_of[0, 5] == MD
    clock = GUI + t.task_time_s[0, 1]
    for k in (1, 2):
        clock += t.task_time_s[0, 2 * k] + t.task_time_s[0, 2 * k + 1]
    assert clock < 5.0  # app 3 starts before the recovery too
    assert t.site_of[0, 7] == MD


def test_a_recovered_site_is_used_again_at_once() -> None:
    t = _run("mdp-reactive", [0.05, 2.5], apps=3)
    # app 0 fails on ED (1.55 h), then runs locally until 2.15 h; app 1 (starts 2.15 h) avoids ED;
    # app 2 starts at 2.15 + 0.7 = 2.85 h, after the recovery at 2.5 h: heartbeats resumed, ED is used
    assert t.site_of[0].tolist() == [MD, MD, MD, MD, MD, ED]
    assert t.failures[0] == 1


def test_an_outage_shorter_than_the_detector_is_never_noticed_the_deadline_ends_the_attempt() -> None:
    start = GUI
    t = _run("mdp-reactive", [start + UP + 0.05, start + UP + 0.5])  # down 0.45 h < 1.5 h
    deadline = 3.0 * (UP + EX + UP) + 0.5  # ResultDeadline's defaults, from the end of the upload
    assert t.failures[0] == 1
    assert t.task_time_s[0, 1] == pytest.approx(UP + deadline + 0.6)


def test_efpo_re_executes_locally_after_a_failure() -> None:
    fail = GUI + UP + 0.07
    t = _run("efpo", [fail], er_hosts=True)
    assert t.site_of[0, 1] == MD  # not ER, although ER is up
    assert t.failures[0] == 1


def test_detector_known_down_needs_the_delay_and_clears_when_up() -> None:
    up = np.array([[False, False, True]])
    since = np.array([[0.0, 1.0, 0.0]])
    assert detector_known_down(up, since, 1.5, 1.5).tolist() == [[True, False, False]]
    assert detector_known_down(up, since, 2.5, 1.5).tolist() == [[True, True, False]]
