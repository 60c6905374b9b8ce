# ruff: noqa: F811  (start_agent is a fixture imported from test_mobile_agent)
"""The agent under faults: results read back from Redis, busy and store-unavailable answers, fencing, and
avoiding a site that missed a deadline (issue 10). The sites here are scripted by the test."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis

from edgeoff.wire import topics
from edgeoff.wire.codec import decode_msgpack, encode_json, encode_msgpack
from edgeoff.wire.messages import ERROR_BUSY, ERROR_STORE, SiteStatus, TaskRequest, TaskResult
from edgeoff.wire.store import Claim, TaskStore

from .conftest import Observer
from .test_mobile_agent import SITES, finished, start_agent  # noqa: F401  (start_agent: a fixture)

if TYPE_CHECKING:
    import subprocess

    from .conftest import Processes, Server

pytestmark = pytest.mark.timeout(90)

Mode = str  # "stored": stored in Redis, never published; "busy"; "store": store unavailable; "silent"


class ScriptedSites:
    """Four fake sites: online statuses, and an answer to every task request according to `mode`."""

    def __init__(self, mosquitto: Server, redis_server: Server, mode: Mode) -> None:
        self.mode = mode
        self.requests: list[TaskRequest] = []
        self.store = TaskStore(redis.Redis(host=redis_server.host, port=redis_server.port))
        self.obs = Observer(mosquitto, "scripted-sites").start(
            *(topics.site_topic(s, "tasks") for s in SITES)
        )
        for site in SITES:
            status = SiteStatus(state="online", session=1, ts=0.0)
            self.obs.publish(topics.site_topic(site, "status"), encode_json(status), retain=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        seen = 0
        while not self._stop.wait(0.01):
            self.obs._drain()
            messages = self.obs.messages
            for message in messages[seen:]:
                request = decode_msgpack(TaskRequest, message.payload)
                self.requests.append(request)
                site = message.topic.split("/")[-2]
                self._answer(site, request)
            seen = len(messages)

    def _answer(self, site: str, request: TaskRequest) -> None:
        def result(ok: bool, error: str | None = None) -> TaskResult:
            return TaskResult(
                task_id=request.task_id,
                attempt=request.attempt,
                site=site,
                session=1,
                ok=ok,
                exec_s=0.0,
                error=error,
            )

        if self.mode == "stored":
            self.store.complete_task(result(True))  # stored, then the site "dies" before publishing
        elif self.mode in ("busy", "store"):
            error = ERROR_BUSY if self.mode == "busy" else ERROR_STORE
            self.obs.client.publish(
                topics.results(request.agent), encode_msgpack(result(False, error)), qos=1
            )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.obs.stop()
        self.store.close()


@pytest.fixture
def scripted(mosquitto: Server, redis_server: Server) -> Iterator[Callable[[Mode], ScriptedSites]]:
    made: list[ScriptedSites] = []

    def make(mode: Mode) -> ScriptedSites:
        made.append(ScriptedSites(mosquitto, redis_server, mode))
        return made[-1]

    yield make
    for sites in made:
        sites.close()


AgentStarter = Callable[..., tuple["subprocess.Popen[bytes]", Path]]


def _run(start_agent: AgentStarter, processes: Processes, *args: str) -> dict[str, Any]:
    proc, out = start_agent("--apps", "2", "--engine", "mdp-reactive", *args)
    return finished(proc, out, processes, 80)


def test_a_result_stored_but_never_published_is_read_back_before_falling_back(
    scripted: Callable[[Mode], ScriptedSites],
    start_agent: AgentStarter,
    processes: Processes,
) -> None:
    sites = scripted("stored")
    record = _run(start_agent, processes)
    assert sites.requests, "the agent offloaded nothing"
    counters = record["counters"]
    assert counters.get("results_read_back", 0) >= 1
    assert counters.get("fallbacks.deadline", 0) == 0  # every remote attempt completed from Redis
    assert record["tasks_lost"] == 0


def test_busy_and_store_unavailable_answers_are_fallback_reasons_and_the_task_still_runs(
    scripted: Callable[[Mode], ScriptedSites],
    start_agent: AgentStarter,
    processes: Processes,
) -> None:
    sites = scripted("busy")
    record = _run(start_agent, processes)
    assert record["counters"].get("fallbacks.busy", 0) >= 1
    assert record["tasks_lost"] == 0
    sites.mode = "store"
    record = _run(start_agent, processes, "--seed", "8", "--store-backoff-s", "0")
    counters = record["counters"]
    assert counters.get("fallbacks.store_unavailable", 0) >= 2  # it tried the sites again after the back-off
    assert counters.get("fallbacks.deadline", 0) == 0  # never a wait for a deadline
    assert record["tasks_lost"] == 0


def test_a_site_that_missed_a_deadline_is_avoided_and_its_attempt_fenced(
    scripted: Callable[[Mode], ScriptedSites],
    start_agent: AgentStarter,
    processes: Processes,
    redis_server: Server,
) -> None:
    sites = scripted("silent")  # a hung site: statuses online, nothing answers
    record = _run(start_agent, processes, "--deadline-factor", "1")
    counters = record["counters"]
    missed = counters.get("deadlines_missed", 0)
    assert missed >= 1
    assert record["tasks_lost"] == 0
    # each silent site was tried once, then avoided until heard from again: never a second deadline there
    tried = [(r.task_id, r.attempt) for r in sites.requests]
    assert missed == len(tried) <= len(SITES)
    store = TaskStore(redis.Redis(host=redis_server.host, port=redis_server.port))
    try:
        for task_id, attempt in tried:
            assert store.claim_outcomes("ed", [_claim(task_id, attempt)]) == ["fenced"]
    finally:
        store.close()


def _claim(task_id: str, attempt: int) -> Claim:
    return Claim(task_id, attempt, 1000)
