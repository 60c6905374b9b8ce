"""The agent's own record stays bounded: detections are counted, the first kept and every one appended to
its detection log (what `edgeoff up` reads); the twin record is off unless asked."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from edgeoff.engines import get_engine
from edgeoff.scenario import default_scenario
from edgeoff.wire import topics
from edgeoff.wire.mqtt import Message
from launcher.up.report import read_detections
from mobile_agent.daemon import MobileAgent
from mobile_agent.meter import Detection
from mobile_agent.planner import Planner, PlannerSettings
from mobile_agent.settings import AgentSettings


def make_agent(**settings: object) -> MobileAgent:
    scenario = default_scenario()
    clock = iter(float(t) for t in range(1000, 10_000))
    return MobileAgent(
        settings=AgentSettings(agent="md", **settings),  # type: ignore[arg-type]
        scenario=scenario,
        planner=Planner(scenario, get_engine("mdp-svr"), PlannerSettings()),
        stop=threading.Event(),
        wall_clock=lambda: next(clock),
    )


def flap(agent: MobileAgent, site: str, times: int) -> None:
    """`site` goes online then offline, `times` times (each offline status: a detection)."""
    for k in range(times):
        for state in ("online", "offline"):
            payload = json.dumps({"state": state, "session": 1, "ts": float(k)}).encode()
            agent._handle(
                Message(topic=topics.site_topic(site, "status"), payload=payload, qos=1, retain=False)
            )


def test_every_detection_is_logged_and_the_record_keeps_the_first(tmp_path: Path) -> None:
    log = tmp_path / "agent.detections.jsonl"
    agent = make_agent(detection_log=log)
    flap(agent, "ec", 3)
    flap(agent, "cd", 1)
    logged = read_detections(log)
    assert [(d.site, d.how) for d in logged] == [("ec", "offline status")] * 3 + [("cd", "offline status")]
    assert logged == agent.record.detections
    results = agent.results()
    assert results["detections_count"] == 4
    assert results["twin"] is None  # record_twin is off


def test_a_detection_log_that_cannot_be_written_is_counted(tmp_path: Path) -> None:
    agent = make_agent(detection_log=tmp_path)  # a folder: every append fails
    flap(agent, "ec", 2)
    assert agent.counters.snapshot()["detection_log_errors"] == 2
    assert agent.record.detection_count == 2


def test_detections_are_read_in_time_order_and_a_cut_line_skipped(tmp_path: Path) -> None:
    path = tmp_path / "agent.detections.jsonl"
    path.write_text('{"site": "ed", "ts": 5.0, "how": "x"}\n{"site": "ec", "ts": 2.0, "how": "y"}\n{"site"')
    assert read_detections(path) == [Detection("ec", 2.0, "y"), Detection("ed", 5.0, "x")]
    assert read_detections(tmp_path / "missing.jsonl") == []
