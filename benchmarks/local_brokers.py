"""Throw-away Mosquitto and Redis for the live benchmarks, on free loopback ports.

Anonymous, loopback only, no persistence: the benchmarks measure the project's code, not accounts or disk,
and do not depend on how `edgeoff up` provisions its brokers.
"""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path
from typing import Any

import redis

from launcher.up.children import Children

TIMEOUT_S = 20.0  # seconds for a server to start answering


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(ready: Any, timeout: float, what: str) -> None:
    """Poll `ready()` every 50 ms until it is true; RuntimeError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def start_brokers(children: Children, workdir: Path) -> tuple[str, int, str]:
    """A private Mosquitto and Redis on free loopback ports: (MQTT host, MQTT port, Redis URL).

    Both loops go through this one broker with the same settings. The broker is a throw-away one of the
    benchmark (anonymous, loopback, no persistence) so that neither loop pays for accounts or disk, and the
    benchmark does not depend on how `edgeoff up` provisions its brokers.
    """
    mosquitto, redis_server = shutil.which("mosquitto"), shutil.which("redis-server")
    if mosquitto is None or redis_server is None:
        raise SystemExit("needs mosquitto and redis-server on PATH (apt-get install mosquitto redis-server)")
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence false\n"
        "max_queued_messages 10000\n"
        "max_inflight_messages 20\n"  # as brokers/mosquitto: above WINDOW, so the window is the limit
        "set_tcp_nodelay true\n"
        "log_dest stderr\nlog_type error\nlog_type warning\n",
        encoding="utf-8",
    )
    children.start("mosquitto", [mosquitto, "-c", str(conf)])
    wait_until(lambda: listens(port), TIMEOUT_S, "mosquitto")
    redis_port = free_port()
    args = ["--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    children.start("redis", [redis_server, *args, "--dir", str(workdir)])
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    wait_until(lambda: _redis_answers(redis_url), TIMEOUT_S, "redis-server")
    return "127.0.0.1", port, redis_url
