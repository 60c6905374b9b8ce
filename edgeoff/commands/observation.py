"""What `edgeoff status` observes: `edgeoff/v1/#` folded into the latest view of each site and agent
(pure), the state of record read from Redis, and the read-only MQTT listener.

Ages are measured here: `heartbeat_age_s` from the arrival of the last heartbeat at this process,
`status_age_s` and `prediction_age_s` from the `ts` in the message (the sender's wall clock).
"""

from __future__ import annotations

import json
import queue
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgeoff.errors import EdgeoffError
from edgeoff.wire import topics
from edgeoff.wire.codec import DEFAULT_MAX_MESSAGE_BYTES, decode_json, decode_msgpack
from edgeoff.wire.errors import DecodeError, TopicError
from edgeoff.wire.messages import DOWN_MODEL, Heartbeat, Prediction, SiteProfile, SiteStatus
from edgeoff.wire.mqtt import Connected, Disconnected, Message, MqttClient, MqttEvent
from edgeoff.wire.settings import BrokerSettings
from edgeoff.wire.store import KEY_PREFIX

__all__ = ["BrokerUnavailableError", "Listener", "Observation", "RedisView", "read_redis"]

CONNECT_TIMEOUT_S = 5.0  # a broker that has not accepted us by then is reported unreachable
REDIS_TIMEOUT_S = 1.0  # Redis is optional here: do not wait long for it
SCAN_COUNT = 500  # keys per SCAN round trip
POLL_S = 0.05  # inbox wait while collecting (the loop also checks its deadline)
ALL_TOPICS = f"{topics.PREFIX}/#"


class BrokerUnavailableError(EdgeoffError):
    """The broker cannot be reached or refused the connection."""


# ---------------------------------------------------------------------- what was seen (pure)


@dataclass
class _SiteSeen:
    status: SiteStatus | None = None
    profile: SiteProfile | None = None
    prediction: Prediction | None = None
    last_heartbeat: float | None = None  # monotonic arrival time
    first_heartbeat: float | None = None
    heartbeats: int = 0
    heartbeat_session: int | None = None


@dataclass(frozen=True)
class RedisView:
    """The state of record in Redis: predictions (with the worker that wrote them) and worker counters."""

    predictions: Mapping[str, Prediction] = field(default_factory=dict)
    prediction_workers: Mapping[str, str] = field(default_factory=dict)
    workers: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


class Observation:
    """Messages of `edgeoff/v1/#` folded into the latest view of each site and agent."""

    def __init__(self) -> None:
        self.sites: dict[str, _SiteSeen] = {}
        self.agents: dict[str, dict[str, Any]] = {}
        self.messages = 0
        self.unreadable = 0

    def add(self, message: Message, at: float) -> None:
        """Fold one message received at monotonic time `at` (bad messages are counted, not raised)."""
        self.messages += 1
        try:
            parsed = topics.parse_topic(message.topic)
            self._fold(parsed, message.payload, at)
        except (TopicError, DecodeError, ValueError):
            self.unreadable += 1

    def _fold(self, parsed: topics.ParsedTopic, payload: bytes, at: float) -> None:
        kind = parsed.kind
        if kind in ("tasks", "results"):
            return  # traffic, not state
        if kind == "policy":
            body = json.loads(payload)
            if not isinstance(body, dict):
                raise ValueError("a policy is a JSON object")
            self.agents[parsed.id] = body
            return
        site = self.sites.setdefault(parsed.id, _SiteSeen())
        if kind == "status":
            site.status = decode_json(SiteStatus, payload)
        elif kind == "profile":
            site.profile = decode_json(SiteProfile, payload)
        elif kind == "prediction":
            site.prediction = decode_json(Prediction, payload)
        elif kind == "heartbeat":
            beat = decode_msgpack(Heartbeat, payload)
            site.heartbeats += 1
            site.heartbeat_session = beat.session
            site.first_heartbeat = site.first_heartbeat if site.first_heartbeat is not None else at
            site.last_heartbeat = at

    def report(self, *, now: float, wall: float, redis: RedisView | None) -> dict[str, Any]:
        """The JSON-ready view: sites, workers, agents (ages relative to `now`/`wall`)."""
        redis_view = redis if redis is not None else RedisView()
        names = sorted(set(self.sites) | set(redis_view.predictions))
        sites = [self._site_row(name, now, wall, redis_view) for name in names]
        workers = [
            {
                "worker": worker,
                "sites": sorted(s for s, w in redis_view.prediction_workers.items() if w == worker),
                "heartbeats": counters.get("in_heartbeats", 0),
                "verdicts_up": counters.get("verdicts.up", 0),
                "verdicts_down": counters.get("verdicts.down", 0),
                "predictions_published": counters.get("predictions.published", 0),
                "dropped": sum(v for k, v in counters.items() if k.startswith("in_dropped.")),
            }
            for worker, counters in sorted(redis_view.workers.items())
        ]
        agents = [self._agent_row(name, body, wall) for name, body in sorted(self.agents.items())]
        return {"sites": sites, "workers": workers, "agents": agents, "unreadable": self.unreadable}

    def _site_row(self, name: str, now: float, wall: float, redis_view: RedisView) -> dict[str, Any]:
        seen = self.sites.get(name, _SiteSeen())
        prediction, source = seen.prediction, "mqtt"
        stored = redis_view.predictions.get(name)
        if stored is not None and (prediction is None or stored.version >= prediction.version):
            prediction, source = stored, "redis"
        rate = None
        if seen.heartbeats > 1 and seen.first_heartbeat is not None and seen.last_heartbeat is not None:
            span = seen.last_heartbeat - seen.first_heartbeat
            rate = round((seen.heartbeats - 1) / span, 2) if span > 0 else None
        return {
            "site": name,
            "type": seen.profile.type if seen.profile else None,
            "mips": seen.profile.mips if seen.profile else None,
            "state": seen.status.state if seen.status else None,
            "session": seen.status.session if seen.status else None,
            "status_age_s": _age(wall, seen.status.ts if seen.status else None),
            "heartbeat_age_s": _age(now, seen.last_heartbeat),
            "heartbeats": seen.heartbeats,
            "heartbeat_rate_hz": rate,
            "detector": None if prediction is None else ("down" if prediction.model == DOWN_MODEL else "up"),
            "availability": prediction.availability if prediction else None,
            "model": prediction.model if prediction else None,
            "prediction_version": prediction.version if prediction else None,
            "prediction_age_s": _age(wall, prediction.ts if prediction else None),
            "prediction_source": source if prediction else None,
            "worker": redis_view.prediction_workers.get(name),
        }

    @staticmethod
    def _agent_row(name: str, body: Mapping[str, Any], wall: float) -> dict[str, Any]:
        ts = body.get("ts")
        progress = body.get("progress")
        return {
            "agent": name,
            "engine": body.get("engine"),
            "policy_version": body.get("version"),
            "policy_age_s": _age(wall, float(ts)) if isinstance(ts, int | float) else None,
            "progress": progress if isinstance(progress, dict) else None,
            "last_fallback": body.get("last_fallback"),
        }


def _age(now: float, then: float | None) -> float | None:
    return None if then is None else round(max(0.0, now - then), 3)


# ---------------------------------------------------------------------- I/O: Redis and the broker


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def read_redis(url: str, *, prefix: str = KEY_PREFIX) -> RedisView | None:
    """Predictions of record and worker counters, or None when Redis does not answer."""
    import redis  # the broker-only path never needs it

    client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S)
    predictions: dict[str, Prediction] = {}
    owners: dict[str, str] = {}
    workers: dict[str, dict[str, int]] = {}
    try:
        for key in client.scan_iter(match=f"{prefix}prediction:*", count=SCAN_COUNT):
            site = _text(key)[len(f"{prefix}prediction:") :]
            raw = {_text(k): _text(v) for k, v in client.hgetall(key).items()}
            try:
                predictions[site] = Prediction(
                    site=site,
                    availability=float(raw["availability"]),
                    version=int(raw["version"]),
                    model=raw["model"],
                    ts=float(raw["ts"]),
                )
            except (KeyError, ValueError):
                continue  # a corrupt or partial record: the MQTT copy is shown instead
            if "worker" in raw:
                owners[site] = raw["worker"]
        for key in client.scan_iter(match=f"{prefix}worker:*:counters", count=SCAN_COUNT):
            worker = _text(key)[len(f"{prefix}worker:") : -len(":counters")]
            counts = client.hgetall(key)
            workers[worker] = {_text(k): int(v) for k, v in counts.items() if _text(v).lstrip("-").isdigit()}
    except redis.RedisError:
        return None
    finally:
        client.close()
    return RedisView(predictions=predictions, prediction_workers=owners, workers=workers)


class Listener:
    """A read-only MQTT subscription to every edgeoff topic, folded into an Observation."""

    def __init__(self, settings: BrokerSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.inbox: queue.Queue[MqttEvent] = queue.Queue()
        self.observation = Observation()
        self.client = MqttClient(
            settings=settings,
            client_id=f"edgeoff-status-{secrets.token_hex(4)}",
            inbox=self.inbox,
            max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES,
        )
        self.client.subscribe(ALL_TOPICS, qos=0)

    def connect(self) -> None:
        """Connect or raise BrokerUnavailableError (refused, or not accepted within the timeout)."""
        where = f"{self.settings.host}:{self.settings.port}"
        self.client.start()
        deadline = self.clock() + CONNECT_TIMEOUT_S
        while self.clock() < deadline:
            try:
                event = self.inbox.get(timeout=POLL_S)
            except queue.Empty:
                event = None
            if isinstance(event, Connected):
                return
            if isinstance(event, Disconnected) and event.reason_code != 0:
                raise BrokerUnavailableError(
                    f"the broker at {where} refused the connection (reason {event.reason_code})"
                )
            if isinstance(event, Message):
                self.observation.add(event, self.clock())
            if self.client.counters.get("connect_failures") > 0 and not self.client.connected.is_set():
                raise BrokerUnavailableError(f"cannot connect to the broker at {where}")
        raise BrokerUnavailableError(
            f"the broker at {where} did not accept the connection in {CONNECT_TIMEOUT_S:g} s"
        )

    def listen(self, seconds: float) -> None:
        """Fold every message that arrives in the next `seconds`."""
        deadline = self.clock() + seconds
        while (remaining := deadline - self.clock()) > 0:
            try:
                event = self.inbox.get(timeout=min(POLL_S, remaining))
            except queue.Empty:
                continue
            if isinstance(event, Message):
                self.observation.add(event, self.clock())

    def close(self) -> None:
        self.client.stop()
