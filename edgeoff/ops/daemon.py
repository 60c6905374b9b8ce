"""The shell every daemon shares: `run_daemon` (its `main()`) and `Operations` (its observability).

    parse -> settings (exit 2 on a bad one) -> logging -> SIGTERM/SIGINT set a stop flag
          -> build, retried while Redis cannot be reached (exit 2 on EdgeoffError)
          -> metrics server, Redis probe, loop watchdog -> serve -> exit 0

The daemon's serve loop calls :meth:`Operations.tick` on every pass (cheap: two comparisons when nothing
is due). `tick` sends READY=1 to systemd after the first connection, WATCHDOG=1 at half the unit's
watchdog timeout (so a stuck loop gets the daemon restarted), rewrites the health file at most every
`health_interval_s` and feeds the loop watchdog (edgeoff.ops.watchdog: a loop silent for `loop_watchdog_s`
ends the process with exit 70, so that its restart policy applies). Redis reachability is probed on a
thread of its own with a short timeout, so a slow Redis never stalls the loop (and with it the heartbeats).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Literal, Protocol, TypeVar

import redis
from pydantic import ValidationError

from edgeoff.errors import EdgeoffError
from edgeoff.ops.health import HealthRecord, write_health
from edgeoff.ops.logs import setup_logging
from edgeoff.ops.metrics import Metrics, SupportsSnapshot
from edgeoff.ops.settings import OpsSettings
from edgeoff.ops.systemd import Notifier
from edgeoff.ops.watchdog import LoopWatchdog
from edgeoff.wire.settings import RedisSettings

__all__ = [
    "EXIT_CONFIG",
    "MAX_IDLE_WAIT_S",
    "ObservedSettings",
    "Operations",
    "RedisProbe",
    "Service",
    "run_daemon",
]

log = logging.getLogger("edgeoff.ops")

# A serve loop waits at most this long before it re-checks its stop flag (a signal handler only sets the
# flag); an event wakes it at once, so this bounds idle waits only.
MAX_IDLE_WAIT_S = 0.1
EXIT_CONFIG = 2  # bad settings or configuration: the code argparse uses for usage errors
PROBE_TIMEOUT_S = 1.0  # a Redis that takes longer to answer PING is not ready
PROBE_JOIN_S = 5.0
START_RETRY_MIN_S = 0.5  # first wait when Redis cannot be reached at start; doubles up to the max
START_RETRY_MAX_S = 10.0


class ObservedSettings(Protocol):
    """What `run_daemon` needs of a daemon's settings (DaemonSettings + OpsSettings provide it)."""

    @property
    def log_level(self) -> str: ...
    @property
    def log_format(self) -> Literal["text", "json"]: ...
    @property
    def metrics_port(self) -> int | None: ...
    @property
    def metrics_host(self) -> str: ...
    @property
    def health_file(self) -> Path | None: ...
    @property
    def health_interval_s(self) -> float: ...
    @property
    def loop_watchdog_s(self) -> float: ...
    @property
    def redis(self) -> RedisSettings: ...


class Service(Protocol):
    """A built daemon: serves until the stop flag given to `build` is set."""

    def serve(self) -> object: ...


class Probe(Protocol):
    def check(self) -> bool: ...

    def close(self) -> None: ...


class RedisProbe:
    """PING on a client of its own: short timeout, no retries (the daemon's client retries for minutes)."""

    def __init__(self, settings: RedisSettings) -> None:
        timeout = min(PROBE_TIMEOUT_S, settings.socket_timeout_s)
        self._client = redis.Redis.from_url(
            settings.url.get_secret_value(), socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def check(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self._client.close()


class Operations:
    """Metrics, health file, systemd notifications and readiness of one daemon."""

    def __init__(
        self,
        *,
        name: str,
        settings: OpsSettings | ObservedSettings | None = None,
        notifier: Notifier | None = None,
        probe: Probe | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        watchdog: LoopWatchdog | None = None,
    ) -> None:
        self.name = name
        self.settings = settings if settings is not None else OpsSettings()
        self.notifier = notifier if notifier is not None else Notifier(None)
        self.metrics = Metrics()
        self.clock = clock
        self.wall_clock = wall_clock
        self._probe = probe
        self.watchdog = (
            watchdog if watchdog is not None else LoopWatchdog(name, self.settings.loop_watchdog_s)
        )
        self._redis_ok: bool | None = None if probe is None else False
        self._probe_stop = threading.Event()
        self._probe_thread: threading.Thread | None = None
        self._ready_sent = False
        self._stopping = False
        self._next_report = 0.0
        self._next_watchdog = 0.0
        self._health_failing = False
        self._is_ready = False
        self._watched: list[SupportsSnapshot] = []
        self._ready = self.metrics.gauge("ready", "1 when connected to the broker and Redis answers.")
        self._broker = self.metrics.gauge("broker_connected", "1 while connected to the MQTT broker.")
        self._redis = self.metrics.gauge("redis_reachable", "1 when Redis answered the last probe.")
        self._loop = self.metrics.gauge(
            "loop_heartbeat_timestamp_seconds", "Wall clock of the serve loop's last health report."
        )

    # ------------------------------------------------------------------ wiring

    def watch(self, counters: SupportsSnapshot) -> None:
        """Export a daemon's counters as Prometheus counters (read at scrape time); the health record
        shows their refused publishes (`out_denied`)."""
        self.metrics.watch(counters)
        self._watched.append(counters)

    def start(self) -> None:
        """Serve /metrics (if a port is set), start probing Redis and the loop watchdog. Raises OSError
        (port taken)."""
        port = self.settings.metrics_port
        if port:
            bound = self.metrics.serve(self.settings.metrics_host, port)
            log.info("%s: metrics on http://%s:%d/metrics", self.name, self.settings.metrics_host, bound)
        observed = bool(port) or self.settings.health_file is not None
        if self._probe is not None and observed and self._probe_thread is None:
            self._probe_thread = threading.Thread(target=self._probe_loop, name="redis-probe", daemon=True)
            self._probe_thread.start()
        self.watchdog.start()

    def _probe_loop(self) -> None:
        assert self._probe is not None
        while True:
            self._redis_ok = self._probe.check()
            if self._probe_stop.wait(self.settings.health_interval_s):
                return

    # ------------------------------------------------------------------ called by the serve loop

    def tick(self, *, connected: bool) -> None:
        """One pass of the serve loop: READY=1 once connected, WATCHDOG=1 and the health file when due."""
        now = self.clock()
        self.watchdog.beat()
        if connected and not self._ready_sent:
            self._ready_sent = True
            self.notifier.ready(status=f"{self.name}: connected")
        interval = self.notifier.watchdog_interval_s
        if interval is not None and now >= self._next_watchdog:
            self._next_watchdog = now + interval
            self.notifier.watchdog()
        if now >= self._next_report:
            self._next_report = now + self.settings.health_interval_s
            self._report(connected=connected)

    def stopping(self) -> None:
        """The daemon is shutting down: STOPPING=1 and a not-ready health record (once)."""
        if self._stopping:
            return
        self._stopping = True
        self.watchdog.disarm()  # the loop has ended on purpose
        self.notifier.stopping()
        self._report(connected=False)

    @property
    def ready(self) -> bool:
        """Readiness at the last report: connected, Redis answering (when probed), not stopping."""
        return self._is_ready

    def _report(self, *, connected: bool) -> None:
        redis_ok = self._redis_ok
        ready = connected and redis_ok is not False and not self._stopping
        wall = self.wall_clock()
        self._is_ready = ready
        self._ready.set(1 if ready else 0)
        self._broker.set(1 if connected else 0)
        self._redis.set(1 if redis_ok else 0)
        self._loop.set(wall)
        path = self.settings.health_file
        if path is None:
            return
        denied = sum(c.snapshot().get("out_denied", 0) for c in self._watched)
        record = HealthRecord(
            name=self.name,
            pid=os.getpid(),
            ts=wall,
            ready=ready,
            broker=connected,
            redis=redis_ok,
            publishes_denied=denied,
        )
        try:
            write_health(path, record)
        except OSError as exc:
            if not self._health_failing:
                log.warning("%s: cannot write the health file %s: %s", self.name, path, exc)
            self._health_failing = True
        else:
            self._health_failing = False

    def close(self) -> None:
        self.watchdog.close()
        self._probe_stop.set()
        if self._probe_thread is not None:
            self._probe_thread.join(PROBE_JOIN_S)
            self._probe_thread = None
        if self._probe is not None:
            self._probe.close()
        self.metrics.close()


S = TypeVar("S", bound=ObservedSettings)


def _settings_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "settings"
    return f"{where}: {err['msg']}"


def run_daemon(
    *,
    prog: str,
    argv: Sequence[str] | None,
    parser: argparse.ArgumentParser,
    settings_from_args: Callable[[argparse.Namespace], S],
    build: Callable[[S, threading.Event, Operations], Service],
    label: Callable[[S], Mapping[str, str]],
    check_redis: bool = True,
    environ: Mapping[str, str] | None = None,
) -> int:
    """A daemon's `main()`: exit 0 after a clean stop, 2 on bad settings or configuration.

    `label` names the daemon in every log line and in its health record (`{"site": "ed"}`);
    `check_redis` makes readiness include a Redis probe; `environ` carries systemd's NOTIFY_SOCKET and
    WATCHDOG_USEC (default: the process environment).
    """
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        print(f"{prog}: error: {_settings_error(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    context = label(settings)
    try:
        setup_logging(settings.log_level, settings.log_format, context)
    except ValueError as exc:  # an unknown level name
        print(f"{prog}: error: log_level: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    stop = threading.Event()
    ops = Operations(
        name=" ".join(f"{key}={value}" for key, value in context.items()) or prog,
        settings=settings,
        notifier=Notifier.from_environ(os.environ if environ is None else environ),
        probe=RedisProbe(settings.redis) if check_redis else None,
    )

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()  # only a flag: the serve loop (or the start-up retry) notices it within its wait

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            service = _build_when_redis_answers(prog, settings, stop, ops, build)
        except EdgeoffError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        if service is None:  # stopped while waiting for Redis
            return 0
        try:
            ops.start()
        except OSError as exc:
            print(f"{prog}: error: metrics port {settings.metrics_port}: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        try:
            service.serve()
        finally:
            ops.stopping()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        ops.close()
    return 0


def _build_when_redis_answers(
    prog: str,
    settings: S,
    stop: threading.Event,
    ops: Operations,
    build: Callable[[S, threading.Event, Operations], Service],
) -> Service | None:
    """`build`, retried while Redis cannot be reached (not resolvable or not listening yet, as in a cold
    start of a cluster), with exponential backoff (0.5 s doubling to 10 s) and one log line per attempt,
    keeping the health file fresh (not ready) meanwhile; None when `stop` is set. A refused password is a
    configuration error (EdgeoffError), not retried."""
    delay = START_RETRY_MIN_S
    while True:
        try:
            return build(settings, stop, ops)
        except redis.AuthenticationError as exc:
            raise EdgeoffError(f"Redis refused the credentials: {exc}") from exc
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            wait = random.uniform(delay / 2, delay)
            log.warning("%s: Redis not reachable at start (%s); retrying in %.1f s", prog, exc, wait)
            delay = min(delay * 2, START_RETRY_MAX_S)
        # Alive but not ready while it waits: a fresh, not-ready health record (a liveness probe must not
        # kill a daemon that is only waiting for Redis) and systemd's watchdog pings.
        deadline = time.monotonic() + wait
        while (remaining := deadline - time.monotonic()) > 0:
            ops.tick(connected=False)
            if stop.wait(min(remaining, ops.settings.health_interval_s)):
                return None
