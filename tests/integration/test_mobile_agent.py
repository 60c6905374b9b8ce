"""The mobile agent against real site daemons, a real Mosquitto and a real Redis (started by the fixtures)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack
import pytest

from edgeoff.wire import topics
from edgeoff.wire.codec import decode_json, decode_msgpack, encode_json
from edgeoff.wire.messages import Prediction, SiteStatus, TaskRequest

from .conftest import free_port, wait_for
from .test_observability import CLI_S, Samples, health, scrape, value

if TYPE_CHECKING:
    from .conftest import Observer, Processes, Server

pytestmark = pytest.mark.timeout(60)

AGENT = "agent-1"
SITES = ("ed", "ec", "er", "cd")
POLICY = topics.agent_policy(AGENT)
StartSite = Callable[..., subprocess.Popen[bytes]]


def latest_status(obs: Observer, site: str) -> SiteStatus | None:
    msgs = obs.on(topics.site_topic(site, "status"))
    return decode_json(SiteStatus, msgs[-1].payload) if msgs else None


def round_trips(samples: Samples) -> float:
    """Task results received so far, over every site and outcome."""
    return sum(v for (name, _), v in samples.items() if name == "edgeoff_task_round_trip_seconds_count")


def start_sites(start_site: StartSite, obs: Observer, env: dict[str, str] | None = None) -> dict[str, Any]:
    procs = {site: start_site(site, env=env) for site in SITES}

    def all_online() -> bool:
        return all((s := latest_status(obs, site)) is not None and s.state == "online" for site in SITES)

    obs.wait(lambda o: all_online(), 20, "every site online")
    return procs


@pytest.fixture
def start_agent(
    mosquitto: Server, redis_server: Server, processes: Processes, tmp_path: Path
) -> Callable[..., tuple[subprocess.Popen[bytes], Path]]:
    def start(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], Path]:
        out = tmp_path / "agent-results.json"
        base_env = {
            "EDGEOFF_AGENT_BROKER__HOST": mosquitto.host,
            "EDGEOFF_AGENT_BROKER__PORT": str(mosquitto.port),
            "EDGEOFF_AGENT_REDIS__URL": f"redis://{redis_server.host}:{redis_server.port}/0",
            "EDGEOFF_AGENT_SEED": "7",
            "EDGEOFF_AGENT_WAIT_SITES_S": "15",
            "EDGEOFF_AGENT_TIME_SCALE": "0.2",  # emulated transfers 5x faster: short tests
        }
        cmd = [sys.executable, "-m", "mobile_agent", "--out", str(out), *args]
        return processes.start(cmd, {**base_env, **(env or {})}, name="agent"), out

    return start


def finished(
    proc: subprocess.Popen[bytes], out: Path, processes: Processes, timeout: float
) -> dict[str, Any]:
    wait_for(lambda: proc.poll() is not None, timeout, "the agent to finish")
    assert proc.returncode == 0, processes.log_of(proc)
    record: dict[str, Any] = json.loads(out.read_text())
    return record


def test_agent_runs_applications_with_nothing_lost(
    start_site: StartSite, start_agent: Any, observer: Callable[..., Observer], processes: Processes
) -> None:
    obs = observer("edgeoff/v1/#")
    start_sites(start_site, obs)
    proc, out = start_agent("--apps", "12")
    record = finished(proc, out, processes, 40)
    assert record["apps"] == 12
    assert record["apps_completed"] == 12
    assert record["tasks_lost"] == 0
    assert record["offloads_per_1000_apps"] > 0  # the sites were used
    assert record["availability_pct"]["mean"] == 100.0  # nothing failed
    assert set(record) >= {"rt_s", "battery_pct", "availability_pct", "distribution_pct", "engine", "dataset"}
    sent = [decode_msgpack(TaskRequest, m.payload) for m in obs.messages if m.topic.endswith("/tasks")]
    assert len({(t.task_id, t.attempt) for t in sent}) == len(sent)  # one request per attempt


def test_site_killed_mid_task_the_agent_falls_back_and_loses_nothing(
    start_site: StartSite, start_agent: Any, observer: Callable[..., Observer], processes: Processes
) -> None:
    obs = observer("edgeoff/v1/#")
    # Slow sites (x20 emulated computation) and a patient deadline, so the kill lands inside a task.
    procs = start_sites(start_site, obs, env={"EDGEOFF_SITE_EXECUTION_SCALE": "20"})
    proc, out = start_agent("--apps", "3", env={"EDGEOFF_AGENT_DEADLINE_FACTOR": "100"})
    first = obs.wait(lambda o: [m for m in o.messages if m.topic.endswith("/tasks")], 20, "a task sent")[0]
    victim = topics.parse_topic(first.topic).id
    task = decode_msgpack(TaskRequest, first.payload)
    procs[victim].send_signal(signal.SIGKILL)
    obs.wait(lambda o: latest_status(o, victim).state == "offline", 5, f"{victim} offline")  # type: ignore[union-attr]
    record = finished(proc, out, processes, 45)
    assert record["tasks_lost"] == 0
    assert record["apps_completed"] == 3
    fallback = next(f for f in record["fallback_log"] if f["task_id"] == task.task_id)
    assert fallback["from"] == victim
    assert fallback["reason"] == "site offline"
    assert fallback["to"] not in (None, victim)
    assert record["failures"] >= 1
    assert any(d["site"] == victim for d in record["detections"])


def test_policy_is_retained_json_and_follows_predictions(
    start_site: StartSite, start_agent: Any, observer: Callable[..., Observer], processes: Processes
) -> None:
    obs = observer("edgeoff/v1/#")
    start_sites(start_site, obs)
    proc, out = start_agent("--duration-s", "60")

    def policy(o: Observer) -> dict[str, Any] | None:
        msgs = o.on(POLICY)
        return json.loads(msgs[-1].payload) if msgs else None

    first = obs.wait(
        lambda o: (p := policy(o)) is not None and all(p["usable"].values()) and p, 20, "a policy"
    )
    retained = observer(POLICY).wait(lambda o: o.on(POLICY), 5, "the retained policy")[0]
    assert retained.retain
    assert json.loads(retained.payload)["engine"] == "mdp-svr"

    best = first["policy"]["md"]
    assert best != "md"
    low = Prediction(site=best, availability=0.01, version=1, model="svr", ts=1.0)
    obs.publish(topics.prediction(best), encode_json(low), retain=True)
    # the engine uses the forecast mapped to the task's time at risk through the site's chain
    # (edgeoff.knowledge): lower than before, not 0.01 itself
    changed = obs.wait(
        lambda o: (
            (p := policy(o)) is not None
            and p["prediction_versions"].get(best) == 1
            and p["availability"][best] < first["availability"][best]
            and p
        ),
        10,
        "the new policy",
    )
    assert changed["policy"]["md"] != best
    assert changed["version"] > first["version"]
    assert changed["prediction_versions"][best] == 1

    other = next(site for site in SITES if site != best)
    down = Prediction(site=other, availability=0.0, version=1, model="detector:down", ts=2.0)
    obs.publish(topics.prediction(other), encode_json(down), retain=True)
    obs.wait(lambda o: (p := policy(o)) is not None and p["usable"][other] is False, 10, "the site excluded")

    proc.send_signal(signal.SIGTERM)
    record = finished(proc, out, processes, 15)
    assert record["tasks_lost"] == 0
    assert any(d["site"] == other and d["how"] == "detector:down prediction" for d in record["detections"])


def test_garbage_is_dropped_and_the_agent_keeps_serving(
    start_site: StartSite, start_agent: Any, observer: Callable[..., Observer], processes: Processes
) -> None:
    obs = observer("edgeoff/v1/#")
    start_sites(start_site, obs)
    proc, out = start_agent("--apps", "10")
    obs.wait(lambda o: o.on(POLICY), 20, "the agent to be serving")
    garbage = [
        (topics.results(AGENT, "ed"), b"\xc1 not msgpack"),
        (topics.results(AGENT, "ed"), msgpack.packb({"task_id": "+", "attempt": "one"})),
        (topics.results(AGENT, "ed"), msgpack.packb([1, 2, 3])),
        (topics.prediction("x"), b"{not json"),
        (topics.prediction("ed"), json.dumps({"site": "ed", "availability": 7}).encode()),
        (topics.site_topic("x", "status"), b"\x00\x01garbage"),
        (topics.site_topic("ed", "status"), json.dumps({"state": "maybe", "session": -1}).encode()),
        (f"{topics.PREFIX}/sites/ED/status", b"{}"),  # an id outside the contract
        (topics.results(AGENT, "ed"), b"\x00" * 200_000),
    ]
    for topic, payload in garbage:
        obs.publish(topic, payload)
    record = finished(proc, out, processes, 40)
    assert record["apps_completed"] == 10
    assert record["tasks_lost"] == 0
    assert record["counters"].get("in_dropped.invalid", 0) >= len(garbage) - 1
    assert record["counters"].get("callback_errors", 0) == 0


def test_broker_restarted_under_load_everything_reconnects_and_nothing_is_lost(
    mosquitto: Server,
    start_site: StartSite,
    start_agent: Any,
    observer: Callable[..., Observer],
    processes: Processes,
) -> None:
    obs = observer("edgeoff/v1/#")
    start_sites(start_site, obs)
    proc, out = start_agent("--apps", "30")
    obs.wait(lambda o: len([m for m in o.messages if m.topic.endswith("/tasks")]) >= 10, 20, "tasks flowing")
    mosquitto.restart()  # no persistence here: in-flight QoS 1 messages are gone, retained statuses too
    # Every component comes back by itself: the sites re-announce themselves online and tasks flow again.
    after = observer("edgeoff/v1/#")
    after.wait(
        lambda o: all((s := latest_status(o, site)) is not None and s.state == "online" for site in SITES),
        20,
        "every site online again after the broker restart",
    )
    after.wait(lambda o: [m for m in o.messages if m.topic.endswith("/tasks")], 20, "tasks flowing again")
    record = finished(proc, out, processes, 60)
    assert record["apps_completed"] == 30
    assert record["tasks_lost"] == 0


def test_agent_serves_metrics_and_a_ready_health_file_while_it_runs(
    start_site: StartSite,
    start_agent: Any,
    observer: Callable[..., Observer],
    processes: Processes,
    tmp_path: Path,
) -> None:
    obs = observer("edgeoff/v1/#")
    start_sites(start_site, obs)
    port, health_file = free_port(), tmp_path / "agent-health.json"
    proc, out = start_agent(
        "--duration-s",
        "60",
        env={
            "EDGEOFF_AGENT_METRICS_PORT": str(port),
            "EDGEOFF_AGENT_METRICS_HOST": "127.0.0.1",
            "EDGEOFF_AGENT_HEALTH_FILE": str(health_file),
            "EDGEOFF_AGENT_HEALTH_INTERVAL_S": "0.2",
        },
    )

    def busy() -> Samples | None:
        samples = scrape(port)
        if not samples or value(samples, "edgeoff_ready") != 1:  # readiness is reported every 0.2 s
            return None
        return samples if round_trips(samples) >= 3 else None  # task results received

    samples = wait_for(busy, 30, "a ready agent's metrics with task results")
    assert samples is not None
    assert value(samples, "edgeoff_policy_recomputations_total") > 0
    assert value(samples, "edgeoff_mqtt_connects_total") == 1
    assert value(samples, "edgeoff_mqtt_messages_sent_total") >= 3
    assert value(samples, "edgeoff_broker_connected") == 1
    assert ("edgeoff_redis_reachable", ()) in samples  # a gauge of every daemon: the agent has no Redis

    wait_for(lambda: health(health_file, "--ready", "--max-age", "5").returncode == 0, 10, "a ready agent")
    cli = subprocess.run(
        [sys.executable, "-m", "launcher.cli", "health", str(health_file), "--ready"],
        capture_output=True,
        text=True,
        timeout=CLI_S,
        check=False,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert cli.stdout.startswith("ok: agent=agent-1 ready (broker up,"), cli.stdout  # no Redis part

    proc.send_signal(signal.SIGTERM)  # stop after the current task, write the results, exit 0
    record = finished(proc, out, processes, 15)
    assert record["tasks_lost"] == 0
    assert record["counters"]["policy_recomputations"] == record["policy_versions"]
    assert health(health_file, "--ready").returncode == 1  # stopping: not ready at once


def test_agent_fallbacks_are_counted_by_reason_in_its_metrics(
    start_site: StartSite,
    start_agent: Any,
    observer: Callable[..., Observer],
    processes: Processes,
) -> None:
    obs = observer("edgeoff/v1/#")
    procs = start_sites(start_site, obs, env={"EDGEOFF_SITE_EXECUTION_SCALE": "20"})  # slow: kill mid-task
    port = free_port()
    proc, out = start_agent(
        "--apps",
        "3",
        "--metrics-port",
        str(port),
        env={"EDGEOFF_AGENT_DEADLINE_FACTOR": "100", "EDGEOFF_AGENT_METRICS_HOST": "127.0.0.1"},
    )
    first = obs.wait(lambda o: [m for m in o.messages if m.topic.endswith("/tasks")], 20, "a task sent")[0]
    procs[topics.parse_topic(first.topic).id].send_signal(signal.SIGKILL)

    def fell_back() -> Samples | None:
        samples = scrape(port)
        return samples if samples and value(samples, "edgeoff_fallbacks_total", reason="offline") else None

    samples = wait_for(fell_back, 15, "a fallback in the agent's metrics")
    assert samples is not None
    assert value(samples, "edgeoff_fallbacks_total", reason="offline") >= 1
    record = finished(proc, out, processes, 45)
    assert record["tasks_lost"] == 0
    fallbacks = {k: v for k, v in record["counters"].items() if k.startswith("fallbacks.")}
    assert sum(fallbacks.values()) == record["fallbacks"] >= 1
