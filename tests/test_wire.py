"""The wire contract, pure: topics and id validation, codec round trips, hostile payloads."""

from __future__ import annotations

import contextlib
import json
import random

import msgpack
import pytest

from edgeoff.errors import EdgeoffError
from edgeoff.wire import topics
from edgeoff.wire.codec import decode_json, decode_msgpack, encode_json, encode_msgpack
from edgeoff.wire.errors import DecodeError, TopicError, WireError
from edgeoff.wire.messages import (
    MAX_TASK_PAYLOAD_BYTES,
    Heartbeat,
    Prediction,
    SiteProfile,
    SiteStatus,
    TaskRequest,
    TaskResult,
)
from edgeoff.wire.mqtt import backoff_delay

HOSTILE_IDS = ["+", "#", "../etc", "a/b", "a+", "a#", "", "-a", "A", "a b", "a\n", "x" * 64, "é", "a\x00"]


def task(**fields: object) -> TaskRequest:
    base: dict[str, object] = {
        "task_id": "t-1",
        "attempt": 0,
        "agent": "agent-1",
        "app": "antivirus",
        "task": "scan",
        "mi": 1200.0,
        "input_kb": 300.0,
        "output_kb": 2.0,
        "memory_gb": 1.0,
        "deadline_s": 5.0,
    }
    return TaskRequest.model_validate({**base, **fields})


# ------------------------------------------------------------------------------------------ topics


def test_topics_are_built_under_the_versioned_prefix() -> None:
    assert topics.site_topic("ed", "status") == "edgeoff/v1/sites/ed/status"
    assert topics.site_topic("ed-2", "profile") == "edgeoff/v1/sites/ed-2/profile"
    assert topics.site_topic("ed", "heartbeat") == "edgeoff/v1/sites/ed/heartbeat"
    assert topics.site_topic("ed", "tasks") == "edgeoff/v1/sites/ed/tasks"
    assert topics.results("phone-1", "ed") == "edgeoff/v1/results/phone-1/ed"
    assert topics.agent_results("phone-1") == "edgeoff/v1/results/phone-1/+"
    assert topics.prediction("cd") == "edgeoff/v1/predictions/cd"
    assert topics.agent_policy("phone-1") == "edgeoff/v1/agents/phone-1/policy"
    assert topics.all_sites("heartbeat") == "edgeoff/v1/sites/+/heartbeat"


@pytest.mark.parametrize(
    "topic",
    [
        topics.site_topic("ed", "status"),
        topics.site_topic("ec", "heartbeat"),
        topics.site_topic("er", "tasks"),
        topics.site_topic("cd", "profile"),
        topics.results("phone-1", "ec"),
        topics.prediction("cd"),
        topics.agent_policy("phone-1"),
    ],
)
def test_parse_inverts_build(topic: str) -> None:
    parsed = topics.parse_topic(topic)
    rebuilt = {
        "prediction": topics.prediction,
        "policy": topics.agent_policy,
    }.get(parsed.kind)
    if parsed.kind == "results":
        assert parsed.site is not None
        assert topics.results(parsed.id, parsed.site) == topic
    elif rebuilt is None:
        assert topics.site_topic(parsed.id, parsed.kind) == topic  # type: ignore[arg-type]
    else:
        assert rebuilt(parsed.id) == topic
        assert parsed.site is None


@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_hostile_ids_are_rejected_when_building(bad: str) -> None:
    with pytest.raises(TopicError):
        topics.site_topic(bad, "tasks")
    with pytest.raises(TopicError):
        topics.results(bad, "ed")
    with pytest.raises(TopicError):
        topics.results("phone", bad)
    with pytest.raises(TopicError):
        topics.validate_id(bad)


@pytest.mark.parametrize(
    "topic",
    [
        "edgeoff/v1/sites/+/status",
        "edgeoff/v1/sites/#",
        "edgeoff/v1/sites/../status",
        "edgeoff/v1/sites/ed/status/extra",
        "edgeoff/v1/sites/ed/unknown",
        "edgeoff/v1/results/a",
        "edgeoff/v1/results/a/b/c",
        "edgeoff/v1/results/a/+",
        "edgeoff/v2/sites/ed/status",
        "edgeoff/v1",
        "",
        "other/v1/sites/ed/status",
    ],
)
def test_parse_rejects_topics_outside_the_contract(topic: str) -> None:
    with pytest.raises(TopicError):
        topics.parse_topic(topic)


def test_wire_errors_belong_to_the_project_tree() -> None:
    assert issubclass(DecodeError, WireError)
    assert issubclass(TopicError, WireError)
    assert issubclass(WireError, EdgeoffError)


# ------------------------------------------------------------------------------------------ codec


@pytest.mark.parametrize(
    "message",
    [
        Heartbeat(session=3, seq=17, mono_ts=12345.678),
        task(),
        task(handler="antivirus.scan", payload=b"\x00\xff" * 100),
        TaskResult(task_id="t-1", attempt=2, site="ed", session=4, ok=True, exec_s=0.24, output=b"\x90"),
        TaskResult(task_id="t-1", attempt=0, site="ed", session=4, ok=False, exec_s=0.0, error="no memory"),
    ],
)
def test_msgpack_round_trip(message: Heartbeat | TaskRequest | TaskResult) -> None:
    data = encode_msgpack(message)
    assert decode_msgpack(type(message), data) == message


@pytest.mark.parametrize(
    "message",
    [
        SiteStatus(state="online", session=1, ts=1_700_000_000.5),
        SiteProfile(site="ed", type="ED", mips=5000, memory_gb=8, storage_gb=300),
        Prediction(site="ec", availability=0.93, version=7, model="svr", ts=1_700_000_000.0),
    ],
)
def test_json_round_trip_is_plain_json(message: SiteStatus | SiteProfile | Prediction) -> None:
    data = encode_json(message)
    assert isinstance(json.loads(data), dict)  # readable by MQTT Explorer and mosquitto_sub
    assert decode_json(type(message), data) == message


def test_messages_are_frozen() -> None:
    beat = Heartbeat(session=1, seq=1, mono_ts=1.0)
    with pytest.raises(ValueError, match="frozen"):
        beat.seq = 2  # type: ignore[misc]


VALID = task().model_dump()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not msgpack"),
        (b"\xc1", "not msgpack"),
        (b"hello world", "not msgpack"),
        (encode_msgpack(task()) + b"\x00", "not msgpack"),  # trailing bytes
        (b"\x91" * 10_000, "not msgpack"),  # deep nesting
        (msgpack.packb(msgpack.ExtType(1, b"x")), "not msgpack"),
        (msgpack.packb({1: 2}), "not msgpack"),  # non-string map key
        (msgpack.packb([1, 2]), "expected a map"),
        (msgpack.packb("a string"), "expected a map"),
        (msgpack.packb({"hello": "world"}), "TaskRequest"),
        (msgpack.packb({**VALID, "extra": 1}), "extra"),
        (msgpack.packb({k: v for k, v in VALID.items() if k != "mi"}), "mi"),
        (msgpack.packb({**VALID, "mi": "1200"}), "mi"),  # no str -> number coercion
        (msgpack.packb({**VALID, "attempt": 1.5}), "attempt"),
        (msgpack.packb({**VALID, "attempt": -1}), "attempt"),
        (msgpack.packb({**VALID, "attempt": True}), "attempt"),
        (msgpack.packb({**VALID, "mi": float("nan")}), "mi"),
        (msgpack.packb({**VALID, "mi": float("inf")}), "mi"),
        (msgpack.packb({**VALID, "agent": 7}), "agent"),
        (msgpack.packb({**VALID, "payload": "text, not bytes"}), "payload"),
        (msgpack.packb({**VALID, "handler": "../../bin/sh"}), "handler"),
        (msgpack.packb({**VALID, "deadline_s": 0}), "deadline_s"),
        *((msgpack.packb({**VALID, "task_id": bad}), "task_id") for bad in HOSTILE_IDS),
        *((msgpack.packb({**VALID, "agent": bad}), "agent") for bad in ("+", "#", "../x")),
    ],
)
def test_decode_msgpack_rejects_hostile_payloads(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason) as info:
        decode_msgpack(TaskRequest, data)
    assert "\n" not in str(info.value)
    assert len(str(info.value)) < 300


def test_oversized_payloads_are_rejected_before_parsing() -> None:
    data = encode_msgpack(task(payload=b"x" * 2000))
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode_msgpack(TaskRequest, data, max_bytes=1024)
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode_json(SiteStatus, b" " * 2000, max_bytes=1024)


def test_task_payload_is_size_limited_by_the_schema() -> None:
    data = msgpack.packb({**VALID, "payload": b"x" * (MAX_TASK_PAYLOAD_BYTES + 1)})
    with pytest.raises(DecodeError, match="payload"):
        decode_msgpack(TaskRequest, data, max_bytes=len(data))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"[]",
        b"null",
        b'{"state": "online", "session": 1}',
        b'{"state": "up", "session": 1, "ts": 0}',
        b'{"state": "online", "session": "1", "ts": 0}',
        b'{"state": "online", "session": -1, "ts": 0}',
        b'{"state": "online", "session": 1, "ts": 0, "extra": true}',
        b'{"state": "online", "session": 1, "ts": NaN}',
        b"\xff\xfe",
    ],
)
def test_decode_json_rejects_hostile_payloads(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_json(SiteStatus, data)


def test_random_bytes_never_escape_as_anything_but_decode_error() -> None:
    rng = random.Random(0)
    for _ in range(2000):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        for model in (TaskRequest, Heartbeat):
            with contextlib.suppress(DecodeError):
                decode_msgpack(model, data)
        with contextlib.suppress(DecodeError):
            decode_json(SiteStatus, data)


# ------------------------------------------------------------------------------------------ backoff


def test_backoff_has_full_jitter_under_an_exponential_cap() -> None:
    rng = random.Random(1)
    for attempt in range(12):
        ceiling = min(30.0, 0.1 * 2**attempt)
        delays = [backoff_delay(attempt, min_s=0.1, max_s=30.0, rng=rng) for _ in range(500)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling  # spread over the whole range (full jitter) ...
        assert min(delays) < 0.2 * ceiling  # ... not concentrated near the cap
    assert backoff_delay(10_000, min_s=0.1, max_s=30.0, rng=rng) <= 30.0


def test_a_prediction_carries_its_forecasters_backtest_error() -> None:
    p = Prediction(site="ed", availability=0.99, version=3, model="last-value", ts=1.0, error_mae=0.012)
    assert decode_json(Prediction, encode_json(p)) == p
    legacy = b'{"site":"ed","availability":0.5,"version":1,"model":"prior","ts":1.0}'
    assert decode_json(Prediction, legacy).error_mae is None
