"""`edgeoff status`: sites, workers and agents of a running system, from the broker and Redis.

    edgeoff status [--broker HOST:PORT] [--username observer --password-file FILE] [--redis URL]
                   [--seconds 3] [--watch] [--json]

Subscribes to `edgeoff/v1/#` (as the read-only observer account, where the broker requires one) for
`--seconds`: retained statuses, profiles, predictions and policies arrive at once, heartbeats show each
site's last heartbeat age and rate. Reads the predictions of record and the workers' counters from Redis
when it answers (Redis is optional: without it the retained MQTT copies are shown). Prints one table per
kind (rich), or the same as one JSON object with `--json`; `--watch` keeps listening and redraws every
`--seconds` until Ctrl-C. An unreachable or refusing broker is one line on stderr and exit code 2.

Ages are measured here: `heartbeat_age_s` from the arrival of the last heartbeat at this command,
`status_age_s` and `prediction_age_s` from the `ts` in the message (the sender's wall clock).
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeoff.errors import EdgeoffError
from edgeoff.wire import topics
from edgeoff.wire.codec import DEFAULT_MAX_MESSAGE_BYTES, decode_json, decode_msgpack
from edgeoff.wire.errors import DecodeError, TopicError
from edgeoff.wire.messages import Heartbeat, Prediction, SiteProfile, SiteStatus
from edgeoff.wire.mqtt import Connected, Disconnected, Message, MqttClient, MqttEvent
from edgeoff.wire.settings import BrokerSettings
from edgeoff.wire.store import KEY_PREFIX

__all__ = ["BrokerUnavailableError", "Observation", "RedisView", "add_parser", "read_redis", "run"]

DEFAULT_BROKER = "127.0.0.1:1883"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
DEFAULT_SECONDS = 3.0  # enough for every retained message and about twenty heartbeats per site
CONNECT_TIMEOUT_S = 5.0  # a broker that has not accepted us by then is reported unreachable
REDIS_TIMEOUT_S = 1.0  # Redis is optional here: do not wait long for it
SCAN_COUNT = 500  # keys per SCAN round trip
EXIT_OK = 0
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


def _broker_settings(args: argparse.Namespace) -> BrokerSettings:
    host, sep, port = str(args.broker).rpartition(":")
    if not sep or not port.isdigit():
        raise EdgeoffError(f"--broker must be HOST:PORT, got {args.broker!r}")
    try:
        return BrokerSettings(
            host=host or "127.0.0.1",
            port=int(port),
            username=args.username,
            password_file=args.password_file,
            connect_timeout_s=CONNECT_TIMEOUT_S,
        )
    except ValueError as exc:  # pydantic's ValidationError
        raise EdgeoffError(f"--broker {args.broker}: {exc}") from None


class _Listener:
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


# ---------------------------------------------------------------------- rendering


def _fmt(value: object, spec: str = "", suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:{spec}}{suffix}" if spec else f"{value}{suffix}"


def render(report: Mapping[str, Any]) -> Any:
    """rich renderables of a report: one table per kind."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    sites = Table(title="sites", title_justify="left")
    for column in (
        "site",
        "type",
        "state",
        "session",
        "heartbeat",
        "rate",
        "availability",
        "model",
        "v",
        "worker",
    ):
        sites.add_column(
            column, justify="right" if column in ("session", "rate", "availability", "v") else "left"
        )
    for row in report["sites"]:
        state = row["state"] or "-"
        style = {"online": "green", "offline": "red"}.get(state, "yellow")
        hb_age = row["heartbeat_age_s"]
        sites.add_row(
            row["site"],
            _fmt(row["type"]),
            Text(state, style=style),
            _fmt(row["session"]),
            "-" if hb_age is None else f"{hb_age:.2f} s ago",
            _fmt(row["heartbeat_rate_hz"], ".1f", "/s"),
            _fmt(row["availability"], ".4f"),
            _fmt(row["model"]),
            _fmt(row["prediction_version"]),
            _fmt(row["worker"]),
        )
    parts: list[Any] = [sites]
    if report["workers"]:
        workers = Table(title="workers", title_justify="left")
        for column in ("worker", "sites", "heartbeats", "up", "down", "predictions", "dropped"):
            workers.add_column(column, justify="left" if column in ("worker", "sites") else "right")
        for row in report["workers"]:
            workers.add_row(
                row["worker"],
                ", ".join(row["sites"]) or "-",
                str(row["heartbeats"]),
                str(row["verdicts_up"]),
                str(row["verdicts_down"]),
                str(row["predictions_published"]),
                str(row["dropped"]),
            )
        parts.append(workers)
    if report["agents"]:
        agents = Table(title="agents", title_justify="left")
        for column in ("agent", "engine", "policy", "age", "apps done", "fallbacks", "last fallback"):
            agents.add_column(column)
        for row in report["agents"]:
            progress = row["progress"] or {}
            fallback = row["last_fallback"]
            agents.add_row(
                row["agent"],
                _fmt(row["engine"]),
                _fmt(row["policy_version"]),
                _fmt(row["policy_age_s"], ".1f", " s"),
                _fmt(progress.get("apps_done")),
                _fmt(progress.get("fallbacks")),
                "-" if fallback is None else json.dumps(fallback, separators=(",", ":"))[:80],
            )
        parts.append(agents)
    redis_state = report.get("redis", "-")
    parts.append(
        Text(f"broker {report.get('broker')}, redis {redis_state}, {report.get('observed_s')} s observed")
    )
    return Group(*parts)


# ---------------------------------------------------------------------- the command


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status", help="live table of sites, workers and agents", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--broker", default=DEFAULT_BROKER, help=f"HOST:PORT (default {DEFAULT_BROKER})")
    parser.add_argument("--username", help="broker account (the observer account is read-only)")
    parser.add_argument("--password-file", type=Path, help="file holding the broker password")
    parser.add_argument("--redis", default=DEFAULT_REDIS, help=f"Redis URL (default {DEFAULT_REDIS})")
    parser.add_argument("--no-redis", action="store_true", help="do not read Redis")
    parser.add_argument(
        "--seconds",
        type=float,
        default=DEFAULT_SECONDS,
        help=f"listening window (default {DEFAULT_SECONDS:g})",
    )
    parser.add_argument("--watch", action="store_true", help="refresh every --seconds until Ctrl-C")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.set_defaults(func=run)


def _report(listener: _Listener, args: argparse.Namespace, observed_s: float) -> dict[str, Any]:
    redis_view = None if args.no_redis else read_redis(args.redis)
    report = listener.observation.report(now=listener.clock(), wall=time.time(), redis=redis_view)
    redis_state = "off" if args.no_redis else ("ok" if redis_view is not None else "unreachable")
    return {
        "broker": f"{listener.settings.host}:{listener.settings.port}",
        "redis": redis_state,
        "observed_s": round(observed_s, 3),
        **report,
    }


def run(args: argparse.Namespace) -> int:
    if args.seconds <= 0:
        raise EdgeoffError("--seconds must be positive")
    logging.getLogger("edgeoff.wire.mqtt").setLevel(logging.ERROR)  # failures become our one line
    listener = _Listener(_broker_settings(args))
    try:
        listener.connect()
        started = listener.clock()
        listener.listen(args.seconds)
        if args.watch:
            return _watch(listener, args, started)
        report = _report(listener, args, listener.clock() - started)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            from rich.console import Console

            Console().print(render(report))
        return EXIT_OK
    finally:
        listener.close()


def _watch(listener: _Listener, args: argparse.Namespace, started: float) -> int:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    try:
        if args.json:
            while True:
                report = _report(listener, args, listener.clock() - started)
                print(json.dumps(report, separators=(",", ":")), flush=True)
                listener.listen(args.seconds)
        with Live(console=console, auto_refresh=False) as live:
            while True:
                live.update(render(_report(listener, args, listener.clock() - started)), refresh=True)
                listener.listen(args.seconds)
    except KeyboardInterrupt:
        return EXIT_OK
