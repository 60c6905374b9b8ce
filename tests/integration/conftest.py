"""Fixtures of the integration tests: a real Mosquitto and a real Redis per test, on free ports.

Each server is started from the binary on PATH with a throw-away configuration (no persistence), the
fixture waits until it accepts connections (polling with a deadline), yields its address, and terminates
it afterwards (SIGKILL when it does not stop in time). Tests are skipped with a clear reason when a
binary is missing. `Processes` starts daemons under test and cleans them up; `wait_for` waits on a
condition with a deadline; `Observer` is an MQTT client of the tests that records what it receives.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, TypeVar

import pytest
import redis

from edgeoff.wire.mqtt import Connected, Message, MqttClient, MqttEvent, wait_published
from edgeoff.wire.settings import BrokerSettings
from edgeoff.wire.store import TaskStore

from needs import missing

T = TypeVar("T")

START_TIMEOUT_S = 10.0  # a server or daemon that is not up by then is broken, not slow
STOP_TIMEOUT_S = 5.0  # after SIGTERM; then SIGKILL
POLL_S = 0.02  # polling interval of wait_for (the condition is cheap)


def wait_for(condition: Callable[[], T | Literal[False] | None], timeout: float, what: str) -> T:
    """Poll `condition` until it returns a truthy value (returned) or fail the test after `timeout`.

    The result is typed without the `None` and `False` that mean "not yet", so a condition like
    `lambda: result_of(...)` (`TaskResult | None`) gives a `TaskResult`.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(POLL_S)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _binary(name: str) -> str:
    path = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/local/sbin") / name) if p.is_file()), None
    )
    if path is None:
        missing(f"{name} is not installed (Debian/Ubuntu: apt-get install mosquitto redis-server)")
    return path


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)


def _no_restart() -> None:
    raise NotImplementedError("this server cannot be restarted")


@dataclass
class Server:
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    restart: Callable[[], None] = _no_restart  # stop and start again on the same port (mosquitto)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Server]:
    """A private Mosquitto on a free port (anonymous access for now, no persistence)."""
    binary = _binary("mosquitto")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"
        "set_tcp_nodelay true\n"
        "log_type error\nlog_type warning\n",
        encoding="utf-8",
    )
    log = (tmp_path / "mosquitto.log").open("wb")

    def launch() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: proc.poll() is not None or _accepts(port), START_TIMEOUT_S, "mosquitto to listen")
        if proc.poll() is not None:
            pytest.fail(
                f"mosquitto exited with {proc.returncode}: {(tmp_path / 'mosquitto.log').read_text()}"
            )
        return proc

    server = Server("127.0.0.1", port, launch())

    def restart() -> None:
        _terminate(server.proc)
        server.proc = launch()

    server.restart = restart
    try:
        yield server
    finally:
        _terminate(server.proc)
        log.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Server]:
    """A private redis-server on a free port (no RDB, no AOF)."""
    binary = _binary("redis-server")
    port = free_port()
    args = [
        binary,
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
    ]
    log = (tmp_path / "redis.log").open("wb")
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2)

    def launch() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

        def pong() -> bool:
            if proc.poll() is not None:
                return True
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_for(pong, START_TIMEOUT_S, "redis-server to answer PING")
        if proc.poll() is not None:
            pytest.fail(f"redis-server exited with {proc.returncode}: {(tmp_path / 'redis.log').read_text()}")
        return proc

    server = Server("127.0.0.1", port, launch())

    def restart() -> None:
        _terminate(server.proc)
        server.proc = launch()

    server.restart = restart
    try:
        yield server
    finally:
        client.close()
        _terminate(server.proc)
        log.close()


@pytest.fixture
def store(redis_server: Server) -> Iterator[TaskStore]:
    task_store = TaskStore(redis.Redis(host=redis_server.host, port=redis_server.port))
    yield task_store
    task_store.close()


class Observer:
    """A test's own MQTT client (the adapter under test): records every message it receives."""

    def __init__(self, broker: Server, client_id: str) -> None:
        self.inbox: queue.Queue[MqttEvent] = queue.Queue()
        self.client = MqttClient(
            settings=BrokerSettings(host=broker.host, port=broker.port), client_id=client_id, inbox=self.inbox
        )
        self.messages: list[Message] = []
        self.connects = 0

    def start(self, *filters: str) -> Observer:
        for topic in filters:
            self.client.subscribe(topic, qos=1)
        self.client.start()
        wait_for(lambda: self._drain() or self.connects > 0, START_TIMEOUT_S, "the observer to connect")
        return self

    def _drain(self) -> bool:
        while True:
            try:
                event = self.inbox.get_nowait()
            except queue.Empty:
                return False
            if isinstance(event, Message):
                self.messages.append(event)
            elif isinstance(event, Connected):
                self.connects += 1

    def on(self, topic: str) -> list[Message]:
        """Messages received so far on `topic`."""
        self._drain()
        return [m for m in self.messages if m.topic == topic]

    def wait(
        self, condition: Callable[[Observer], T | Literal[False] | None], timeout: float, what: str
    ) -> T:
        def check() -> T | Literal[False] | None:
            self._drain()
            return condition(self)

        return wait_for(check, timeout, what)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        assert wait_published(info, 5.0), f"publish to {topic} was not acknowledged"

    def stop(self) -> None:
        self.client.stop()


@pytest.fixture
def observer(mosquitto: Server) -> Iterator[Callable[..., Observer]]:
    """Factory of started observers: `observer("edgeoff/v1/#")`; all stopped at the end."""
    made: list[Observer] = []

    def make(*filters: str) -> Observer:
        obs = Observer(mosquitto, client_id=f"test-observer-{len(made)}")
        made.append(obs)
        return obs.start(*filters)

    yield make
    for obs in made:
        obs.stop()


class Processes:
    """Daemons started by a test; each logs to a file; all terminated (then killed) at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, args: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log = (self.tmp_path / f"{name}-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append((proc, log))
        return proc

    def log_of(self, proc: subprocess.Popen[bytes]) -> str:
        for p, log in self.procs:
            if p is proc:
                log.flush()
                return Path(log.name).read_text(encoding="utf-8", errors="replace")
        raise KeyError(proc.pid)

    def close(self) -> None:
        for proc, log in self.procs:
            _terminate(proc)
            log.close()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    yield procs
    procs.close()


@pytest.fixture
def start_site(
    mosquitto: Server, redis_server: Server, processes: Processes
) -> Callable[..., subprocess.Popen[bytes]]:
    """Start `python -m site_daemon --site ID ...` against the test's broker and Redis.

    `processes` comes last so that the daemons stop before the broker and Redis do.
    """

    def start(site: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        base_env = {
            "EDGEOFF_SITE_BROKER__HOST": mosquitto.host,
            "EDGEOFF_SITE_BROKER__PORT": str(mosquitto.port),
            "EDGEOFF_SITE_REDIS__URL": f"redis://{redis_server.host}:{redis_server.port}/0",
            "EDGEOFF_SITE_LOG_LEVEL": "INFO",
        }
        args = [sys.executable, "-m", "site_daemon", "--site", site, *extra]
        return processes.start(args, {**base_env, **(env or {})}, name=f"site-{site}")

    return start


def send_signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    proc.send_signal(sig)
