"""The site daemon against a real Mosquitto and a real Redis (started by the fixtures)."""

from __future__ import annotations

import hashlib
import itertools
import json
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import msgpack
import pytest

from edgeoff.scenario import default_scenario
from edgeoff.wire import topics
from edgeoff.wire.codec import decode_json, decode_msgpack, encode_json, encode_msgpack
from edgeoff.wire.messages import Heartbeat, SiteProfile, SiteStatus, TaskRequest, TaskResult
from edgeoff.wire.store import Claim, TaskStore
from site_daemon.daemon import SiteDaemon, SiteSettings
from site_daemon.execution import decode_scan_output, encode_scan_request
from site_daemon.failure_injection import Period

from .conftest import wait_for

if TYPE_CHECKING:
    from .conftest import Observer, Processes, Server

pytestmark = pytest.mark.timeout(30)

AGENT = "agent-1"
RESULTS = topics.results(AGENT)
StartSite = Callable[..., subprocess.Popen[bytes]]


def task(task_id: str, *, attempt: int = 0, mi: float = 250.0, **fields: object) -> TaskRequest:
    base: dict[str, object] = {
        "task_id": task_id,
        "attempt": attempt,
        "agent": AGENT,
        "app": "antivirus",
        "task": "scan",
        "mi": mi,
        "input_kb": 10.0,
        "output_kb": 1.0,
        "memory_gb": 1.0,
        "deadline_s": 10.0,
    }
    return TaskRequest.model_validate({**base, **fields})


def statuses(obs: Observer, site: str) -> list[SiteStatus]:
    return [decode_json(SiteStatus, m.payload) for m in obs.on(topics.site_topic(site, "status"))]


def results(obs: Observer) -> list[TaskResult]:
    return [decode_msgpack(TaskResult, m.payload) for m in obs.on(RESULTS)]


def result_of(obs: Observer, task_id: str) -> TaskResult | None:
    return next((r for r in results(obs) if r.task_id == task_id), None)


def online(obs: Observer, site: str, session: int | None = None) -> SiteStatus | None:
    seen = statuses(obs, site)
    status = seen[-1] if seen else None
    if status is None or status.state != "online" or (session is not None and status.session != session):
        return None
    return status


def test_site_comes_online_with_profile_and_heartbeats(
    start_site: StartSite, observer: Callable[..., Observer]
) -> None:
    obs = observer("edgeoff/v1/#")
    start_site("ed")
    status = obs.wait(lambda o: online(o, "ed"), 15, "ed online")
    assert status.session == 1
    profile = obs.wait(lambda o: o.on(topics.site_topic("ed", "profile")), 5, "ed profile")[-1]
    assert decode_json(SiteProfile, profile.payload) == SiteProfile(
        site="ed", type="ED", mips=5000, memory_gb=8, storage_gb=300
    )
    beats_topic = topics.site_topic("ed", "heartbeat")
    messages = obs.wait(lambda o: len(o.on(beats_topic)) >= 15 and o.on(beats_topic), 10, "15 heartbeats")
    beats = [decode_msgpack(Heartbeat, m.payload) for m in messages]
    assert all(b.session == 1 for b in beats)
    assert [b.seq for b in beats] == list(range(beats[0].seq, beats[0].seq + len(beats)))
    intervals = [b.mono_ts - a.mono_ts for a, b in itertools.pairwise(beats)]
    assert statistics.median(intervals) == pytest.approx(0.150, abs=0.02)
    assert not any(m.retain for m in messages)
    late = observer(topics.site_topic("ed", "status"))  # a late subscriber gets the retained status
    retained = late.wait(lambda o: o.on(topics.site_topic("ed", "status")), 5, "retained status")[0]
    assert retained.retain
    assert decode_json(SiteStatus, retained.payload).state == "online"


def test_runs_a_task_and_returns_its_result(
    start_site: StartSite, observer: Callable[..., Observer], store: TaskStore
) -> None:
    obs = observer("edgeoff/v1/#")
    start_site("ed")
    obs.wait(lambda o: online(o, "ed"), 15, "ed online")
    obs.publish(topics.site_topic("ed", "tasks"), encode_msgpack(task("t-1", mi=500)))
    result = obs.wait(lambda o: result_of(o, "t-1"), 10, "the result of t-1")
    assert result.ok
    assert result.site == "ed"
    assert result.session == 1
    assert result.exec_s == pytest.approx(500 / 5000)
    assert store.get_result("t-1", 0) == result
    assert store.claim_owner("t-1", 0) == "ed"


def test_runs_the_antivirus_handler_on_a_payload(
    start_site: StartSite, observer: Callable[..., Observer]
) -> None:
    obs = observer(RESULTS, topics.site_topic("ec", "status"))
    start_site("ec")
    obs.wait(lambda o: online(o, "ec"), 15, "ec online")
    data = bytes(range(256)) * 64  # 16 KiB: four 4 KiB chunks, all equal
    bad = hashlib.sha256(data[:4096]).digest()
    request = task("scan-1", handler="antivirus.scan", payload=encode_scan_request(data, [bad]))
    obs.publish(topics.site_topic("ec", "tasks"), encode_msgpack(request))
    result = obs.wait(lambda o: result_of(o, "scan-1"), 10, "the scan result")
    assert result.ok, result.error
    assert result.output is not None
    assert decode_scan_output(result.output) == [0, 4096, 8192, 12288]


def test_a_duplicated_delivery_runs_once(start_site: StartSite, observer: Callable[..., Observer]) -> None:
    obs = observer(RESULTS, topics.site_topic("ed", "status"))
    start_site("ed")
    obs.wait(lambda o: online(o, "ed"), 15, "ed online")
    tasks_topic = topics.site_topic("ed", "tasks")
    for _ in range(3):
        obs.publish(tasks_topic, encode_msgpack(task("dup-1", mi=100)))
    obs.publish(
        tasks_topic, encode_msgpack(task("barrier-1", mi=0))
    )  # one worker, in order: runs after dup-1
    obs.wait(lambda o: result_of(o, "barrier-1"), 10, "the barrier task")
    assert [r.task_id for r in results(obs)].count("dup-1") == 1
    # a new attempt of the same task is a different unit of work and runs
    obs.publish(tasks_topic, encode_msgpack(task("dup-1", attempt=1, mi=0)))
    obs.wait(lambda o: any(r.task_id == "dup-1" and r.attempt == 1 for r in results(o)), 10, "attempt 1")


def test_two_sites_racing_for_one_task_run_it_once(
    start_site: StartSite, observer: Callable[..., Observer], store: TaskStore
) -> None:
    obs = observer(RESULTS, "edgeoff/v1/sites/+/status")
    start_site("ed")
    start_site("ec")
    obs.wait(lambda o: online(o, "ed") and online(o, "ec"), 15, "ed and ec online")
    for n in range(5):
        request = encode_msgpack(task(f"race-{n}", mi=50))
        obs.publish(topics.site_topic("ed", "tasks"), request)
        obs.publish(topics.site_topic("ec", "tasks"), request)
    for site in ("ed", "ec"):
        obs.publish(topics.site_topic(site, "tasks"), encode_msgpack(task(f"barrier-{site}", mi=0)))
    obs.wait(lambda o: result_of(o, "barrier-ed") and result_of(o, "barrier-ec"), 10, "both barriers")
    for n in range(5):
        runs = [r for r in results(obs) if r.task_id == f"race-{n}"]
        assert len(runs) == 1, runs
        assert store.claim_owner(f"race-{n}", 0) == runs[0].site


def test_garbage_on_the_tasks_topic_is_dropped_and_the_site_keeps_serving(
    start_site: StartSite, observer: Callable[..., Observer], processes: Processes
) -> None:
    obs = observer(RESULTS, topics.site_topic("ed", "status"))
    proc = start_site("ed", env={"EDGEOFF_SITE_MAX_MESSAGE_BYTES": "4096"})
    obs.wait(lambda o: online(o, "ed"), 15, "ed online")
    valid = task("ok-1", mi=0).model_dump()
    garbage = [
        b"",
        b"\xc1",  # never used in msgpack
        b"not msgpack at all",
        msgpack.packb([1, 2, 3]),
        msgpack.packb({"hello": "world"}),
        msgpack.packb({**valid, "extra": 1}),
        msgpack.packb({**valid, "mi": "500"}),  # wrong type
        msgpack.packb({**valid, "attempt": -1}),
        msgpack.packb({**valid, "mi": float("nan")}),
        msgpack.packb({**valid, "payload": b"x" * 5000}),  # oversized
        msgpack.packb({1: 2}),  # non-string map key
        msgpack.ExtType(5, b"x") and msgpack.packb(msgpack.ExtType(5, b"x")),
        b"\x91" * 100_000,  # deeply nested arrays (and oversized)
        *(msgpack.packb({**valid, "task_id": bad}) for bad in ("+", "#", "../etc", "a/b", "A", "")),
        *(msgpack.packb({**valid, "agent": bad}) for bad in ("+", "#", "../x")),
    ]
    tasks_topic = topics.site_topic("ed", "tasks")
    for payload in garbage:
        obs.publish(tasks_topic, payload)
    obs.publish(tasks_topic, encode_msgpack(task("ok-1", mi=0)))
    result = obs.wait(lambda o: result_of(o, "ok-1"), 10, "the valid task after the garbage")
    assert result.ok
    assert proc.poll() is None
    assert [r.task_id for r in results(obs)] == ["ok-1"]
    log = processes.log_of(proc)
    assert log.count("dropped a ") == len(garbage)
    assert "Traceback" not in log


def test_sigkill_fires_the_will_and_a_restart_gets_a_new_session(
    start_site: StartSite, observer: Callable[..., Observer]
) -> None:
    obs = observer(topics.site_topic("er", "status"))
    proc = start_site("er")
    first = obs.wait(lambda o: online(o, "er"), 15, "er online")
    proc.kill()
    proc.wait(5)
    offline = obs.wait(lambda o: [s for s in statuses(o, "er") if s.state == "offline"], 10, "the last will")[
        -1
    ]
    assert offline.session == first.session
    start_site("er")
    second = obs.wait(
        lambda o: (s := online(o, "er")) is not None and s.session > first.session and s,
        15,
        "er online again with a new, higher session",
    )
    assert second.session > first.session


def test_sigterm_publishes_offline_and_exits_zero(
    start_site: StartSite, observer: Callable[..., Observer]
) -> None:
    obs = observer(topics.site_topic("cd", "status"))
    proc = start_site("cd")
    status = obs.wait(lambda o: online(o, "cd"), 15, "cd online")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    last = obs.wait(
        lambda o: statuses(o, "cd")[-1].state == "offline" and statuses(o, "cd")[-1], 5, "offline"
    )
    assert last.session == status.session
    assert len(statuses(obs, "cd")) == 2  # online, offline: no will on a clean disconnect


def test_injected_failures_go_offline_and_come_back_with_new_sessions(
    start_site: StartSite, observer: Callable[..., Observer]
) -> None:
    # ec follows LANL node 19_1 in DS1 (MTTF ~87 h, MTTR ~8.7 h); 100 trace hours per wall second
    obs = observer(topics.site_topic("ec", "status"))
    start_site(
        "ec",
        "--dataset",
        "DS1",
        "--inject-failures",
        "--time-compression",
        "360000",
        "--seed",
        "7",
        "--failure-mode",
        "crash",
    )
    obs.wait(lambda o: online(o, "ec", 1), 15, "ec online")

    def recovered(o: Observer) -> bool:
        seen = statuses(o, "ec")
        return any(s.state == "offline" and s.session == 1 for s in seen) and any(
            s.state == "online" and s.session >= 2 for s in seen
        )

    obs.wait(recovered, 20, "an injected failure (will of session 1) and a recovery (session >= 2)")
    sessions = [s.session for s in statuses(obs, "ec") if s.state == "online"]
    assert sessions == sorted(sessions)
    assert len(set(sessions)) == len(sessions)


def test_injected_failures_are_recorded_as_json_lines_whatever_the_log_format(
    start_site: StartSite, observer: Callable[..., Observer], tmp_path: Path
) -> None:
    record = tmp_path / "ec.injections.jsonl"
    obs = observer(topics.site_topic("ec", "status"))
    args = ["--dataset", "DS1", "--inject-failures", "--time-compression", "360000", "--seed", "7"]
    args += ["--failure-mode", "crash", "--log-format", "json", "--injection-log", str(record)]
    before = time.time()
    start_site("ec", *args)

    def recorded() -> list[dict[str, object]] | None:
        lines = record.read_text().splitlines() if record.exists() else []
        return [json.loads(line) for line in lines] if len(lines) >= 2 else None

    events = wait_for(recorded, 20, "two injected failures recorded")
    for event in events:
        assert set(event) == {"site", "ts", "down_s", "session"}
        assert event["site"] == "ec"
        assert before <= float(event["ts"]) <= time.time()  # type: ignore[arg-type]
        assert float(event["down_s"]) >= 0  # type: ignore[arg-type]
    sessions = [event["session"] for event in events]
    assert sessions == sorted(sessions)  # type: ignore[type-var]
    # each recorded failure is one the broker saw: the will of the session it ended
    obs.wait(
        lambda o: {s.session for s in statuses(o, "ec") if s.state == "offline"} >= set(sessions[:1]),
        10,
        "the will of the first failed session",
    )


def test_a_late_will_of_an_old_session_is_overwritten_by_the_live_site(
    start_site: StartSite, observer: Callable[..., Observer]
) -> None:
    status_topic = topics.site_topic("ed", "status")
    obs = observer(status_topic)
    start_site("ed")
    live = obs.wait(lambda o: online(o, "ed"), 15, "ed online")
    stale = SiteStatus(state="offline", session=live.session - 1, ts=0.0)  # e.g. a will delayed by the broker
    obs.publish(status_topic, encode_json(stale), retain=True)
    obs.wait(lambda o: len(statuses(o, "ed")) >= 3 and online(o, "ed", live.session), 5, "the online repair")
    late = observer(status_topic)  # the retained value is the live session again
    retained = late.wait(lambda o: o.on(status_topic), 5, "the retained status")[-1]
    assert decode_json(SiteStatus, retained.payload) == statuses(obs, "ed")[-1]


def test_a_broker_restart_is_survived_with_a_new_session(
    start_site: StartSite, observer: Callable[..., Observer], mosquitto: Server
) -> None:
    start_site("ed")
    obs = observer("edgeoff/v1/sites/ed/#")
    first = obs.wait(lambda o: online(o, "ed"), 15, "ed online")
    mosquitto.restart()  # persistence off: retained statuses and subscriptions are gone

    def back_online(o: Observer) -> SiteStatus | None:
        status = online(o, "ed")
        return status if status is not None and status.session > first.session else None

    # higher, not necessarily first + 1: every connect attempt, even a refused one, takes a session number
    second = obs.wait(back_online, 15, "ed online again with a new session after the broker restart")
    beats_topic = topics.site_topic("ed", "heartbeat")

    def new_beats(o: Observer) -> list[Heartbeat]:
        beats = [decode_msgpack(Heartbeat, m.payload) for m in o.on(beats_topic)]
        return [b for b in beats if b.session == second.session][:3]

    assert (
        len(obs.wait(lambda o: len(new_beats(o)) == 3 and new_beats(o), 5, "heartbeats of the new session"))
        == 3
    )


def test_a_hung_site_goes_silent_and_the_broker_gives_up_on_it_after_the_keepalive(
    mosquitto: Server, redis_server: Server, observer: Callable[..., Observer]
) -> None:  # a service test: the daemon in this process, with a scripted failure, against the real broker
    """failure_mode "hang": heartbeats stop at once, the will after 1.5 x keepalive, then a new session."""
    settings = SiteSettings(
        site="ec",
        broker={"host": mosquitto.host, "port": mosquitto.port, "keepalive_s": 1},
        redis={"url": f"redis://{redis_server.host}:{redis_server.port}/0"},
        inject_failures=True,
        failure_mode="hang",
    )
    scenario = default_scenario()
    script = iter([Period("up", 1.0), Period("down", 4.0), Period("up", 3600.0)])
    stop = threading.Event()
    obs = observer(topics.site_topic("ec", "status"), topics.site_topic("ec", "heartbeat"))
    daemon = SiteDaemon(
        settings=settings,
        site=scenario.sites[scenario.site_ids.index("ec")],
        heartbeat_s=0.15,
        compute_s=lambda mi: 0.0,
        store=TaskStore.from_settings(settings.redis),
        stop=stop,
        failures=script,
    )
    thread = threading.Thread(target=daemon.serve, daemon=True)
    thread.start()
    try:
        obs.wait(lambda o: online(o, "ec", 1), 15, "ec online")

        def beats(o: Observer) -> list[float]:  # the daemon runs in this process: its monotonic clock is ours
            return [
                decode_msgpack(Heartbeat, m.payload).mono_ts
                for m in o.on(topics.site_topic("ec", "heartbeat"))
            ]

        will = obs.wait(
            lambda o: next((s for s in statuses(o, "ec") if s.state == "offline"), None), 10, "the will"
        )
        will_seen = time.monotonic()
        assert will.session == 1
        last_beat = max(t for t in beats(obs) if t < will_seen)
        # silent first: the will came 1.5 x keepalive (1.5 s) after the last heartbeat, not at once
        assert will_seen - last_beat >= 1.2
        back = obs.wait(lambda o: online(o, "ec", 2) or online(o, "ec", 3), 10, "a new session online")
        assert back.session > will.session
        obs.wait(lambda o: any(t > will_seen + 1.0 for t in beats(o)), 10, "heartbeats again")
    finally:
        stop.set()
        thread.join(10)


def test_batched_claims_keep_the_per_attempt_rules(store: TaskStore) -> None:
    done = encode_msgpack(TaskResult(task_id="bc-done", attempt=0, site="ed", session=1, ok=True, exec_s=0.0))
    assert store.claim_task("bc-held", 0, "ec", 10_000)
    claimed = store.claim_tasks(
        "ed",
        [
            Claim("bc-run", 0, 10_000),  # free: claimed, still to run
            Claim("bc-run", 0, 10_000),  # the same attempt again in the same call: refused
            Claim("bc-held", 0, 10_000),  # another site holds it: refused
            Claim("bc-done", 0, 10_000, result=done),  # instant: claimed and completed together
            Claim("bc-done", 0, 10_000, result=done),  # a duplicate of it: refused
            Claim("bc-run", 1, 10_000),  # a new attempt is free
        ],
    )
    assert claimed == [True, False, False, True, False, True]
    assert store.claim_owner("bc-run", 0) == "ed"
    assert store.claim_owner("bc-held", 0) == "ec"
    assert store.get_result("bc-run", 0) is None
    assert store.get_result("bc-done", 0) == decode_msgpack(TaskResult, done)
    assert store.claim_owner("bc-done", 0) == "ed"
    assert not store.claim_task("bc-done", 0, "ec", 10_000)  # done: no later claim, even after a lease
    assert not store.complete_task(
        TaskResult(task_id="bc-done", attempt=0, site="ec", session=9, ok=False, exec_s=1.0)
    )
    assert store.get_result("bc-done", 0) == decode_msgpack(TaskResult, done)  # the first result stays


def test_a_burst_of_duplicated_zero_cost_tasks_runs_each_once_in_order(
    start_site: StartSite, observer: Callable[..., Observer], store: TaskStore
) -> None:
    obs = observer(RESULTS, topics.site_topic("ed", "status"))
    # a queue long enough for the whole burst (the default answers "busy" beyond 8 waiting requests)
    start_site("ed", env={"EDGEOFF_SITE_EXECUTION_SCALE": "0", "EDGEOFF_SITE_MAX_QUEUED_TASKS": "200"})
    obs.wait(lambda o: online(o, "ed"), 15, "ed online")
    tasks_topic = topics.site_topic("ed", "tasks")
    ids = [f"burst-{n}" for n in range(60)]
    # a slow task first (runs in the worker pool); zero-cost ones behind it must not overtake it
    slow = task("burst-slow", mi=0, handler="antivirus.scan", payload=encode_scan_request(b"x" * 4096, []))
    obs.publish(tasks_topic, encode_msgpack(slow))
    for task_id in ids:
        for _ in range(2):  # every request delivered twice, back to back
            obs.publish(tasks_topic, encode_msgpack(task(task_id, mi=0)))
    # the barrier: one task at a time, in arrival order, so its result comes after the result of every
    # run before it, a second run of a duplicate included
    obs.publish(tasks_topic, encode_msgpack(task("burst-barrier", mi=0)))
    obs.wait(lambda o: result_of(o, "burst-barrier"), 15, "the barrier task after the burst")
    seen = [r.task_id for r in results(obs)]
    assert sorted(seen) == sorted(["burst-slow", *ids, "burst-barrier"])  # each exactly once
    assert seen[0] == "burst-slow"  # tasks ran in arrival order
    assert seen[-1] == "burst-barrier"
    for task_id in ids:
        stored = store.get_result(task_id, 0)
        assert stored is not None
        assert (stored.ok, stored.exec_s) == (True, 0.0)
        assert store.claim_owner(task_id, 0) == "ed"
