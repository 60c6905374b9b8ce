"""`edgeoff up` end to end: its own brokers, sites with failure injection, the agent, no leftovers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion
from redis.backoff import NoBackoff
from redis.retry import Retry

from .conftest import Server, _binary, free_port, wait_for

pytestmark = pytest.mark.timeout(90)

RECORD_KEYS = {
    "dataset",
    "engine",
    "rt_s",
    "battery_pct",
    "availability_pct",
    "failures_per_1000_apps",
    "distribution_pct",
    "offloads_per_1000_apps",
    "no_feasible_solution",
    "site_availability_pct",
    "believed_availability_pct",
    "tasks_lost",
    "failures_injected",
    "failures_detectable",
    "failures_detected",
    "detection_latency_ms",
}


def alive(pid: int) -> bool:
    """True while a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Any]:
    """Start `edgeoff up` in its own process group (like a terminal's foreground job); kill it at the end."""
    _binary("mosquitto")
    _binary("mosquitto_passwd")  # its own brokers have accounts
    _binary("redis-server")
    started: list[subprocess.Popen[bytes]] = []

    def start(
        *args: str, env: dict[str, str] | None = None, log: str = "up.log"
    ) -> tuple[subprocess.Popen[bytes], Path]:
        out = tmp_path / "run"
        unreachable = [
            "--broker",
            f"127.0.0.1:{free_port()}",
            "--redis",
            f"redis://127.0.0.1:{free_port()}/0",
        ]
        cmd = [sys.executable, "-m", "launcher.cli", "up", "--out", str(out), *unreachable, *args]
        with (tmp_path / log).open("wb") as log_file:
            proc = subprocess.Popen(
                cmd,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        started.append(proc)
        return proc, out

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


WATCH = re.compile(
    r"watch it live: mosquitto_sub -h (?P<host>\S+) -p (?P<port>\d+) -u observer "
    r'-P "\$\(cat (?P<path>\S+)\)" -t \'edgeoff/#\' -v'
)
REDIS_PORT = re.compile(r"Running mode=standalone, port=(\d+)")
NOT_AUTHORIZED = 0x87  # MQTT v5 CONNACK reason code


def wait_match(pattern: re.Pattern[str], path: Path, timeout: float) -> re.Match[str]:
    """The first match of `pattern` in the file at `path`, once it is there."""

    def search() -> re.Match[str] | None:
        return pattern.search(path.read_text(errors="replace")) if path.exists() else None

    wait_for(search, timeout, f"{pattern.pattern!r} in {path.name}")
    match = search()
    assert match is not None
    return match


def mqtt_connack(port: int, username: str | None = None, password: str | None = None) -> tuple[int, int]:
    """Connect with MQTT v5 to 127.0.0.1:port; (CONNACK reason code, messages received on edgeoff/# in the
    first moments: retained statuses and live traffic), -1 when the connection closed without a CONNACK."""
    connack: list[int] = []
    received = threading.Event()
    closed = threading.Event()
    count = [0]

    def on_connect(client: paho.Client, userdata: object, flags: object, rc: Any, props: object) -> None:
        connack.append(int(getattr(rc, "value", rc)))
        if not connack[0]:
            client.subscribe("edgeoff/#", qos=0)

    def on_message(client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        count[0] += 1
        received.set()

    def on_disconnect(client: paho.Client, userdata: object, *rest: object) -> None:
        closed.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-up-{username}", protocol=paho.MQTTv5)
    if username is not None:
        client.username_pw_set(username, password)
    client.on_connect = on_connect
    client.on_message = on_message
    client.on_disconnect = on_disconnect
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        wait_for(lambda: connack or closed.is_set(), 10, f"CONNACK for {username}")
        if connack and not connack[0]:
            received.wait(10)
    finally:
        client.disconnect()
        client.loop_stop()
    return (connack[0] if connack else -1), count[0]


def pids(out: Path) -> dict[str, int]:
    found: dict[str, int] = json.loads((out / "processes.json").read_text())
    return found


def log_of(tmp_path: Path, name: str = "up.log") -> str:
    return (tmp_path / name).read_text(errors="replace")


def test_up_runs_the_system_and_leaves_nothing_behind(up: Any, tmp_path: Path) -> None:
    proc, out = up("--duration", "20")
    wait_for(lambda: (out / "processes.json").exists(), 30, "processes.json")
    started = pids(out)
    assert {"mosquitto", "redis", "site-ed", "site-ec", "site-er", "site-cd", "agent"} <= set(started)
    wait_for(lambda: proc.poll() is not None, 70, "edgeoff up to finish")
    assert proc.returncode == 0, log_of(tmp_path)
    assert "mosquitto_sub -h 127.0.0.1 -p" in log_of(tmp_path)
    body = json.loads((out / "results.json").read_text())
    assert set(body) >= {"config", "results"}
    record = body["results"][0]
    assert set(record) >= RECORD_KEYS
    assert record["tasks_lost"] == 0
    assert record["apps"] > 0
    assert record["failures_detectable"] <= record["failures_injected"]
    assert record["failures_detected"] <= record["failures_injected"]
    assert "injected / detectable / detected" in log_of(tmp_path)
    survivors = {name: pid for name, pid in started.items() if name != "up" and alive(pid)}
    assert not survivors


def test_ctrl_c_stops_everything_and_still_writes_results(up: Any, tmp_path: Path) -> None:
    proc, out = up("--duration", "60")
    wait_for(lambda: (out / "processes.json").exists(), 30, "processes.json")
    agent_log = out / "logs" / "agent.log"
    wait_for(lambda: agent_log.exists() and "sites online" in agent_log.read_text(), 30, "the agent running")
    started = pids(out)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does to its foreground job
    wait_for(lambda: proc.poll() is not None, 30, "edgeoff up to stop")
    assert proc.returncode == 130, log_of(tmp_path)
    survivors = {name: pid for name, pid in started.items() if name != "up" and alive(pid)}
    assert not survivors
    record = json.loads((out / "results.json").read_text())["results"][0]
    assert record["tasks_lost"] == 0


def test_own_brokers_require_accounts_and_leave_no_secret_behind(
    up: Any, tmp_path: Path, mosquitto: Server
) -> None:
    """--own-brokers: the project's brokers (accounts, ACL) even though an anonymous broker answers."""
    proc, out = up("--own-brokers", "--broker", f"{mosquitto.host}:{mosquitto.port}", "--duration", "15")
    watch = wait_match(WATCH, tmp_path / "up.log", 30)
    port = int(watch["port"])
    assert port != mosquitto.port
    assert "reusing" not in log_of(tmp_path)
    observer_file = Path(watch["path"])
    secrets_dir = observer_file.parent.parent
    assert not observer_file.is_relative_to(out)
    assert secrets_dir.stat().st_mode & 0o777 == 0o700
    assert observer_file.stat().st_mode & 0o777 == 0o600
    wait_for(lambda: (out / "processes.json").exists(), 30, "processes.json")
    started = pids(out)
    passwords = {p.read_text().strip() for p in (secrets_dir / "passwords").iterdir()}
    passwords.add((secrets_dir / "redis-password").read_text().strip())
    accounts = {"site-ed", "site-ec", "site-er", "site-cd", "worker", "agent-md", "observer", "observer-up"}
    accounts.add("observer-probe")  # every deployment's (brokers/README.md); unused by `up`
    assert accounts == {p.name for p in (secrets_dir / "passwords").iterdir()}
    # while the run goes on: its broker refuses anonymous clients and serves the observer of the printed line
    assert mqtt_connack(port) == (NOT_AUTHORIZED, 0)
    code, messages = mqtt_connack(port, "observer", observer_file.read_text().strip())
    assert code == 0
    assert messages > 0
    # and its Redis refuses clients without the password
    redis_port = int(wait_match(REDIS_PORT, out / "logs" / "redis.log", 10)[1])
    anonymous = redis.Redis(host="127.0.0.1", port=redis_port, socket_timeout=5, retry=Retry(NoBackoff(), 0))
    admin = redis.Redis(
        host="127.0.0.1", port=redis_port, password=(secrets_dir / "redis-password").read_text().strip()
    )
    try:
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        anonymous.close()  # (an unauthenticated connection shows as user default)
        # each daemon is connected as its own Redis user, none as the operators' `default`
        users = wait_for(
            lambda: (
                {c["user"] for c in admin.client_list() if c["user"] != "default"} >= {"site-ed", "worker"}
                and {c["user"] for c in admin.client_list()}
            ),
            20,
            "the daemons' Redis connections",
        )
        assert users - {"default"} <= accounts
        assert sum(1 for c in admin.client_list() if c["user"] == "default") == 1  # this test's own
    finally:
        anonymous.close()
        admin.close()
    assert proc.poll() is None, log_of(tmp_path)  # the checks above ran while the system was up

    wait_for(lambda: proc.poll() is not None, 70, "edgeoff up to finish")
    assert proc.returncode == 0, log_of(tmp_path)
    body = json.loads((out / "results.json").read_text())
    assert set(body) >= {"config", "results"}
    assert body["config"]["broker"] == f"127.0.0.1:{port}"
    assert body["config"]["broker_accounts"] is True
    record = body["results"][0]
    assert set(record) >= RECORD_KEYS
    assert record["tasks_lost"] == 0
    assert record["apps"] > 0
    survivors = {name: pid for name, pid in started.items() if name != "up" and alive(pid)}
    assert not survivors
    # the work dir and its secrets are gone, and no password was written to --out
    assert not secrets_dir.exists()
    for path in (p for p in out.rglob("*") if p.is_file()):
        text = path.read_text(errors="replace")
        assert not any(pw in text for pw in passwords), path


def test_a_daemon_that_does_not_start_fails_the_run_with_its_reason(up: Any, tmp_path: Path) -> None:
    """A site that exits at start (here: a bad setting in the environment) is exit 1 with the site's own
    one-line error, before the agent runs; nothing is left running."""
    proc, out = up("--own-brokers", "--duration", "30", env={"EDGEOFF_SITE_MAX_CONCURRENT_TASKS": "0"})
    wait_for(lambda: proc.poll() is not None, 60, "edgeoff up to give up")
    assert proc.returncode == 1, log_of(tmp_path)
    log = log_of(tmp_path)
    assert re.search(
        r"edgeoff up: site-\w+ exited at start \(code 2\): edgeoff-site: error: max_concurrent_tasks", log
    )
    assert not (out / "logs" / "agent.log").exists()  # the agent was never started
    assert not (out / "results.json").exists()
    assert "Traceback" not in log


def test_a_killed_run_leaves_its_passwords_only_until_the_next_run(up: Any, tmp_path: Path) -> None:
    """SIGKILL of `edgeoff up`: its daemons go (death signal), its work folder with the passwords stays;
    the next run removes it, offers `edgeoff status --run DIR`, shows the detector's verdicts, and counts
    injected failures from the sites' records even with JSON logs."""
    killed, out = up("--own-brokers", "--duration", "60", log="killed.log")
    watch = wait_match(WATCH, tmp_path / "killed.log", 30)
    workdir = Path(watch["path"]).parents[2]
    wait_for(lambda: (out / "processes.json").exists(), 60, "processes.json")
    daemons = {name: pid for name, pid in pids(out).items() if name != "up"}
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    wait_for(
        lambda: not any(alive(pid) for pid in daemons.values()), 30, "the daemons to follow their parent"
    )
    assert (workdir / "secrets" / "passwords" / "observer").exists()  # nobody could remove it

    env = {"EDGEOFF_SITE_LOG_FORMAT": "json"}
    proc, out = up("--own-brokers", "--duration", "15", "--time-compression", "20000", env=env)
    wait_for(lambda: not (out / "processes.json").exists(), 30, "the killed run's processes.json removed")
    wait_for(lambda: (out / "processes.json").exists(), 60, "processes.json")
    assert not workdir.exists()
    assert f"removed {workdir}, the work folder of an `edgeoff up` that was killed" in log_of(tmp_path)
    assert f"or: edgeoff status --run {out} --watch" in log_of(tmp_path)
    status = subprocess.run(
        [sys.executable, "-m", "launcher.cli", "status", "--run", str(out), "--json", "--seconds", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["redis"] == "ok"
    assert {row["site"] for row in report["sites"]} >= {"ed", "ec", "er", "cd"}
    assert {row["detector"] for row in report["sites"] if row["site"] != "md"} <= {"up", "down", None}
    wait_for(lambda: proc.poll() is not None, 90, "edgeoff up to finish")
    assert proc.returncode == 0, log_of(tmp_path)
    assert "detector: down" in log_of(tmp_path)  # the progress line shows the verdicts
    body = json.loads((out / "results.json").read_text())
    record = body["results"][0]
    logged = sum(
        1
        for site in ("ed", "ec", "er", "cd")
        for line in (out / "logs" / f"site-{site}.log").read_text().splitlines()
        if line.startswith("{") and "injected failure for" in json.loads(line).get("msg", "")
    )
    assert record["failures_injected"] == len(body["injected"]) == logged
    assert record["failures_detectable"] <= record["failures_injected"]
    assert set(body["provenance"]) >= {"edgeoff_version", "commit", "scenario_sha256", "failure_data_sha256"}
    assert set(body["run"]) == {"started_at", "seconds", "host", "cpus"}
