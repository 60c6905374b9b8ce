"""Faults at the wire: refused publishes, persistent sessions, bounded inbox, fenced claims, bounded Redis."""

from __future__ import annotations

import queue
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from edgeoff.wire.codec import encode_msgpack
from edgeoff.wire.messages import TaskResult
from edgeoff.wire.mqtt import Connected, Inbox, Message, MqttClient, MqttEvent, backoff_delay
from edgeoff.wire.settings import BrokerSettings, RedisSettings
from edgeoff.wire.store import Claim, TaskStore

from .conftest import START_TIMEOUT_S, Observer, Server, _accepts, _binary, _terminate, free_port, wait_for

pytestmark = pytest.mark.timeout(120)


def _client(
    server: Server, client_id: str, inbox: queue.Queue[MqttEvent], *, session_expiry_s: int = 0
) -> MqttClient:
    return MqttClient(
        settings=BrokerSettings(host=server.host, port=server.port),
        client_id=client_id,
        inbox=inbox,
        session_expiry_s=session_expiry_s,
    )


def _messages(inbox: queue.Queue[MqttEvent]) -> list[Message]:
    out: list[Message] = []
    while True:
        try:
            event = inbox.get_nowait()
        except queue.Empty:
            return out
        if isinstance(event, Message):
            out.append(event)


# ---------------------------------------------------------------------- reconnects


def test_default_backoff_retries_within_half_a_second_and_is_capped_at_a_few_seconds() -> None:
    settings = BrokerSettings()
    rng = random.Random(0)
    first = [
        backoff_delay(0, min_s=settings.reconnect_min_s, max_s=settings.reconnect_max_s, rng=rng)
        for _ in range(200)
    ]
    assert max(first) <= 0.5
    # refused connects fail at once: after many attempts the wait must still be a LAN's few seconds
    late = [
        backoff_delay(40, min_s=settings.reconnect_min_s, max_s=settings.reconnect_max_s, rng=rng)
        for _ in range(200)
    ]
    assert max(late) <= 3.0


# ---------------------------------------------------------------------- refused publishes


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[Server]:
    """A Mosquitto whose anonymous clients may write `allowed/#` only."""
    port = free_port()
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite allowed/#\n", encoding="utf-8")
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nacl_file {acl}\npersistence false\nuser root\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [_binary("mosquitto"), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for(lambda: proc.poll() is not None or _accepts(port), START_TIMEOUT_S, "mosquitto to listen")
    yield Server("127.0.0.1", port, proc)
    _terminate(proc)


def test_a_refused_publish_is_counted_as_denied_never_as_acked(acl_broker: Server) -> None:
    inbox: queue.Queue[MqttEvent] = queue.Queue()
    client = _client(acl_broker, "denied", inbox)
    client.start()
    try:
        wait_for(client.connected.is_set, 10, "connected")
        ok = client.publish("allowed/x", b"1", qos=1)
        denied = [client.publish("secret/x", b"1", qos=1) for _ in range(3)]
        assert client.wait_published(ok, 5)
        for info in denied:
            assert client.wait_published(info, 5)  # acknowledged... with a refusal reason code
        wait_for(lambda: client.counters.get("out_denied") == 3, 5, "three refusals counted")
        assert client.counters.get("out_acked") == 1
    finally:
        client.stop()


# ---------------------------------------------------------------------- persistent session


def test_a_persistent_session_keeps_qos1_messages_sent_while_disconnected(
    mosquitto: Server, observer: object
) -> None:
    inbox: queue.Queue[MqttEvent] = queue.Queue()
    agent = _client(mosquitto, "persistent-agent", inbox, session_expiry_s=60)
    agent.subscribe("results/a", qos=1)
    agent.start()
    sender = Observer(mosquitto, "sender").start()
    try:
        wait_for(lambda: any(isinstance(e, Connected) for e in [inbox.get(timeout=5)]), 10, "agent connected")
        agent.pause(with_will=False)
        wait_for(lambda: not agent.connected.is_set(), 5, "agent disconnected")
        sender.publish("results/a", b"while-away", qos=1)
        agent.resume()
        wait_for(lambda: any(m.payload == b"while-away" for m in _messages(inbox)), 10, "the queued result")
    finally:
        sender.stop()
        agent.stop()


# ---------------------------------------------------------------------- bounded inbox


class _PahoMessage:
    def __init__(self, topic: str, payload: bytes) -> None:
        self.topic, self.payload, self.qos, self.retain = topic, payload, 1, False


def test_the_inbox_is_bounded_in_bytes_and_arrivals_are_stamped() -> None:
    inbox: Inbox[MqttEvent] = Inbox()
    settings = BrokerSettings(inbox_bytes=4096, inbox_size=1000)
    client = MqttClient(settings=settings, client_id="bounded", inbox=inbox)
    for _ in range(10):
        client._on_message(None, None, _PahoMessage("t/x", b"x" * 1000))
    assert inbox.qsize() == 4
    assert inbox.nbytes == 4000
    assert client.counters.get("in_dropped.inbox_full") == 6
    first = inbox.get_nowait()
    assert isinstance(first, Message)
    assert first.received_at > 0
    assert inbox.nbytes == 3000


def test_a_fast_path_takes_messages_before_the_inbox() -> None:
    inbox: Inbox[MqttEvent] = Inbox()
    seen: list[tuple[str, float]] = []

    def fast(topic: str, payload: bytes, at: float) -> bool:
        if topic.endswith("/heartbeat"):
            seen.append((topic, at))
            return True
        return False

    client = MqttClient(settings=BrokerSettings(), client_id="fast", inbox=inbox, fast_path=fast)
    client._on_message(None, None, _PahoMessage("s/ed/heartbeat", b"1"))
    client._on_message(None, None, _PahoMessage("s/ed/status", b"1"))
    assert [t for t, _ in seen] == ["s/ed/heartbeat"]
    assert inbox.qsize() == 1


# ---------------------------------------------------------------------- fenced claims and leases


def _result(task: str, attempt: int, site: str = "ed") -> bytes:
    return encode_msgpack(
        TaskResult(task_id=task, attempt=attempt, site=site, session=1, ok=True, exec_s=0.0)
    )


def test_an_older_attempt_never_starts_after_a_newer_one_was_claimed(store: TaskStore) -> None:
    assert store.claim_outcomes("ec", [Claim("f1", 1, 10_000)]) == ["claimed"]
    assert store.claim_outcomes("ed", [Claim("f1", 0, 10_000)]) == ["fenced"]
    assert store.claim_outcomes("ed", [Claim("f1", 2, 10_000)]) == ["claimed"]
    assert store.claim_outcomes("ec", [Claim("f1", 1, 10_000)]) == ["fenced"]


def test_a_cancelled_attempt_never_starts_and_a_running_one_learns_it_at_renewal(store: TaskStore) -> None:
    assert store.claim_task("f2", 0, "ed", 10_000)
    assert store.renew("f2", 0, "ed", 10_000)
    assert not store.renew("f2", 0, "ec", 10_000)  # not ec's claim
    store.cancel("f2", 0)  # the agent moved on from attempt 0
    assert not store.renew("f2", 0, "ed", 10_000)
    store.cancel("f3", 0)  # cancelled before any site started it (queued at a hung site)
    assert store.claim_outcomes("ed", [Claim("f3", 0, 10_000)]) == ["fenced"]
    assert store.claim_outcomes("ec", [Claim("f3", 1, 10_000)]) == ["claimed"]  # the next attempt is free


def test_every_task_key_expires_after_the_retention(redis_server: Server) -> None:
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    store = TaskStore(client, retention_s=120)
    store.claim_tasks("ed", [Claim("r1", 0, 5_000, result=_result("r1", 0))])
    store.claim_task("r2", 0, "ed", 5_000)
    store.cancel("r3", 0)
    keys = client.keys("edgeoff:v1:task:*")
    assert len(keys) >= 4  # r1 claim and result, r2 claim, r3 fence
    for key in keys:
        ttl = client.pttl(key)
        assert 0 < ttl <= 120_000, (key, ttl)
    store.close()


def test_a_million_task_records_stay_under_the_memory_limit_and_no_claim_is_refused(tmp_path: Path) -> None:
    """brokers/redis/redis.conf's memory policy: a full Redis evicts old results, never refuses a claim."""
    port = free_port()
    conf = Path(__file__).parents[2] / "brokers" / "redis" / "redis.conf"
    policy = next(
        line.split()[1] for line in conf.read_text().splitlines() if line.startswith("maxmemory-policy")
    )
    limit = 24 * 1024 * 1024
    proc = subprocess.Popen(
        [
            _binary("redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
            "--maxmemory",
            str(limit),
            "--maxmemory-policy",
            policy,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: proc.poll() is not None or _accepts(port), START_TIMEOUT_S, "redis to listen")
        client = redis.Redis(host="127.0.0.1", port=port)
        store = TaskStore(client, retention_s=RedisSettings().retention_s)
        payload = _result("m", 0)
        batch = 2000
        refused = 0
        peak = 0
        for start in range(0, 1_000_000, batch):
            claims = [Claim(f"m{i}", 0, 1_000, result=payload) for i in range(start, start + batch)]
            refused += sum(1 for ok in store.claim_tasks("ed", claims) if not ok)
            if start % 100_000 == 0:
                peak = max(peak, int(client.info("memory")["used_memory"]))
                assert store.next_session("ed") > 0  # a site can still reconnect
        peak = max(peak, int(client.info("memory")["used_memory"]))
        assert refused == 0
        assert peak <= limit * 1.05
        assert (
            int(client.info("stats")["evicted_keys"]) > 0
        )  # the limit was reached and old results made room
        store.close()
    finally:
        _terminate(proc)
