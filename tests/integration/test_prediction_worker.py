"""The prediction worker against a real Mosquitto, a real Redis and real site daemon processes."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from subprocess import Popen

import msgpack
import pytest
import redis

from edgeoff.wire import topics
from edgeoff.wire.codec import decode_json, decode_msgpack
from edgeoff.wire.messages import DOWN_MODEL, Heartbeat, Prediction
from edgeoff.wire.mqtt import Message
from prediction_worker.daemon import PredictionWorker, WorkerSettings
from prediction_worker.detector import FixedTimeoutDetector, Shard
from prediction_worker.store import PredictionStore

from .conftest import Observer, Processes, Server, wait_for

pytestmark = pytest.mark.timeout(60)

START_S = 15.0  # a site or worker process imports numpy and scikit-learn before it connects
TIMEOUT_S = 1.5  # the worker's default detector: 10 missed heartbeats of 0.15 s (the paper's)
# Detection takes 1.5 s of silence + the poll period + delivery (~1.6 s on a quiet machine). The bound is
# generous for a loaded machine and still tells the detector apart from the slow path it must beat: the
# broker gives up on a silent site after 1.5 x its keepalive (5 s), 7.5 s, and then fires its will.
DETECTION_BOUND_S = 5.0
FP_SLACK_S = 1e-6  # float rounding of two differences of the same monotonic clock


@pytest.fixture
def start_worker(
    mosquitto: Server, redis_server: Server, processes: Processes
) -> Callable[..., Popen[bytes]]:
    """Start `python -m prediction_worker ...` against the test's broker and Redis."""

    def start(*extra: str, worker_id: str = "w0") -> Popen[bytes]:
        env = {
            "EDGEOFF_WORKER_BROKER__HOST": mosquitto.host,
            "EDGEOFF_WORKER_BROKER__PORT": str(mosquitto.port),
            "EDGEOFF_WORKER_REDIS__URL": f"redis://{redis_server.host}:{redis_server.port}/0",
            "EDGEOFF_WORKER_STATS_S": "0.2",
            "EDGEOFF_WORKER_LOG_LEVEL": "INFO",
        }
        args = [sys.executable, "-m", "prediction_worker", "--worker-id", worker_id, *extra]
        return processes.start(args, env, name=f"worker-{worker_id}")

    return start


@pytest.fixture
def rdb(redis_server: Server) -> Iterator[redis.Redis]:
    client = redis.Redis(host=redis_server.host, port=redis_server.port, decode_responses=True)
    yield client
    client.close()


def predictions(obs: Observer, site: str) -> list[Prediction]:
    return [decode_json(Prediction, m.payload) for m in obs.on(topics.prediction(site))]


def _up(found: list[Prediction]) -> list[Prediction]:
    return [p for p in found if p.model != DOWN_MODEL]


def _down(found: list[Prediction]) -> list[Prediction]:
    return [p for p in found if p.model == DOWN_MODEL]


def _text(value: bytes | str) -> str:
    """A reply of `rdb` (the client decodes responses: redis-py's types still say bytes | str)."""
    assert isinstance(value, str), value
    return value


def last_beat(obs: Observer, site: str) -> float:
    """The latest `mono_ts` of `site`'s heartbeats received so far (all processes share CLOCK_MONOTONIC)."""
    beats = [decode_msgpack(Heartbeat, m.payload) for m in obs.on(topics.site_topic(site, "heartbeat"))]
    assert beats, f"no heartbeat of {site} received"
    return max(b.mono_ts for b in beats)


def counters(rdb: redis.Redis, worker: str) -> dict[str, int]:
    return {_text(k): int(v) for k, v in rdb.hgetall(f"edgeoff:v1:worker:{worker}:counters").items()}


def test_live_site_prediction_sigkill_down_and_restart_up(
    start_worker: Callable[..., Popen[bytes]],
    start_site: Callable[..., Popen[bytes]],
    observer: Callable[..., Observer],
    rdb: redis.Redis,
    processes: Processes,
) -> None:
    obs = observer(f"{topics.PREFIX}/predictions/#", topics.site_topic("ed", "heartbeat"))
    worker = start_worker()
    site = start_site("ed")
    up = obs.wait(lambda o: _up(predictions(o, "ed")), START_S, "an up prediction")[-1]
    assert 0.0 < up.availability <= 1.0
    assert rdb.hget("edgeoff:v1:prediction:ed", "version") == str(up.version)

    # SIGSTOP: the connection stays open, only the heartbeats stop: the detector's timeout decides
    seen = len(obs.on(topics.prediction("ed")))
    stopped_at = time.monotonic()
    site.send_signal(signal.SIGSTOP)
    down = obs.wait(
        lambda o: _down(predictions(o, "ed")[seen:]), DETECTION_BOUND_S, "detector:down after SIGSTOP"
    )[0]
    detected_at = time.monotonic()
    site.send_signal(signal.SIGCONT)
    latency = detected_at - stopped_at
    assert latency < DETECTION_BOUND_S, f"detected after {latency:.3f} s"
    # not before the timeout, whatever the load: each heartbeat reached the worker after it was stamped,
    # and the worker waits TIMEOUT_S after the last one it got; a heartbeat the observer missed is later
    silence = detected_at - last_beat(obs, "ed")
    assert silence >= TIMEOUT_S - FP_SLACK_S, f"detected {silence:.3f} s after the last heartbeat"
    assert down.availability == 0.0
    assert down.version > up.version
    verdicts = [json.loads(v) for v in rdb.lrange("edgeoff:v1:site:ed:verdicts", 0, -1)]
    assert (verdicts[0]["up"], verdicts[0]["reason"]) == (False, "timeout")
    seen = len(obs.on(topics.prediction("ed")))
    again = obs.wait(lambda o: _up(predictions(o, "ed")[seen:]), 5.0, "up after SIGCONT")[0]
    assert again.version > down.version

    # SIGKILL: the kernel closes the socket, the broker fires the Last Will at once (or the timeout decides)
    seen = len(obs.on(topics.prediction("ed")))
    killed_at = time.monotonic()
    site.send_signal(signal.SIGKILL)
    down = obs.wait(
        lambda o: _down(predictions(o, "ed")[seen:]), DETECTION_BOUND_S, "detector:down after SIGKILL"
    )[0]
    latency = time.monotonic() - killed_at
    assert latency < DETECTION_BOUND_S, f"detected after {latency:.3f} s"
    assert down.version > again.version

    seen = len(obs.on(topics.prediction("ed")))
    start_site("ed")
    back = obs.wait(lambda o: _up(predictions(o, "ed")[seen:]), START_S, "up after the restart")[0]
    assert back.version > down.version
    # the late Last Will of the killed session (keepalive x 1.5) must not take the site down again
    assert worker.poll() is None, processes.log_of(worker)


def test_garbage_is_counted_dropped_and_the_worker_keeps_serving(
    start_worker: Callable[..., Popen[bytes]],
    start_site: Callable[..., Popen[bytes]],
    observer: Callable[..., Observer],
    rdb: redis.Redis,
    processes: Processes,
) -> None:
    obs = observer(f"{topics.PREFIX}/predictions/#")
    worker = start_worker()
    site = start_site("ec")
    obs.wait(lambda o: predictions(o, "ec"), START_S, "a prediction of ec")
    hb = f"{topics.PREFIX}/sites/x/heartbeat"
    st = f"{topics.PREFIX}/sites/x/status"
    garbage: list[tuple[str, bytes]] = [
        (hb, b"\xc1\xc1 not msgpack"),
        (hb, msgpack.packb({"session": "1", "seq": 0, "mono_ts": 1.0})),  # wrong type
        (hb, msgpack.packb({"session": 1, "seq": 0, "mono_ts": 1.0, "evil": True})),  # extra field
        (hb, msgpack.packb([1, 2, 3])),  # not a map
        (st, b"{not json"),
        (st, json.dumps({"state": "dead", "session": 1, "ts": 0}).encode()),  # wrong schema
        (st, json.dumps({"state": "offline", "session": -1, "ts": 0}).encode()),
        (f"{topics.PREFIX}/sites/../heartbeat", msgpack.packb({"session": 1, "seq": 0, "mono_ts": 1.0})),
        (f"{topics.PREFIX}/sites/ED/status", b'{"state": "offline", "session": 99, "ts": 0}'),
        (f"{topics.PREFIX}/sites//heartbeat", b"x"),
        (f"{topics.PREFIX}/sites/{'a' * 100}/heartbeat", b"x"),
    ]
    before = counters(rdb, "w0")
    for topic, payload in garbage:
        obs.publish(topic, payload, qos=1)

    def dropped() -> dict[str, int] | None:
        now = counters(rdb, "w0")
        got = {k: now.get(k, 0) - before.get(k, 0) for k in now if k.startswith("in_dropped.")}
        return got if sum(got.values()) >= len(garbage) else None

    got = wait_for(dropped, 10.0, "every garbage message to be counted")
    assert got["in_dropped.heartbeat_decode"] == 4
    assert got["in_dropped.status_decode"] == 3
    assert got["in_dropped.topic"] == 4
    # still serving: heartbeats keep being counted and a kill is still detected
    beats = counters(rdb, "w0").get("in_heartbeats", 0)
    wait_for(lambda: counters(rdb, "w0").get("in_heartbeats", 0) > beats + 3, 5.0, "more heartbeats")
    seen = len(obs.on(topics.prediction("ec")))
    site.send_signal(signal.SIGKILL)
    obs.wait(lambda o: _down(predictions(o, "ec")[seen:]), 5.0, "detector:down")
    assert worker.poll() is None, processes.log_of(worker)


def test_wildcard_topics_cannot_reach_the_worker_and_are_dropped(redis_server: Server) -> None:
    """`+` and `#` cannot be published (the client and broker refuse); the worker's own check drops them."""
    settings = WorkerSettings(
        redis={"url": f"redis://{redis_server.host}:{redis_server.port}/0"},
    )
    store = PredictionStore(redis.Redis(host=redis_server.host, port=redis_server.port))
    worker = PredictionWorker(
        settings=settings,
        detector=FixedTimeoutDetector(),
        store=store,
        stop=threading.Event(),
    )
    beat = msgpack.packb({"session": 1, "seq": 0, "mono_ts": 1.0})
    for topic in ("+", "#", "../x"):
        worker.handle(
            Message(topic=f"{topics.PREFIX}/sites/{topic}/heartbeat", payload=beat, qos=0, retain=False)
        )
    worker.handle(Message(topic=f"{topics.PREFIX}/sites/#", payload=beat, qos=0, retain=False))
    worker.handle(Message(topic=f"{topics.PREFIX}/predictions/ed", payload=beat, qos=0, retain=False))
    assert worker.counters.get("in_dropped.topic") == 5
    assert worker.detector.sites == ()
    store.close()


def test_two_shards_never_publish_for_the_same_site(
    start_worker: Callable[..., Popen[bytes]],
    start_site: Callable[..., Popen[bytes]],
    observer: Callable[..., Observer],
    rdb: redis.Redis,
) -> None:
    sites = ("ed", "ec", "er", "cd")
    owner = {site: Shard.bucket(site, 2) for site in sites}
    assert set(owner.values()) == {0, 1}, "the test needs sites on both shards"
    obs = observer(f"{topics.PREFIX}/predictions/#")
    start_worker("--shard", "0/2", worker_id="w0")
    start_worker("--shard", "1/2", worker_id="w1")
    for site in sites:
        start_site(site)
    obs.wait(lambda o: all(predictions(o, s) for s in sites), START_S, "a prediction of every site")
    for site in sites:
        assert rdb.hget(f"edgeoff:v1:prediction:{site}", "worker") == f"w{owner[site]}"
        writers = {json.loads(v)["worker"] for v in rdb.lrange(f"edgeoff:v1:site:{site}:verdicts", 0, -1)}
        assert writers == {f"w{owner[site]}"}
        versions = [p.version for p in predictions(obs, site)]
        assert versions == sorted(set(versions)), "one writer per site: versions strictly increase"
    # each shard subscribes to its own sites only: the broker never sends it the other shard's heartbeats
    for w in ("w0", "w1"):
        wait_for(lambda w=w: counters(rdb, w).get("in_heartbeats", 0) > 10, 5.0, f"{w} counting heartbeats")  # type: ignore[misc]
        assert counters(rdb, w).get("in_ignored.not_owned", 0) == 0

    def published_match() -> bool:
        published = sum(counters(rdb, w).get("predictions.published", 0) for w in ("w0", "w1"))
        return published == sum(len(predictions(obs, s)) for s in sites)

    wait_for(published_match, 5.0, "every publication of the workers to be seen once")


def test_broker_restart_republishes_the_value_of_record(
    start_worker: Callable[..., Popen[bytes]],
    start_site: Callable[..., Popen[bytes]],
    observer: Callable[..., Observer],
    mosquitto: Server,
    rdb: redis.Redis,
) -> None:
    """A broker without persistence forgets retained predictions: the worker re-publishes them from Redis."""
    obs = observer(f"{topics.PREFIX}/predictions/#")
    start_worker()
    start_site("er")
    before = obs.wait(lambda o: _up(predictions(o, "er")), START_S, "a prediction of er")[-1]
    mosquitto.restart()
    late = observer(f"{topics.PREFIX}/predictions/#")  # subscribes after the restart: sees retained only
    again = late.wait(lambda o: predictions(o, "er"), 15.0, "the re-published retained prediction")[-1]
    assert again.version >= before.version
    assert again.version == int(rdb.hget("edgeoff:v1:prediction:er", "version") or 0)
    wait_for(lambda: counters(rdb, "w0").get("resyncs", 0) >= 1, 5.0, "the worker's resync counter")


def _downs(rdb: redis.Redis, site: str) -> int:
    return sum(1 for v in rdb.lrange(f"edgeoff:v1:site:{site}:verdicts", 0, -1) if not json.loads(v)["up"])


def test_a_worker_that_was_stopped_resyncs_instead_of_suspecting_healthy_sites(
    start_worker: Callable[..., Popen[bytes]],
    start_site: Callable[..., Popen[bytes]],
    observer: Callable[..., Observer],
    rdb: redis.Redis,
) -> None:
    obs = observer(f"{topics.PREFIX}/predictions/#")
    worker = start_worker()
    start_site("ed")
    obs.wait(lambda o: _up(predictions(o, "ed")), START_S, "a prediction of ed")
    worker.send_signal(signal.SIGSTOP)  # the worker's loop and its network thread stall: its silence
    try:
        time.sleep(2.5)  # the fault itself: longer than the 1.5 s detection time
    finally:
        worker.send_signal(signal.SIGCONT)
    wait_for(
        lambda: counters(rdb, "w0").get("resyncs.stalled", 0) >= 1, 10.0, "the worker noticing its stall"
    )
    beats = counters(rdb, "w0").get("in_heartbeats", 0)
    wait_for(lambda: counters(rdb, "w0").get("in_heartbeats", 0) > beats + 20, 10.0, "judging again")
    assert _downs(rdb, "ed") == 0


def test_broker_restarts_cause_no_false_suspicion(
    start_worker: Callable[..., Popen[bytes]],
    start_site: Callable[..., Popen[bytes]],
    observer: Callable[..., Observer],
    mosquitto: Server,
    rdb: redis.Redis,
) -> None:
    obs = observer(f"{topics.PREFIX}/predictions/#")
    start_worker()
    for site in ("ed", "ec"):
        start_site(site)
    obs.wait(lambda o: _up(predictions(o, "ed")) and _up(predictions(o, "ec")), START_S, "both predicted")
    for n in range(1, 3):
        mosquitto.restart()
        wait_for(lambda n=n: counters(rdb, "w0").get("resyncs.reconnected", 0) >= n, 15.0, "a resync")  # type: ignore[misc]
        beats = counters(rdb, "w0").get("in_heartbeats", 0)
        # judging again after the grace, with both sites' heartbeats flowing
        more = lambda b=beats: counters(rdb, "w0").get("in_heartbeats", 0) > b + 40  # noqa: E731
        wait_for(more, 15.0, "heartbeats again")
    assert _downs(rdb, "ed") == 0
    assert _downs(rdb, "ec") == 0
