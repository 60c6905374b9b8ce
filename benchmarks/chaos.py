"""The project's own fault injection: N faults of each of six kinds while the agent offloads.

Run as ``python benchmarks/chaos.py [--faults N] [--gap-s S]``. Starts a private Mosquitto (persistence
with a 1 s autosave) and Redis (AOF, everysec) on free loopback ports, the four sites of DS1, a
prediction worker and an agent (`mdp-reactive`, time scale 0.2, so tasks flow several per second), and an
observer that records statuses, predictions, requests and results. Site `ec` reaches the broker through a
user-space TCP proxy, which is how a partition is made: the proxy stops moving bytes both ways (the
connections stay open, as in a real partition, and what was buffered flows when it heals).

The kinds, injected round robin with `--gap-s` between faults:

| kind           | fault                                     | healed by                      |
|----------------|-------------------------------------------|--------------------------------|
| site_kill      | SIGKILL of a random site                  | a restart after 1 s            |
| site_stop      | SIGSTOP of a random site                  | SIGCONT after `--hold-s`       |
| broker_restart | SIGKILL of Mosquitto                      | a restart after 1 s            |
| redis_restart  | SIGKILL of Redis                          | a restart after 1 s            |
| worker_kill    | SIGKILL of the prediction worker          | a restart after 1 s            |
| partition      | the proxy of `ec` stops forwarding        | forwarding again after `--hold-s` |

Per kind it prints: faults, tasks issued (requests seen), lost (the agent's tasks_lost), duplicate results
accepted (two results accepted by the agent for one task: its counters), stale executions (a result whose
execution started, by its site's clock, after the agent had given up on that attempt), false suspicions
(a `detector:down` of a site that no fault of its own touched at the time), and recovery p50/p99 (from the
heal to the next successful result; for a broker restart, to every site online again and a result).
Crashes: daemons that exited without being killed. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import redis
from local_brokers import free_port, listens, wait_until
from tcp_proxy import Proxy

from edgeoff.wire import topics
from edgeoff.wire.codec import decode_json, decode_msgpack
from edgeoff.wire.messages import DOWN_MODEL, Prediction, SiteStatus, TaskRequest, TaskResult
from edgeoff.wire.mqtt import Inbox, Message, MqttClient, MqttEvent
from edgeoff.wire.settings import BrokerSettings

SITES = ("ed", "ec", "er", "cd")
PARTITIONED = "ec"
KINDS = ("site_kill", "site_stop", "broker_restart", "redis_restart", "worker_kill", "partition")
START_S = 30.0
AGENT = "agent-1"


@dataclass
class Observed:
    """What the observer saw, with wall clock arrival times."""

    requests: list[tuple[float, str, TaskRequest]] = field(default_factory=list)
    results: list[tuple[float, TaskResult]] = field(default_factory=list)
    downs: list[tuple[float, str]] = field(default_factory=list)
    online: list[tuple[float, str, int]] = field(default_factory=list)


def observe(broker: BrokerSettings, stop: threading.Event, seen: Observed) -> None:
    inbox: Inbox[MqttEvent] = Inbox()
    client = MqttClient(settings=broker, client_id="chaos-observer", inbox=inbox, session_expiry_s=120)
    for topic in ("sites/+/status", "sites/+/tasks", "results/+/+", "predictions/+"):
        client.subscribe(f"{topics.PREFIX}/{topic}", qos=1)
    client.start()
    while not stop.is_set():
        try:
            event = inbox.get(timeout=0.1)
        except Exception:
            continue
        if not isinstance(event, Message):
            continue
        now = time.time()
        parts = event.topic.split("/")
        try:
            if parts[-1] == "tasks":
                seen.requests.append((now, parts[-2], decode_msgpack(TaskRequest, event.payload)))
            elif parts[2] == "results":
                seen.results.append((now, decode_msgpack(TaskResult, event.payload)))
            elif parts[2] == "predictions":
                p = decode_json(Prediction, event.payload)
                if p.model == DOWN_MODEL and not event.retain:
                    seen.downs.append((now, p.site))
            elif parts[-1] == "status":
                s = decode_json(SiteStatus, event.payload)
                if s.state == "online":
                    seen.online.append((now, parts[-2], s.session))
        except Exception:
            continue
    client.stop()


class System:
    """The brokers and daemons of one chaos run."""

    def __init__(self, workdir: Path, seed: int) -> None:
        self.workdir = workdir
        self.mqtt_port = free_port()
        self.redis_port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.killed: set[str] = set()
        (workdir / "mosquitto.conf").write_text(
            f"listener {self.mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {workdir}/\nautosave_interval 1\nmax_queued_messages 10000\n"
            "set_tcp_nodelay true\nuser root\nlog_dest stderr\nlog_type error\n",
            encoding="utf-8",
        )
        self.start("mosquitto")
        self.start("redis")
        self.proxy = Proxy(self.mqtt_port)
        self.seed = seed
        for site in SITES:
            self.start(f"site-{site}")
        self.start("worker")

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def _command(self, name: str) -> tuple[list[str], dict[str, str]]:
        py = sys.executable
        if name == "mosquitto":
            return ["mosquitto", "-c", str(self.workdir / "mosquitto.conf")], {}
        if name == "redis":
            args = [
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
            ]
            return ["redis-server", *args, "--appendfsync", "everysec", "--dir", str(self.workdir)], {}
        role, _, site = name.partition("-")
        prefix = {"site": "EDGEOFF_SITE_", "worker": "EDGEOFF_WORKER_", "agent": "EDGEOFF_AGENT_"}[role]
        port = self.proxy.port if site == PARTITIONED else self.mqtt_port
        env = {
            f"{prefix}BROKER__HOST": "127.0.0.1",
            f"{prefix}BROKER__PORT": str(port),
            f"{prefix}REDIS__URL": self.redis_url,
            f"{prefix}LOG_LEVEL": "WARNING",
        }
        if role == "site":
            return [py, "-m", "site_daemon", "--site", site], env
        if role == "worker":
            return [py, "-m", "prediction_worker"], env
        return [py, "-m", "mobile_agent", *self.agent_args], env

    agent_args: ClassVar[list[str]] = []

    def start(self, name: str) -> None:
        cmd, env = self._command(name)
        log = (self.workdir / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        self.killed.discard(name)
        if name == "mosquitto":
            wait_until(lambda: listens(self.mqtt_port), 10, "mosquitto")
        if name == "redis":
            wait_until(lambda: self._pong(), 10, "redis")

    def _pong(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.redis_url, socket_timeout=0.3).ping())
        except redis.RedisError:
            return False

    def kill(self, name: str) -> None:
        self.killed.add(name)
        self.procs[name].kill()
        self.procs[name].wait(5)

    def signal(self, name: str, sig: signal.Signals) -> None:
        self.procs[name].send_signal(sig)

    def crashed(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is not None and n not in self.killed]

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.proxy.close()


@dataclass
class Fault:
    kind: str
    target: str | None  # the site a site fault touches
    start: float  # wall clock
    healed: float = 0.0


def inject(system: System, kind: str, rng: random.Random, hold_s: float) -> Fault:
    site = rng.choice(SITES)
    start = time.time()
    if kind == "site_kill":
        system.kill(f"site-{site}")
        time.sleep(1.0)
        system.start(f"site-{site}")
        return Fault(kind, site, start, time.time())
    if kind == "site_stop":
        system.signal(f"site-{site}", signal.SIGSTOP)
        time.sleep(hold_s)
        system.signal(f"site-{site}", signal.SIGCONT)
        return Fault(kind, site, start, time.time())
    if kind == "partition":
        system.proxy.paused.set()
        time.sleep(hold_s)
        system.proxy.paused.clear()
        return Fault(kind, PARTITIONED, start, time.time())
    name = {"broker_restart": "mosquitto", "redis_restart": "redis", "worker_kill": "worker"}[kind]
    system.kill(name)
    time.sleep(1.0)
    system.start(name)
    return Fault(kind, None, start, time.time())


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def analyse(faults: list[Fault], seen: Observed, record: dict[str, Any], detect_s: float) -> dict[str, Any]:
    """Per kind: faults, tasks issued, stale executions, false suspicions, recovery p50/p99."""
    gave_up: dict[tuple[str, int], float] = {}
    attempts_of: dict[str, int] = defaultdict(int)
    for entry in record.get("fallback_log", []):
        k = attempts_of[entry["task_id"]]
        gave_up[(entry["task_id"], k)] = float(entry["ts"])
        attempts_of[entry["task_id"]] += 1
    first_req = {(r.task_id, r.attempt): t for t, _, r in seen.requests}
    out: dict[str, Any] = {}
    for kind in KINDS:
        mine = [f for f in faults if f.kind == kind]
        windows = [(f.start, f.healed + detect_s + 1.0) for f in mine]

        def during(t: float, windows: list[tuple[float, float]] = windows) -> bool:
            return any(a <= t <= b for a, b in windows)

        issued = sum(1 for t, _, _ in seen.requests if during(t))
        stale = 0
        for t, result in seen.results:
            if not during(t) or result.error is not None:
                continue
            given_up = gave_up.get((result.task_id, result.attempt))
            if given_up is not None and t - result.exec_s > given_up + 0.05:
                stale += 1
        false = 0
        detected = sum(  # downs of the site the fault touched: the detector is not idle
            1
            for t, site in seen.downs
            if any(f.target == site and f.start <= t <= f.healed + detect_s + 1.0 for f in mine)
        )
        for t, site in seen.downs:
            if not during(t):
                continue
            touched = any(
                f.target == site and f.start - 0.5 <= t <= f.healed + detect_s + 1.0 for f in faults
            )
            if not touched:
                false += 1
        recovery = []
        for f in mine:
            ok_after = [t for t, r in seen.results if t >= f.healed and r.ok]
            if not ok_after:
                continue
            done = min(ok_after)
            if kind == "broker_restart":
                back = []
                for site in SITES:
                    times = [t for t, s, _ in seen.online if s == site and t >= f.start]
                    back.append(min(times) if times else float("inf"))
                done = max(done, *back)
            recovery.append(done - f.healed)
        out[kind] = {
            "faults": len(mine),
            "tasks_issued": issued,
            "stale_executions": stale,
            "false_suspicions": false,
            "true_detections": detected,
            "recovery_p50_s": pct(recovery, 0.5),
            "recovery_p99_s": pct(recovery, 0.99),
        }
    del first_req
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--faults", type=int, default=5, help="faults of each kind")
    parser.add_argument("--gap-s", type=float, default=5.0, help="seconds between faults")
    parser.add_argument("--hold-s", type=float, default=2.5, help="SIGSTOP and partition length, seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs here (default: a temp dir)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="edgeoff-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    system = System(workdir, args.seed)
    out_file = workdir / "agent.json"
    schedule = [kind for _ in range(args.faults) for kind in KINDS]
    duration = START_S / 3 + len(schedule) * (args.gap_s + args.hold_s + 1.5) + 10
    System.agent_args = [
        "--engine",
        "mdp-reactive",
        "--time-scale",
        "0.2",
        "--seed",
        str(args.seed),
        "--duration-s",
        f"{duration:.0f}",
        "--out",
        str(out_file),
        "--wait-sites-s",
        "20",
    ]
    stop = threading.Event()
    seen = Observed()
    broker = BrokerSettings(host="127.0.0.1", port=system.mqtt_port)
    observer = threading.Thread(target=observe, args=(broker, stop, seen), daemon=True)
    observer.start()
    faults: list[Fault] = []
    record: dict[str, Any] = {}
    try:
        wait_until(lambda: len({s for _, s, _ in seen.online}) == len(SITES), START_S, "every site online")
        system.start("agent")
        wait_until(lambda: any(r.ok for _, r in seen.results), START_S, "the first result")
        for n, kind in enumerate(schedule):
            time.sleep(args.gap_s)
            faults.append(inject(system, kind, rng, args.hold_s))
            print(f"fault {n + 1}/{len(schedule)}: {kind} {faults[-1].target or ''}", file=sys.stderr)
        time.sleep(args.gap_s)
        crashed = system.crashed()
        system.procs["agent"].send_signal(signal.SIGTERM)  # stop after the current task, write results
        system.procs["agent"].wait(60)
        record = json.loads(out_file.read_text())
    finally:
        stop.set()
        observer.join(5)
        system.close()
    counters = record.get("counters", {})
    kinds = analyse(faults, seen, record, detect_s=1.5)
    summary = {
        "benchmark": "chaos",
        "faults_per_kind": args.faults,
        "tasks_issued": len(seen.requests),
        "tasks": record.get("tasks"),
        "tasks_lost": record.get("tasks_lost"),
        "duplicates_accepted": counters.get("results_accepted_twice", 0),
        "duplicate_deliveries_rejected": counters.get("results_duplicate", 0)
        + counters.get("results_late", 0),
        "crashes": crashed,
        "stale_executions": sum(k["stale_executions"] for k in kinds.values()),
        "false_suspicions_broker_redis": kinds["broker_restart"]["false_suspicions"]
        + kinds["redis_restart"]["false_suspicions"],
        "kinds": kinds,
        "workdir": str(workdir),
    }
    for kind, row in kinds.items():
        print(f"{kind:15s} " + " ".join(f"{k}={v}" for k, v in row.items()))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
