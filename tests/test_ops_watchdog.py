"""The daemon shell's self-watchdog (a silent serve loop ends the process) and its start-up retry of Redis
(a daemon started before Redis resolves waits for it instead of exiting with a traceback)."""

from __future__ import annotations

import argparse
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from edgeoff.ops import (
    EXIT_CONFIG,
    HealthCheck,
    Operations,
    OpsSettings,
    check_health,
    read_health,
    run_daemon,
)
from edgeoff.ops import daemon as ops_daemon
from edgeoff.ops.watchdog import EXIT_HUNG, LoopWatchdog
from edgeoff.wire.settings import DaemonSettings, RedisSettings
from edgeoff.wire.store import redis_client

pytestmark = pytest.mark.timeout(30)


class FakeClock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# ---------------------------------------------------------------------- the loop watchdog


def test_watchdog_fires_once_after_the_limit_without_beats(caplog: pytest.LogCaptureFixture) -> None:
    clock, hangs = FakeClock(), []
    dog = LoopWatchdog("site=ed", 30.0, clock=clock, on_hang=lambda: hangs.append(clock.t))
    clock.t += 29.9
    assert not dog.check()
    dog.beat()  # a pass of the loop resets the count
    clock.t += 29.9
    assert not dog.check()
    clock.t += 0.2
    with caplog.at_level(logging.CRITICAL, logger="edgeoff.ops"):
        assert dog.check()
    assert hangs == [clock.t]
    assert [r.getMessage() for r in caplog.records] == [
        f"site=ed: serve loop silent for 30 s (loop_watchdog_s=30): exiting {EXIT_HUNG} "
        "so that it is restarted"
    ]
    clock.t += 100
    assert not dog.check()  # one exit, never a second call
    assert len(hangs) == 1


def test_watchdog_off_at_zero_and_disarmed_by_a_stopping_daemon() -> None:
    clock, hangs = FakeClock(), []
    off = LoopWatchdog("x", 0.0, clock=clock, on_hang=lambda: hangs.append(1))
    ops = Operations(
        name="x",
        settings=OpsSettings(),
        clock=clock,
        watchdog=LoopWatchdog("x", 5.0, clock=clock, on_hang=lambda: hangs.append(2)),
    )
    ops.tick(connected=True)
    clock.t += 4.0
    ops.tick(connected=True)  # tick feeds the watchdog
    clock.t += 4.0
    assert not ops.watchdog.check()
    ops.stopping()  # the loop ends on purpose: no exit for the silence that follows
    clock.t += 1000
    assert not off.check()
    assert not ops.watchdog.check()
    assert hangs == []
    ops.close()


def test_watchdog_thread_ends_a_loop_that_stopped_ticking() -> None:
    fired = threading.Event()
    dog = LoopWatchdog("x", 0.2, on_hang=fired.set)
    dog.start()
    try:
        assert fired.wait(10), "the watchdog thread never fired"
    finally:
        dog.close()


def test_default_limit_is_on_and_a_setting() -> None:
    assert OpsSettings().loop_watchdog_s == 30.0
    assert Operations(name="x", settings=OpsSettings(loop_watchdog_s=0)).watchdog.check() is False


# ---------------------------------------------------------------------- Redis at start


class _Settings(DaemonSettings, OpsSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEOFF_OPS_WATCHDOG_TEST_")


class _Service:
    def __init__(self, ops: Operations) -> None:
        self.ops = ops

    def serve(self) -> None:
        self.ops.tick(connected=True)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(build: Any, health_file: Path | None = None) -> int:
    return run_daemon(
        prog="t",
        argv=[],
        parser=argparse.ArgumentParser(prog="t"),
        settings_from_args=lambda args: _Settings(health_file=health_file),
        build=build,
        label=lambda s: {"t": "x"},
        check_redis=False,
        environ={},
    )


@pytest.fixture
def fast_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops_daemon, "START_RETRY_MIN_S", 0.01)
    monkeypatch.setattr(ops_daemon, "START_RETRY_MAX_S", 0.02)


@pytest.mark.usefixtures("fast_retry")
def test_build_is_retried_while_redis_cannot_be_reached(caplog: pytest.LogCaptureFixture) -> None:
    """The real client factory against a port nobody listens on, twice, then Redis 'comes up'."""
    url = SecretStr(f"redis://127.0.0.1:{_closed_port()}/0")
    attempts: list[int] = []

    def build(settings: _Settings, stop: threading.Event, ops: Operations) -> _Service:
        attempts.append(1)
        if len(attempts) <= 2:
            redis_client(RedisSettings(url=url, retries=0, socket_timeout_s=1.0))
        return _Service(ops)

    with caplog.at_level(logging.WARNING, logger="edgeoff.ops"):
        assert _run(build) == 0
    assert len(attempts) == 3
    retries = [r for r in caplog.records if "Redis not reachable at start" in r.getMessage()]
    assert len(retries) == 2
    assert all(r.exc_info is None for r in retries)  # one line each, no traceback


@pytest.mark.usefixtures("fast_retry")
def test_a_daemon_waiting_for_redis_is_alive_but_not_ready(tmp_path: Path) -> None:
    """A liveness probe (health file fresh) must not kill it; readiness (ready) keeps traffic away."""
    health = tmp_path / "health.json"
    seen: list[tuple[HealthCheck, bool]] = []

    def build(settings: _Settings, stop: threading.Event, ops: Operations) -> _Service:
        if health.exists():
            alive = check_health(health, max_age_s=10.0, need_ready=False, now=time.time())
            seen.append((alive, read_health(health).ready))
            return _Service(ops)
        raise redis.ConnectionError("Error -2 connecting to redis:6379. Name or service not known.")

    assert _run(build, health) == 0
    assert len(seen) == 1
    alive, ready = seen[0]
    assert alive.ok, alive.message
    assert ready is False


@pytest.mark.usefixtures("fast_retry")
def test_refused_redis_credentials_are_a_configuration_error(capsys: pytest.CaptureFixture[str]) -> None:
    def build(settings: _Settings, stop: threading.Event, ops: Operations) -> _Service:
        raise redis.AuthenticationError("invalid username-password pair")

    assert _run(build) == EXIT_CONFIG
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["t: error: Redis refused the credentials: invalid username-password pair"]


def test_stop_while_waiting_for_redis_exits_0(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ops_daemon, "START_RETRY_MIN_S", 60.0)
    attempts: list[threading.Event] = []

    def build(settings: _Settings, stop: threading.Event, ops: Operations) -> _Service:
        attempts.append(stop)
        threading.Timer(0.1, stop.set).start()  # SIGTERM arrives during the wait
        raise redis.ConnectionError("Error -2 connecting to redis:6379. Name or service not known.")

    assert _run(build) == 0
    assert len(attempts) == 1
