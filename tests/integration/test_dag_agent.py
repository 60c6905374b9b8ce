"""`edgeoff-agent --engine dag-selected` against real site daemons, Mosquitto and Redis: the DAG-aware plan
runs whole applications live, and Algorithm 2 follows it when a site dies mid-task."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from edgeoff.wire import topics
from edgeoff.wire.codec import decode_msgpack
from edgeoff.wire.messages import TaskRequest

from .test_mobile_agent import StartSite, finished, latest_status, start_agent, start_sites

if TYPE_CHECKING:
    from .conftest import Observer, Processes

__all__ = ["start_agent"]  # the fixture, shared with test_mobile_agent

pytestmark = pytest.mark.timeout(60)


def test_dag_selected_runs_applications_with_nothing_lost(
    start_site: StartSite, start_agent: Any, observer: Callable[..., Observer], processes: Processes
) -> None:
    obs = observer("edgeoff/v1/#")
    start_sites(start_site, obs)
    proc, out = start_agent("--apps", "10", "--engine", "dag-selected")
    record = finished(proc, out, processes, 40)
    assert record["engine"] == "dag-selected"
    assert record["apps_completed"] == 10
    assert record["tasks_lost"] == 0
    assert record["offloads_per_1000_apps"] > 0


def test_dag_selected_falls_back_along_its_plan_when_a_site_dies(
    start_site: StartSite, start_agent: Any, observer: Callable[..., Observer], processes: Processes
) -> None:
    obs = observer("edgeoff/v1/#")
    procs = start_sites(start_site, obs, env={"EDGEOFF_SITE_EXECUTION_SCALE": "20"})
    proc, out = start_agent(
        "--apps", "3", "--engine", "dag-selected", env={"EDGEOFF_AGENT_DEADLINE_FACTOR": "100"}
    )
    first = obs.wait(lambda o: [m for m in o.messages if m.topic.endswith("/tasks")], 20, "a task sent")[0]
    victim = topics.parse_topic(first.topic).id
    task = decode_msgpack(TaskRequest, first.payload)
    procs[victim].send_signal(signal.SIGKILL)
    obs.wait(lambda o: latest_status(o, victim).state == "offline", 5, f"{victim} offline")  # type: ignore[union-attr]
    record = finished(proc, out, processes, 45)
    assert record["tasks_lost"] == 0
    assert record["apps_completed"] == 3
    fallback = next(f for f in record["fallback_log"] if f["task_id"] == task.task_id)
    assert fallback["from"] == victim
    assert fallback["to"] not in (None, victim)
    to_victim = [
        decode_msgpack(TaskRequest, m.payload).task_id
        for m in obs.messages
        if m.topic == topics.site_topic(victim, "tasks")
    ]
    assert set(to_victim) == {task.task_id}  # known down from then on: never planned again
