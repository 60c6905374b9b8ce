"""edgeoff.ops in-process: run_daemon exit codes, JSON logs, health file and `edgeoff health`, sd_notify,
the Prometheus bridge of the daemons' counters, and the pure part of `edgeoff status`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import secrets
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic_settings import SettingsConfigDict

from edgeoff.commands.observation import Observation, RedisView
from edgeoff.ops import (
    EXIT_CONFIG,
    HealthRecord,
    Notifier,
    Operations,
    OpsSettings,
    check_health,
    exposition,
    run_daemon,
    setup_logging,
    write_health,
)
from edgeoff.wire import topics
from edgeoff.wire.codec import encode_json, encode_msgpack
from edgeoff.wire.messages import DOWN_MODEL, Heartbeat, Prediction, SiteProfile, SiteStatus
from edgeoff.wire.mqtt import Counters, Message
from edgeoff.wire.settings import DaemonSettings
from launcher import cli
from prediction_worker import daemon as worker_daemon
from site_daemon import daemon as site_daemon

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class FakeClock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# ---------------------------------------------------------------------- run_daemon


class _Settings(DaemonSettings, OpsSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEOFF_OPS_TEST_")

    name: str = "x"


class _Service:
    def __init__(self, ops: Operations, stop: threading.Event) -> None:
        self.ops, self.stop, self.served = ops, stop, False

    def serve(self) -> None:
        self.ops.tick(connected=True)
        self.served = True


def _run(argv: list[str], build: Any = None, **kwargs: Any) -> int:
    parser = argparse.ArgumentParser(prog="t")
    parser.add_argument("--name")
    parser.add_argument("--metrics-port", type=int)
    parser.add_argument("--health-file", type=Path)

    def settings_from_args(args: argparse.Namespace) -> _Settings:
        return _Settings(**{k: v for k, v in vars(args).items() if v is not None})

    return run_daemon(
        prog="t",
        argv=argv,
        parser=parser,
        settings_from_args=settings_from_args,
        build=build or (lambda s, stop, ops: _Service(ops, stop)),
        label=lambda s: {"t": s.name},
        check_redis=False,
        environ={},
        **kwargs,
    )


def test_run_daemon_exits_0_after_serving_and_writes_a_not_ready_record(tmp_path: Path) -> None:
    health = tmp_path / "h.json"
    services: list[_Service] = []

    def build(s: _Settings, stop: threading.Event, ops: Operations) -> _Service:
        services.append(_Service(ops, stop))
        return services[0]

    assert _run(["--name", "a", "--health-file", str(health)], build=build) == 0
    assert services[0].served
    record = json.loads(health.read_text())
    assert record["name"] == "t=a"
    assert record["ready"] is False  # written by stopping()


def test_run_daemon_bad_settings_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["--metrics-port", "70000"]) == EXIT_CONFIG
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("t: error: metrics_port:")


def test_run_daemon_busy_metrics_port_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert _run(["--metrics-port", str(port)]) == EXIT_CONFIG
    assert "metrics port" in capsys.readouterr().err


def test_site_and_worker_main_exit_2_on_bad_settings_and_configuration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert site_daemon.main(["--site", "Not An Id"]) == EXIT_CONFIG
    assert "edgeoff-site: error: site:" in capsys.readouterr().err
    assert site_daemon.main(["--site", "nowhere"]) == EXIT_CONFIG  # EdgeoffError from build
    assert "has no site 'nowhere'" in capsys.readouterr().err
    assert worker_daemon.main(["--shard", "3/2"]) == EXIT_CONFIG
    assert capsys.readouterr().err.startswith("edgeoff-worker: error: shard:")
    with pytest.raises(SystemExit) as exited:  # argparse's own usage error
        site_daemon.main(["--site", "ed", "--log-format", "xml"])
    assert exited.value.code == EXIT_CONFIG


# ---------------------------------------------------------------------- logs


def test_json_logs_are_one_object_per_line_with_the_context(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", "json", {"site": "ed"})
    log = logging.getLogger("edgeoff.test")
    log.info("hello %s", "world")
    log.debug("not shown")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["msg"] == "hello world"
    assert first["site"] == "ed"
    assert first["level"] == "INFO"
    assert first["logger"] == "edgeoff.test"
    assert isinstance(first["ts"], float)
    assert "ValueError: boom" in second["exc"]


def test_text_logs_carry_the_context_and_setup_replaces_its_own_handler(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("INFO", "text", {"worker": "w0"})
    setup_logging("INFO", "text", {"worker": "w1"})  # replaced, not duplicated
    logging.getLogger("edgeoff.test").warning("careful")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "WARNING worker=w1 edgeoff.test: careful" in lines[0]


# ---------------------------------------------------------------------- health


def _record(ts: float, *, ready: bool = True) -> HealthRecord:
    return HealthRecord(name="site=ed", pid=1, ts=ts, ready=ready, broker=ready, redis=True)


def test_health_check_fresh_stale_not_ready_missing_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    assert not check_health(path, max_age_s=10, need_ready=False, now=0).ok  # missing
    write_health(path, _record(1000.0))
    assert check_health(path, max_age_s=10, need_ready=True, now=1005.0).ok
    stale = check_health(path, max_age_s=10, need_ready=False, now=1011.0)
    assert not stale.ok
    assert "last seen 11.0 s ago" in stale.message
    write_health(path, _record(1000.0, ready=False))
    assert check_health(path, max_age_s=10, need_ready=False, now=1001.0).ok  # alive
    assert not check_health(path, max_age_s=10, need_ready=True, now=1001.0).ok  # not ready
    path.write_text("{not json")
    assert not check_health(path, max_age_s=10, need_ready=False, now=1001.0).ok
    assert [p.name for p in tmp_path.iterdir()] == ["health.json"]  # no temporary files left behind


def test_edgeoff_health_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    path = tmp_path / "health.json"
    assert cli.main(["health", str(path)]) == 1
    write_health(path, _record(time.time()))
    assert cli.main(["health", str(path), "--ready"]) == 0
    write_health(path, _record(time.time() - 30))
    assert cli.main(["health", str(path), "--max-age", "10"]) == 1
    write_health(path, _record(time.time(), ready=False))
    assert cli.main(["health", str(path)]) == 0
    assert cli.main(["health", str(path), "--ready"]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 5  # one line per call
    assert out[1].startswith("ok: site=ed ready")


def test_operations_write_the_health_file_at_most_every_interval(tmp_path: Path) -> None:
    clock, wall = FakeClock(), FakeClock(5000.0)
    path = tmp_path / "h.json"
    ops = Operations(
        name="site=ed",
        settings=OpsSettings(health_file=path, health_interval_s=1.0),
        clock=clock,
        wall_clock=wall,
    )
    ops.tick(connected=False)
    assert json.loads(path.read_text())["ready"] is False
    clock.t, wall.t = 100.5, 5000.5
    ops.tick(connected=True)
    assert json.loads(path.read_text())["ts"] == 5000.0  # not due yet
    clock.t, wall.t = 101.0, 5001.0
    ops.tick(connected=True)
    record = json.loads(path.read_text())
    assert (record["ts"], record["ready"], record["broker"], record["redis"]) == (5001.0, True, True, None)
    assert ops.ready


def test_refused_publishes_show_in_the_health_record_and_its_check(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    ops = Operations(
        name="site=ed", settings=OpsSettings(health_file=path), clock=FakeClock(), wall_clock=FakeClock(7.0)
    )
    counters = Counters()
    ops.watch(counters)
    counters.incr("out_denied", 2)
    ops.tick(connected=True)
    assert json.loads(path.read_text())["publishes_denied"] == 2
    check = check_health(path, max_age_s=10, need_ready=False, now=7.5)
    assert check.ok
    assert "2 publishes denied" in check.message


class _Probe:
    def __init__(self, ok: bool) -> None:
        self.ok = ok
        self.checked = threading.Event()

    def check(self) -> bool:
        self.checked.set()
        return self.ok

    def close(self) -> None:
        pass


def test_readiness_needs_redis_when_probed(tmp_path: Path) -> None:
    probe = _Probe(ok=False)
    path = tmp_path / "h.json"
    ops = Operations(name="w", settings=OpsSettings(health_file=path, health_interval_s=0.05), probe=probe)
    ops.start()
    try:
        assert probe.checked.wait(5)
        ops.tick(connected=True)
        assert not ops.ready
        assert json.loads(path.read_text())["redis"] is False
    finally:
        ops.close()


# ---------------------------------------------------------------------- sd_notify


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(2.0)
    yield path, sock
    sock.close()


def _received(sock: socket.socket) -> list[str]:
    messages: list[str] = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        return messages
    finally:
        sock.settimeout(2.0)


def test_sd_notify_ready_watchdog_stopping(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    assert notifier.watchdog_interval_s == pytest.approx(1.0)
    clock = FakeClock()
    ops = Operations(name="site=ed", notifier=notifier, clock=clock)
    ops.tick(connected=False)
    assert _received(sock) == ["WATCHDOG=1"]  # the loop is alive, not yet connected: no READY
    clock.t += 0.5
    ops.tick(connected=True)
    assert _received(sock) == ["READY=1\nSTATUS=site=ed: connected"]
    clock.t += 0.5
    ops.tick(connected=True)
    ops.tick(connected=False)  # a lost connection does not repeat READY, nor stop the watchdog
    assert _received(sock) == ["WATCHDOG=1"]
    ops.stopping()
    ops.stopping()
    assert _received(sock) == ["STOPPING=1"]


def test_sd_notify_never_blocks_on_an_undrained_socket(notify_socket: tuple[str, socket.socket]) -> None:
    path, _ = notify_socket  # nobody reads: a Unix datagram queue fills after about ten messages
    notifier = Notifier(path)
    results = [notifier.watchdog() for _ in range(200)]  # would hang here with a blocking send
    assert results[0]
    assert not all(results)


def test_sd_notify_abstract_socket_and_disabled_cases() -> None:
    name = f"edgeoff-test-{secrets.token_hex(6)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2.0)
        assert Notifier.from_environ({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(4096) == b"READY=1"
    assert not Notifier.from_environ({}).ready()  # no NOTIFY_SOCKET: a no-op
    other_pid = {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    assert Notifier.from_environ(other_pid, pid=os.getpid() + 1).watchdog_interval_s is None
    assert not Notifier.from_environ({"NOTIFY_SOCKET": "/nonexistent/socket"}).ready()  # logged, no raise


# ---------------------------------------------------------------------- metrics


def test_counters_are_exported_in_prometheus_text_format() -> None:
    counters = Counters()
    for name, n in {
        "in": 3,
        "out": 5,
        "in_dropped.oversized": 2,
        "tasks_dropped.decode": 1,
        "out_dropped.not_connected": 4,
        "heartbeats_sent": 7,
        "verdicts.down": 1,
        "predictions.published": 2,
        "tasks_done": 6,
        "fallbacks.deadline": 1,
        "something_new": 9,
    }.items():
        counters.incr(name, n)
    ops = Operations(name="site=ed")
    ops.watch(counters)
    text = exposition(ops.metrics)
    for line in (
        "edgeoff_mqtt_messages_received_total 3.0",
        "edgeoff_mqtt_messages_sent_total 5.0",
        'edgeoff_messages_dropped_total{direction="in",reason="oversized"} 2.0',
        'edgeoff_messages_dropped_total{direction="in",reason="decode"} 1.0',
        'edgeoff_messages_dropped_total{direction="out",reason="not_connected"} 4.0',
        "edgeoff_heartbeats_sent_total 7.0",
        'edgeoff_detector_verdicts_total{verdict="down"} 1.0',
        "edgeoff_predictions_published_total 2.0",
        'edgeoff_tasks_total{outcome="done"} 6.0',
        'edgeoff_fallbacks_total{reason="deadline"} 1.0',
        'edgeoff_events_total{event="something_new"} 9.0',
        "edgeoff_ready 0.0",
    ):
        assert line in text, line
    counters.incr("in")  # read at scrape time
    assert "edgeoff_mqtt_messages_received_total 4.0" in exposition(ops.metrics)
    Operations(name="another")  # one registry per daemon: no duplicate-metric error


def test_metrics_endpoint_serves_the_registry() -> None:
    ops = Operations(name="w")
    counters = Counters()
    counters.incr("in_heartbeats", 11)
    ops.watch(counters)
    port = ops.metrics.serve("127.0.0.1", 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
        assert "edgeoff_heartbeats_received_total 11.0" in body
    finally:
        ops.close()


# ---------------------------------------------------------------------- edgeoff status: pure part


def _message(topic: str, payload: bytes, retain: bool = False) -> Message:
    return Message(topic=topic, payload=payload, qos=0, retain=retain)


def test_observation_report() -> None:
    obs = Observation()
    obs.add(
        _message(
            topics.site_topic("ed", "status"), encode_json(SiteStatus(state="online", session=3, ts=990.0))
        ),
        0,
    )
    for i in range(5):
        beat = Heartbeat(session=3, seq=i, mono_ts=float(i))
        obs.add(_message(topics.site_topic("ed", "heartbeat"), encode_msgpack(beat)), 10.0 + 0.15 * i)
    mqtt_copy = Prediction(site="ed", availability=0.9, version=1, model="prior", ts=995.0)
    obs.add(_message(topics.prediction("ed"), encode_json(mqtt_copy)), 10.0)
    obs.add(_message(topics.agent_policy("a1"), b'{"version": 4, "engine": "mdp", "ts": 999.0}'), 10.0)
    obs.add(_message(topics.site_topic("ec", "status"), b"garbage"), 10.0)
    obs.add(_message("elsewhere/x", b""), 10.0)
    stored = Prediction(site="ed", availability=0.97, version=2, model="svr", ts=998.0)
    view = RedisView(
        predictions={"ed": stored}, prediction_workers={"ed": "w0"}, workers={"w0": {"in_heartbeats": 40}}
    )
    report = obs.report(now=11.0, wall=1000.0, redis=view)
    (site,) = [row for row in report["sites"] if row["site"] == "ed"]
    assert site["state"] == "online"
    assert site["session"] == 3
    assert site["heartbeat_age_s"] == pytest.approx(0.4)
    assert site["heartbeat_rate_hz"] == pytest.approx(6.67, abs=0.01)
    assert (site["availability"], site["model"], site["prediction_source"]) == (0.97, "svr", "redis")
    assert report["workers"][0]["sites"] == ["ed"]
    assert report["agents"][0]["policy_version"] == 4
    assert report["unreadable"] == 2


def test_edgeoff_status_with_no_broker_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    assert cli.main(["status", "--broker", f"127.0.0.1:{port}", "--no-redis", "--seconds", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"edgeoff status: error: cannot connect to the broker at 127.0.0.1:{port}"]


def test_status_tables_render_every_kind() -> None:
    from rich.console import Console

    from edgeoff.commands.status import render

    obs = Observation()
    status = SiteStatus(state="offline", session=2, ts=990.0)
    obs.add(_message(topics.site_topic("cd", "status"), encode_json(status)), 0)
    body = {"version": 2, "engine": "mdp", "ts": 999.0, "last_fallback": {"reason": "down"}}
    policy = json.dumps(body).encode()
    obs.add(_message(topics.agent_policy("a1"), policy), 0)
    view = RedisView(workers={"w0": {"in_heartbeats": 1}})
    report = {"broker": "b:1", "redis": "ok", "observed_s": 1.0, **obs.report(now=1, wall=1000, redis=view)}
    console = Console(width=160, record=True)
    console.print(render(report))
    text = console.export_text()
    for word in ("sites", "offline", "workers", "w0", "agents", "a1", "? -> none: down", "redis ok"):
        assert word in text, word


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not JSON (Expecting property name enclosed in double quotes at line 1 column 2)"),
        ("[1, 2]", "not a JSON object but list"),
        ('{"name": "site=ed"}', "missing fields pid, ts, ready, broker"),
        ('{"name": "x", "pid": 1, "ts": 5, "ready": true}', "missing field broker"),
        ('{"name": "x", "pid": 1, "ts": "soon", "ready": true, "broker": true}', 'field ts is "soon"'),
        ('{"name": "x", "pid": 1, "ts": 5, "ready": "yes", "broker": true}', 'field ready is "yes"'),
    ],
)
def test_edgeoff_health_says_what_is_wrong_with_a_malformed_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, reason: str
) -> None:
    path = tmp_path / "health.json"
    path.write_text(content)
    assert cli.main(["health", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"unhealthy: {path} is not a health file: ")
    assert reason in out


def _busy_report() -> dict[str, Any]:
    """A report with the widest values a DS1 run of `edgeoff up` shows."""
    obs = Observation()
    types: dict[str, Literal["ED", "EC", "ER", "CD"]] = {"ed": "ED", "ec": "EC", "er": "ER", "cd": "CD"}
    for i, (site, site_type) in enumerate(types.items()):
        status = SiteStatus(state="offline" if site == "ec" else "online", session=12, ts=990.0)
        obs.add(_message(topics.site_topic(site, "status"), encode_json(status)), 0)
        obs.add(
            _message(
                topics.site_topic(site, "profile"),
                encode_json(SiteProfile(site=site, type=site_type, mips=8000, memory_gb=8, storage_gb=64)),
            ),
            0,
        )
        model = DOWN_MODEL if site in ("ec", "er") else "last-value"
        prediction = Prediction(
            site=site,
            availability=0.0 if model == DOWN_MODEL else 0.998765,
            version=1234,
            model=model,
            ts=999.0,
        )
        obs.add(_message(topics.prediction(site), encode_json(prediction)), 0)
        beat = Heartbeat(session=12, seq=1, mono_ts=1.0)
        obs.add(_message(topics.site_topic(site, "heartbeat"), encode_msgpack(beat)), -123.4 + i)
    fallback = {
        "task_id": "app-123-task-7",
        "from": "ec",
        "to": "ed",
        "reason": "site suspected by the detector (detector:down)",
        "ts": 999.0,
    }
    body = {
        "version": 1234,
        "engine": "mdp-selected",
        "ts": 990.0,
        "last_fallback": fallback,
        "progress": {"apps_done": 12345, "fallbacks": 678},
    }
    obs.add(_message(topics.agent_policy("md"), json.dumps(body).encode()), 0)
    owners = dict.fromkeys(("ed", "ec", "er", "cd"), "worker-0")
    view = RedisView(
        prediction_workers=owners,
        workers={
            "worker-0": {
                "in_heartbeats": 123456,
                "verdicts.up": 1234,
                "verdicts.down": 56,
                "predictions.published": 7890,
            }
        },
    )
    return {
        "broker": "127.0.0.1:49152",
        "redis": "ok",
        "observed_s": 3.0,
        **obs.report(now=1.0, wall=1000.0, redis=view),
    }


def test_status_fits_80_columns_with_every_header_and_the_detector_verdict() -> None:
    from rich.console import Console

    from edgeoff.commands.status import render

    report = _busy_report()
    assert {row["site"]: row["detector"] for row in report["sites"]} == {
        "ed": "up",
        "ec": "down",
        "er": "down",
        "cd": "up",
    }
    console = Console(width=80, record=True)
    console.print(render(report))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text  # nothing cut off
    headers = [
        "site",
        "type",
        "state",
        "detector",
        "heartbeat",
        "avail.",
        "forecaster",
        "worker",
        "heartbeats",
        "verdicts up",
        "down",
        "predictions",
        "dropped",
        "agent",
        "engine",
        "policy",
        "age",
        "apps",
        "fallbacks",
        "last fallback",
    ]
    for header in headers:
        assert re.search(rf"(^|\s){re.escape(header)}(\s|$)", text, re.M), header
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.split()[:1] == ["ec"]}
    assert rows["ec"][1:4] == ["EC", "offline", "down"]
    assert "ec -> ed: site" in text  # the reason wraps in its column
