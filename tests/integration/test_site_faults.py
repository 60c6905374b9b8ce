"""The site under faults: heartbeats that never wait on Redis, a task lifecycle with expiry, fencing, a
bounded queue and renewed leases, and an answer at once when Redis is gone (issue 10)."""

from __future__ import annotations

import itertools
import signal
import subprocess
import time
from collections.abc import Callable

import pytest

from edgeoff.wire import topics
from edgeoff.wire.codec import encode_msgpack
from edgeoff.wire.messages import ERROR_BUSY, ERROR_STORE
from edgeoff.wire.store import TaskStore

from .conftest import Observer, Server
from .test_site_daemon import RESULTS, online, result_of, results, task

pytestmark = pytest.mark.timeout(60)

StartSite = Callable[..., subprocess.Popen[bytes]]
FAST = {"EDGEOFF_SITE_EXECUTION_SCALE": "0"}


def _beat_times(obs: Observer, site: str) -> list[float]:
    return [m.received_at for m in obs.on(topics.site_topic(site, "heartbeat"))]


def test_heartbeats_keep_their_cadence_while_redis_stalls(
    start_site: StartSite, observer: Callable[..., Observer], redis_server: Server
) -> None:
    obs = observer(topics.all_sites("heartbeat"), topics.site_topic("ed", "status"), RESULTS)
    start_site("ed", env=FAST)
    obs.wait(lambda o: online(o, "ed"), 15, "ed online")
    obs.wait(lambda o: len(_beat_times(o, "ed")) >= 3, 5, "heartbeats")
    redis_server.proc.send_signal(signal.SIGSTOP)  # every Redis call of the site now blocks
    try:
        stalled_at = time.monotonic()
        obs.publish(
            topics.site_topic("ed", "tasks"), encode_msgpack(task("stall-1", mi=0))
        )  # claimed on the loop
        obs.wait(lambda o: any(t > stalled_at + 2.5 for t in _beat_times(o, "ed")), 10, "2.5 s of heartbeats")
        during = [t for t in _beat_times(obs, "ed") if t >= stalled_at]
        gaps = [b - a for a, b in itertools.pairwise(during)]
        assert len(during) >= 8  # 150 ms cadence over 2.5 s: about 17
        assert max(gaps) < 1.0  # without its own thread the site fell silent for the whole stall
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    done = obs.wait(lambda o: result_of(o, "stall-1"), 15, "the stalled task's result")
    assert done.ok or done.error == ERROR_STORE


def test_a_site_that_cannot_reach_redis_answers_store_unavailable_at_once_and_resumes(
    start_site: StartSite, observer: Callable[..., Observer], redis_server: Server
) -> None:
    obs = observer(topics.site_topic("ed", "status"), RESULTS)
    start_site("ed", env=FAST)
    obs.wait(lambda o: online(o, "ed"), 15, "ed online")
    redis_server.proc.kill()
    redis_server.proc.wait(5)
    obs.publish(topics.site_topic("ed", "tasks"), encode_msgpack(task("nostore-1", mi=0)))
    obs.publish(topics.site_topic("ed", "tasks"), encode_msgpack(task("nostore-2", mi=5000)))  # a pool task
    for task_id in ("nostore-1", "nostore-2"):
        answer = obs.wait(lambda o, t=task_id: result_of(o, t), 15, f"an answer for {task_id}")  # type: ignore[misc]
        assert (answer.ok, answer.error) == (False, ERROR_STORE)
    redis_server.restart()
    obs.publish(topics.site_topic("ed", "tasks"), encode_msgpack(task("nostore-3", mi=0)))
    back = obs.wait(lambda o: result_of(o, "nostore-3"), 15, "a task run after Redis returned")
    assert back.ok


def test_expired_and_cancelled_requests_never_start(
    start_site: StartSite, observer: Callable[..., Observer], store: TaskStore
) -> None:
    obs = observer(topics.site_topic("ed", "status"), RESULTS)
    start_site("ed", env=FAST)
    obs.wait(lambda o: online(o, "ed"), 15, "ed online")
    tasks_topic = topics.site_topic("ed", "tasks")
    store.cancel("cancelled-1", 0)  # the agent gave up on attempt 0 before the site saw it
    obs.publish(tasks_topic, encode_msgpack(task("expired-1", mi=0, expires_at=time.time() - 1.0)))
    obs.publish(tasks_topic, encode_msgpack(task("cancelled-1", mi=0)))
    obs.publish(tasks_topic, encode_msgpack(task("barrier-1", mi=0)))  # handled after both, in order
    obs.wait(lambda o: result_of(o, "barrier-1"), 15, "the barrier task")
    assert result_of(obs, "expired-1") is None
    assert result_of(obs, "cancelled-1") is None
    assert store.claim_owner("expired-1", 0) is None
    assert store.claim_owner("cancelled-1", 0) is None


def test_a_full_queue_answers_busy_at_once(start_site: StartSite, observer: Callable[..., Observer]) -> None:
    obs = observer(topics.site_topic("ed", "status"), RESULTS)
    # ED: 5000 MIPS; 5000 MI = 1 s each at scale 1
    start_site("ed", env={"EDGEOFF_SITE_MAX_QUEUED_TASKS": "1"})
    obs.wait(lambda o: online(o, "ed"), 15, "ed online")
    tasks_topic = topics.site_topic("ed", "tasks")
    for n in range(3):
        obs.publish(tasks_topic, encode_msgpack(task(f"busy-{n}", mi=5000)))
    busy = obs.wait(lambda o: result_of(o, "busy-2"), 5, "a busy answer")
    assert (busy.ok, busy.error) == (False, ERROR_BUSY)
    assert result_of(obs, "busy-0") is None  # still running: the answer did not wait for it
    for n in (0, 1):
        done = obs.wait(lambda o, t=f"busy-{n}": result_of(o, t), 15, f"busy-{n} done")  # type: ignore[misc]
        assert done.ok


def test_a_long_task_renews_its_lease_and_stops_when_the_agent_cancels_it(
    start_site: StartSite, observer: Callable[..., Observer], store: TaskStore
) -> None:
    obs = observer(topics.site_topic("ed", "status"), RESULTS)
    start_site("ed", env={"EDGEOFF_SITE_CLAIM_MARGIN_S": "0.4", "EDGEOFF_SITE_EXECUTION_SCALE": "4"})
    obs.wait(lambda o: online(o, "ed"), 15, "ed online")
    tasks_topic = topics.site_topic("ed", "tasks")
    # 2500 MI on ED = 0.5 s x scale 4 = 2 s of emulated work; the lease alone would lapse after 2.4 s,
    # but renewed every 0.2 s it is still held well after it started
    obs.publish(tasks_topic, encode_msgpack(task("long-1", mi=2500)))
    started = obs.wait(lambda o: store.claim_owner("long-1", 0), 10, "long-1 started")
    assert started == "ed"
    obs.publish(tasks_topic, encode_msgpack(task("long-2", mi=5000)))  # 4 s, queued behind long-1
    result = obs.wait(lambda o: result_of(o, "long-1"), 15, "long-1 done")
    assert result.ok
    obs.wait(lambda o: store.claim_owner("long-2", 0), 10, "long-2 started")
    store.cancel("long-2", 0)  # the agent moved on: the running attempt stops at its next renewal
    obs.publish(tasks_topic, encode_msgpack(task("barrier-2", mi=0)))
    obs.wait(lambda o: result_of(o, "barrier-2"), 10, "the task after the cancelled one")
    assert result_of(obs, "long-2") is None
    assert store.get_result("long-2", 0) is None
    seen = [r.task_id for r in results(obs)]
    assert seen == ["long-1", "barrier-2"]
