"""No value in a message can make a daemon's handler raise (issue 14): hypothesis feeds the message handlers
of the site daemon, the prediction worker and the agent with generated payloads, near and far outside the
bounds of every field (1e308, inf, NaN, 2**64 - 1, -2**63, wrong types, extra fields), then runs the
arithmetic that follows an accepted message (claim leases, the agent's policy). The project's decoder is
the oracle: a payload it refuses is dropped and counted once, one it accepts is used, and nothing raises.

The daemons run in-process without a network (their MQTT client is never started) and with in-memory
stores that check what the daemon hands them (a lease in range, a prediction inside its bounds).
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edgeoff.cost import CostModel
from edgeoff.engines import get_engine
from edgeoff.errors import EdgeoffError
from edgeoff.scenario import default_scenario
from edgeoff.wire import topics
from edgeoff.wire.codec import decode_json, decode_msgpack
from edgeoff.wire.messages import (
    MAX_COUNTER,
    Heartbeat,
    Prediction,
    SiteProfile,
    SiteStatus,
    TaskRequest,
    TaskResult,
)
from edgeoff.wire.mqtt import Message
from edgeoff.wire.sessions import SessionBound
from edgeoff.wire.store import MAX_LEASE_MS, Claim, ClaimOutcome
from mobile_agent.daemon import AgentSettings, MobileAgent
from mobile_agent.planner import Planner, PlannerSettings
from prediction_worker.daemon import PredictionWorker, WorkerSettings
from prediction_worker.detector import FixedTimeoutDetector
from site_daemon.daemon import SiteDaemon, SiteSettings
from site_daemon.execution import execution_time_s

AGENT = "agent-1"
EXAMPLES = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# numbers at, inside and far outside every bound; msgpack encodes ints in [-2**63, 2**64 - 1]
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -0.0, 1, -1, 1e-300, 1e8, 1e8 + 1, 3600.0, 3600.1, 4.1e9, 1e308, 2**53, 2**53 - 1]),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
)
JSON_NUMBERS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([0, -1, 2**53, 2**53 - 1, 1e308, 10**30]),
)
IDS = st.one_of(
    st.sampled_from(["ed", "ec", "t-1", "agent-1", "+", "#", "A", "", "a/b"]), st.text(max_size=70)
)
ANY = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=20), st.binary(max_size=20))


def fields(valid: Mapping[str, Any], numbers: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A valid message's fields, each kept, replaced by a hostile number or value, or dropped; an extra
    field sometimes."""

    def one(name: str, value: Any) -> st.SearchStrategy[Any]:
        if isinstance(value, bool):
            return st.one_of(st.just(value), ANY)
        if isinstance(value, int | float):
            return st.one_of(st.just(value), numbers, ANY)
        if name in ("task_id", "site", "agent"):
            return st.one_of(st.just(value), IDS)
        return st.one_of(st.just(value), ANY)

    present = st.fixed_dictionaries({k: one(k, v) for k, v in valid.items()})
    return st.tuples(present, st.sets(st.sampled_from(sorted(valid)), max_size=2), st.booleans()).map(
        lambda t: {**{k: v for k, v in t[0].items() if k not in t[1]}, **({"evil": 1} if t[2] else {})}
    )


def packed(data: dict[str, Any]) -> bytes:
    out: bytes = msgpack.packb(data, use_bin_type=True)
    return out


def jsoned(data: dict[str, Any]) -> bytes:
    import json

    return json.dumps(data, default=repr).encode()  # bytes become text: JSON has no bytes


def refused(decode: Any, model: type[Any], payload: bytes) -> bool:
    try:
        decode(model, payload)
    except EdgeoffError:
        return True
    return False


# ------------------------------------------------------------------------------------------ fakes


class CheckingTaskStore:
    """A TaskStore in memory that notes whatever the daemon hands it out of range (claims are also made
    on the site's worker threads, where an assertion would only fail that task: the test checks `wrong`)."""

    def __init__(self) -> None:
        self.claims: dict[tuple[str, int], str] = {}
        self.wrong: list[str] = []
        self.agents: list[str] = []

    def _check_lease(self, lease_ms: int) -> None:
        if not (isinstance(lease_ms, int) and 0 < lease_ms <= MAX_LEASE_MS):
            self.wrong.append(f"lease {lease_ms!r}")

    def claim_outcomes(self, site: str, claims: Sequence[Claim]) -> list[ClaimOutcome]:
        out: list[ClaimOutcome] = []
        for claim in claims:
            self._check_lease(claim.lease_ms)
            self.agents.append(claim.agent)  # whose fence the site reads: the request's agent
            key = (claim.task_id, claim.attempt)
            out.append("taken" if key in self.claims else "claimed")
            self.claims.setdefault(key, site)
        return out

    def renew(self, task_id: str, attempt: int, site: str, lease_ms: int, *, agent: str) -> bool:
        self._check_lease(lease_ms)
        return True

    def complete_task(self, result: TaskResult) -> bool:
        return True

    def next_session(self, site: str) -> int:
        return 1

    def session(self, site: str) -> int | None:
        return 5

    def close(self) -> None:
        pass


class CheckingPredictionStore:
    def __init__(self) -> None:
        self.version = 0

    def session(self, site: str) -> int | None:
        return 5

    def next_epoch(self) -> int:
        return 3

    def write_prediction(
        self,
        site: str,
        availability: float,
        model: str,
        ts: float,
        worker: str,
        error_mae: float | None = None,
        *,
        epoch: int = 0,
        min_version: int = 1,
    ) -> int:
        assert 0.0 <= availability <= 1.0
        assert math.isfinite(ts)
        self.version = max(self.version + 1, min_version)
        return self.version

    def append_verdict(self, site: str, record: Mapping[str, object], keep: int) -> None:
        pass

    def append_window(self, site: str, availability: float, keep: int) -> None:
        pass

    def windows(self, site: str, keep: int) -> list[float]:
        return []

    def read_prediction(self, site: str) -> Prediction | None:
        return None

    def write_counters(self, worker: str, counters: Mapping[str, int]) -> None:
        pass

    def close(self) -> None:
        pass


def dropped(counters: Mapping[str, int]) -> int:
    """Incoming messages dropped (not the publishes a daemon without a connection could not send)."""
    return sum(n for k, n in counters.items() if k.startswith(("in_dropped.", "tasks_dropped.")))


# ------------------------------------------------------------------------------------------ site


@pytest.fixture(scope="module")
def site() -> SiteDaemon:
    scenario = default_scenario()
    index = scenario.site_ids.index("ed")
    model = CostModel.from_scenario(scenario)
    daemon = SiteDaemon(
        settings=SiteSettings(site="ed", execution_scale=1e-9),  # emulated tasks end at once
        site=scenario.sites[index],
        heartbeat_s=0.15,
        compute_s=lambda mi: execution_time_s(model, index, mi),
        store=CheckingTaskStore(),  # type: ignore[arg-type]
        stop=threading.Event(),
    )
    daemon._session = 1  # serving, as after a connection
    return daemon


VALID_TASK = {
    "task_id": "t-1", "attempt": 0, "agent": AGENT, "app": "a", "task": "b", "mi": 500.0, "input_kb": 4.0,
    "output_kb": 4.0, "memory_gb": 1.0, "handler": None, "payload": None, "deadline_s": 5.0,
}  # fmt: skip


@EXAMPLES
@given(data=fields(VALID_TASK, NUMBERS), n=st.integers(0, 10**9))
@example(data={**VALID_TASK, "agent": "ed"}, n=7)  # another agent's valid id: its own fence is read
def test_the_site_drops_or_claims_every_task_and_never_raises(
    site: SiteDaemon, data: dict[str, Any], n: int
) -> None:
    if data.get("task_id") == "t-1":
        data["task_id"] = f"t-{n}"  # a fresh attempt each time, so an accepted one is claimed
    payload = packed(data)
    before = dict(site.counters.snapshot())
    agents_before = len(site.store.agents)  # type: ignore[attr-defined]
    message = Message(topic=topics.site_topic("ed", "tasks"), payload=payload, qos=1, retain=False)
    site._handle_batch([message, message])  # a duplicate in the same batch, too
    deadline = time.monotonic() + 10.0
    while site._in_pool or site._queue:  # the tasks that went to the worker pool: until they are done
        assert time.monotonic() < deadline, "the site's worker pool never finished"
        try:
            site._handle_batch([site.inbox.get(timeout=0.1)])
        except queue.Empty:
            continue
    assert site.store.wrong == []  # type: ignore[attr-defined]
    after = site.counters.snapshot()
    if refused(decode_msgpack, TaskRequest, payload):
        assert dropped(after) - dropped(before) == 2
    else:
        # any valid agent id may send a task (the broker lets every agent account publish tasks), and the
        # site reads the fence of the agent the request names, never another's
        agent = decode_msgpack(TaskRequest, payload).agent
        assert set(site.store.agents[agents_before:]) <= {agent}  # type: ignore[attr-defined]
        claimed = after.get("tasks_claimed", 0) - before.get("tasks_claimed", 0)
        duplicate = after.get("tasks_duplicate", 0) - before.get("tasks_duplicate", 0)
        assert (claimed, duplicate) in ((1, 1), (0, 2))


# ------------------------------------------------------------------------------------------ worker


@pytest.fixture(scope="module")
def worker() -> PredictionWorker:
    return PredictionWorker(
        settings=WorkerSettings(),
        detector=FixedTimeoutDetector(0.15, 10),
        store=CheckingPredictionStore(),  # type: ignore[arg-type]
        stop=threading.Event(),
    )


@EXAMPLES
@given(
    beat=fields({"session": 1, "seq": 0, "mono_ts": 1.0}, NUMBERS),
    status=fields({"state": "online", "session": 2, "ts": 1.7e9}, JSON_NUMBERS),
    prediction=fields(
        {"site": "ed", "availability": 0.5, "version": 1, "epoch": 1, "model": "m", "ts": 1.0}, JSON_NUMBERS
    ),
)
def test_the_worker_drops_or_uses_every_message_and_never_raises(
    worker: PredictionWorker, beat: dict[str, Any], status: dict[str, Any], prediction: dict[str, Any]
) -> None:
    for kind, payload, model, decode in (
        ("heartbeat", packed(beat), Heartbeat, decode_msgpack),
        ("status", jsoned(status), SiteStatus, decode_json),
    ):
        before = dropped(worker.counters.snapshot())
        worker.handle(Message(topic=topics.site_topic("ed", kind), payload=payload, qos=0, retain=False))  # type: ignore[arg-type]
        assert dropped(worker.counters.snapshot()) - before == int(refused(decode, model, payload))
    before = dropped(worker.counters.snapshot())
    payload = jsoned(prediction)
    worker.handle(Message(topic=topics.prediction("ed"), payload=payload, qos=1, retain=False))
    bad = refused(decode_json, Prediction, payload) or prediction.get("site") != "ed"
    assert dropped(worker.counters.snapshot()) - before == int(bad)
    worker.poll(worker.clock() + 100.0)  # verdicts, windows, repairs and stores with whatever was accepted


# ------------------------------------------------------------------------------------------ agent


@pytest.fixture(scope="module")
def agent() -> MobileAgent:
    scenario = default_scenario()
    planner = Planner(scenario, get_engine("mdp-svr"), PlannerSettings())
    return MobileAgent(
        settings=AgentSettings(agent=AGENT),
        scenario=scenario,
        planner=planner,
        stop=threading.Event(),
        sessions=SessionBound(lambda site: 5),
    )


@EXAMPLES
@given(
    status=fields({"state": "offline", "session": 3, "ts": 1.0}, JSON_NUMBERS),
    profile=fields(
        {"site": "ec", "type": "EC", "mips": 8000.0, "memory_gb": 8.0, "storage_gb": 150.0}, JSON_NUMBERS
    ),
    prediction=fields(
        {"site": "ec", "availability": 0.5, "version": 1, "epoch": 0, "model": "m", "ts": 1.0}, JSON_NUMBERS
    ),
    result=fields(
        {"task_id": "t-1", "attempt": 0, "site": "ec", "session": 1, "ok": True, "exec_s": 0.1}, NUMBERS
    ),
)
def test_the_agent_drops_or_uses_every_message_and_never_raises(
    agent: MobileAgent,
    status: dict[str, Any],
    profile: dict[str, Any],
    prediction: dict[str, Any],
    result: dict[str, Any],
) -> None:
    cases = [
        (topics.site_topic("ec", "status"), jsoned(status), SiteStatus, decode_json),
        (topics.site_topic("ec", "profile"), jsoned(profile), SiteProfile, decode_json),
        (topics.prediction("ec"), jsoned(prediction), Prediction, decode_json),
        (topics.results(AGENT, "ec"), packed(result), TaskResult, decode_msgpack),
    ]
    for topic, payload, model, decode in cases:
        before = dropped(agent.counters.snapshot())
        agent._handle(Message(topic=topic, payload=payload, qos=1, retain=False))
        assert dropped(agent.counters.snapshot()) - before == int(refused(decode, model, payload))
    # what was accepted feeds the engines: the policy, availability and memory arithmetic must hold
    snapshot = agent.planner.policy(agent.view)
    assert all(math.isfinite(v) for v in agent.view.forecasts())
    assert snapshot is not None
    assert (agent.view.memory_gb() > 0).all()


def test_counters_stay_exact_below_the_json_limit() -> None:
    assert decode_json(SiteStatus, jsoned({"state": "online", "session": MAX_COUNTER, "ts": 0})).session == (
        MAX_COUNTER
    )
    assert refused(decode_json, SiteStatus, jsoned({"state": "online", "session": MAX_COUNTER + 1, "ts": 0}))
