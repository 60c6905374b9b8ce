"""Observability of real daemon processes against a real Mosquitto and Redis: /metrics, health files,
sd_notify from the serve loop, and `edgeoff status --json`."""

from __future__ import annotations

import functools
import json
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Processes, Server, free_port, wait_for

pytestmark = pytest.mark.timeout(60)

START_S = 15.0  # a daemon imports numpy and scikit-learn before it connects
STOP_S = 10.0
CLI_S = 20.0  # one `edgeoff` command (imports, connect, listen)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples | None:
    """Every sample of http://127.0.0.1:port/metrics, or None while nothing serves there."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode("utf-8")
    except (urllib.error.URLError, OSError):
        return None
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def health(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "edgeoff.commands.health", str(path), *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=CLI_S, check=False)


def is_ready(path: Path) -> bool:
    """The health file at `path` says alive and ready, and is at most 5 s old."""
    return health(path, "--ready", "--max-age", "5").returncode == 0


class NotifyListener:
    """A stand-in for systemd's notify socket: a thread drains it (as systemd does) into `messages`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.messages: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(path)
        self._sock.settimeout(0.1)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._closed.is_set():
            try:
                self.messages.append(self._sock.recv(4096).decode("utf-8"))
            except TimeoutError:
                continue

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self._sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifyListener]:
    listener = NotifyListener(str(tmp_path / "notify.sock"))
    yield listener
    listener.close()


def test_metrics_health_notify_and_status_of_a_running_site_and_worker(
    mosquitto: Server,
    redis_server: Server,
    processes: Processes,
    start_site: Callable[..., subprocess.Popen[bytes]],
    notify_socket: NotifyListener,
    tmp_path: Path,
) -> None:
    site_port, worker_port = free_port(), free_port()
    site_health, worker_health = tmp_path / "site-health.json", tmp_path / "worker-health.json"
    site = start_site(
        "ed",
        "--metrics-port",
        str(site_port),
        "--health-file",
        str(site_health),
        env={
            "EDGEOFF_SITE_METRICS_HOST": "127.0.0.1",
            "EDGEOFF_SITE_LOG_FORMAT": "json",
            "EDGEOFF_SITE_HEALTH_INTERVAL_S": "0.2",
            "NOTIFY_SOCKET": notify_socket.path,
            "WATCHDOG_USEC": "400000",  # WATCHDOG=1 every 0.2 s
        },
    )
    redis_url = f"redis://{redis_server.host}:{redis_server.port}/0"
    worker_env = {
        "EDGEOFF_WORKER_BROKER__HOST": mosquitto.host,
        "EDGEOFF_WORKER_BROKER__PORT": str(mosquitto.port),
        "EDGEOFF_WORKER_REDIS__URL": redis_url,
        "EDGEOFF_WORKER_STATS_S": "0.2",
        "EDGEOFF_WORKER_METRICS_PORT": str(worker_port),
        "EDGEOFF_WORKER_METRICS_HOST": "127.0.0.1",
        "EDGEOFF_WORKER_HEALTH_FILE": str(worker_health),
        "EDGEOFF_WORKER_HEALTH_INTERVAL_S": "0.2",
    }
    worker = processes.start(
        [sys.executable, "-m", "prediction_worker", "--worker-id", "w0"], worker_env, name="worker"
    )

    # metrics: the site's heartbeats are counted on both ends, the worker's verdict and prediction too
    def site_metrics() -> Samples | None:
        samples = scrape(site_port)
        return samples if samples and value(samples, "edgeoff_heartbeats_sent_total") >= 5 else None

    def worker_metrics() -> Samples | None:
        samples = scrape(worker_port)
        if not samples:
            return None
        ready = value(samples, "edgeoff_predictions_published_total") >= 1
        return samples if ready and value(samples, "edgeoff_heartbeats_received_total") >= 5 else None

    s = wait_for(site_metrics, START_S, "site metrics with heartbeats")
    assert value(s, "edgeoff_mqtt_messages_sent_total") >= 5
    assert value(s, "edgeoff_mqtt_connects_total") == 1
    assert value(s, "edgeoff_ready") == 1
    assert ("edgeoff_task_seconds_count", ()) not in s  # no task ran yet: no labelled child
    w = wait_for(worker_metrics, START_S, "worker metrics with heartbeats and a prediction")
    assert value(w, "edgeoff_mqtt_messages_received_total") >= 5
    assert value(w, "edgeoff_detector_verdicts_total", verdict="up") >= 1
    assert value(w, "edgeoff_predicted_availability", site="ed") > 0
    assert value(w, "edgeoff_redis_reachable") == 1

    # health: alive and ready while running
    for path in (site_health, worker_health):
        checked = wait_for(functools.partial(is_ready, path), START_S, f"{path} ready")
        assert checked
    result = subprocess.run(
        [sys.executable, "-m", "launcher.cli", "health", str(site_health), "--ready"],
        capture_output=True,
        text=True,
        timeout=CLI_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok: site=ed ready")

    # edgeoff status --json: the site online, a fresh heartbeat, its prediction; the worker listed
    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "launcher.cli",
            "status",
            "--json",
            "--seconds",
            "1",
            "--broker",
            f"{mosquitto.host}:{mosquitto.port}",
            "--redis",
            redis_url,
        ],
        capture_output=True,
        text=True,
        timeout=CLI_S,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    (ed,) = [row for row in report["sites"] if row["site"] == "ed"]
    assert (ed["state"], ed["type"], ed["session"]) == ("online", "ED", 1)
    assert ed["heartbeat_age_s"] is not None, status.stdout
    assert ed["heartbeat_age_s"] < 1.0
    assert ed["heartbeats"] >= 3
    assert ed["availability"] is not None
    assert 0 < ed["availability"] <= 1
    assert ed["prediction_source"] == "redis"
    assert ed["worker"] == "w0"
    assert report["redis"] == "ok"
    assert [w["worker"] for w in report["workers"]] == ["w0"]

    # stop both: exit 0, STOPPING=1, not ready at once, then stale
    for proc in (site, worker):
        proc.send_signal(signal.SIGTERM)
    for proc in (site, worker):
        assert proc.wait(STOP_S) == 0, processes.log_of(proc)
    for path in (site_health, worker_health):
        assert health(path, "--ready").returncode == 1
    wait_for(lambda: health(site_health, "--max-age", "0.5").returncode == 1, 5, "a stale health file")

    messages = list(notify_socket.messages)
    assert messages[0] in ("WATCHDOG=1", "READY=1\nSTATUS=site=ed: connected")
    assert "READY=1\nSTATUS=site=ed: connected" in messages
    assert messages.count("WATCHDOG=1") >= 3
    assert messages[-1] == "STOPPING=1"

    # JSON logs: every line of the site's log is one object with the site's name
    lines = [line for line in processes.log_of(site).splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert all(record["site"] == "ed" for record in records)
    assert any("online, session 1" in record["msg"] for record in records)
