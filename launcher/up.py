"""`edgeoff up`: the whole live system on one machine, with progress, a results table and results.json.

    brokers (reuse, or start Mosquitto and Redis on free ports) -> one site daemon per site of the dataset
    (failure injection on) -> a prediction worker (when the package provides one) -> one mobile agent
    -> progress until the agent is done -> results table and DIR/results.json -> every process stopped

Brokers: a broker that answers at --broker (a Redis at --redis) is reused as it is, e.g. a developer's
anonymous Mosquitto on 1883. Otherwise, and always with --own-brokers, this command runs the project's
own configuration (brokers/, rendered by edgeoff.brokers): accounts site-<id> for the dataset's sites,
worker, agent-<mobile device id> and observer, generated into the run's work dir (a temporary directory,
mode 0700, files 0600, removed at the end; nothing secret is written to --out); Mosquitto with that
password file and ACL, no anonymous clients and persistence in the work dir; Redis with AOF and a password.
Each daemon gets its account through EDGEOFF_<DAEMON>_BROKER__USERNAME and ..._PASSWORD_FILE and the Redis
URL with the password; the progress display and the printed `mosquitto_sub` line use the observer account.

Every child runs in its own process group (so a Ctrl-C in the terminal reaches only this command, which
then stops the children in order: the agent first, so it writes what it measured) and is stopped with
SIGTERM, then SIGKILL after a timeout. On Linux each child also gets SIGTERM if this command dies.

Failure injection: each site follows its LANL node's Markov chain with `--time-compression` trace seconds
per wall second. The default is the scenario's [simulation] time_compression (3600, one trace hour per
second: the setting the offline simulator uses too), which gives DS1 about three failures in two minutes
(sum of 1/MTTF over its four nodes is 0.024 per trace hour).

results.json has the shape of `edgeoff evaluate`'s ({"config", "results": [record]}); the record is
mobile_agent.meter's, whose `rt_s` is per application run, plus `tasks_lost`, `failures_injected` (the
failures the sites logged), `failures_detected` and `detection_latency_ms` (injection to the agent's
verdict).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import redis
from rich.console import Console
from rich.table import Table

from edgeoff.errors import EdgeoffError
from edgeoff.scenario import Scenario, load_scenario
from edgeoff.wire.settings import BrokerSettings
from launcher.brokers import (
    agent_username,
    default_brokers_dir,
    generate_secrets,
    site_username,
    write_mosquitto_config,
    write_redis_config,
)
from mobile_agent.meter import Detection, Injection, detection_summary
from mobile_agent.planner import LIVE_ENGINES

__all__ = ["add_parser", "run"]

EXIT_MISSING_BINARY = 2
EXIT_INTERRUPTED = 130  # the shell's code for a SIGINT
STOP_TIMEOUT_S = 5.0  # after SIGTERM; then SIGKILL
START_TIMEOUT_S = 10.0  # a broker that does not listen by then is broken, not slow
AGENT_GRACE_S = 60.0  # the agent finishes its current application run after --duration
INTERRUPT_GRACE_S = 15.0  # after Ctrl-C the agent finishes its current task and writes its results
POLL_S = 0.1
INSTALL_HINT = {  # Debian/Ubuntu packages of the binaries this command may start
    "mosquitto": "sudo apt-get install mosquitto",
    "mosquitto_passwd": "sudo apt-get install mosquitto (it ships mosquitto_passwd)",
    "redis-server": "sudo apt-get install redis-server",
}
OBSERVER = "observer"  # the read-only account of people and of this command's progress display
WORKER = "worker"
PR_SET_PDEATHSIG = 1  # prctl option: signal the child when its parent dies
INJECTED = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) \S+ site=(?P<site>\S+) .*injected failure for "
    r"(?P<down>[0-9.]+) s"
)


class MissingBinaryError(EdgeoffError):
    """mosquitto or redis-server is not installed."""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "up",
        help="run the live system locally (brokers, sites, prediction worker, agent)",
        description="Run brokers, one site daemon per site of a dataset (failure injection on), a prediction "
        "worker and a mobile agent; print the results and write DIR/results.json.",
    )
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of applications (default 120)")
    parser.add_argument("--dataset", default="DS1", help="dataset configuration (default DS1)")
    parser.add_argument("--engine", default="mdp-svr", help=f"one of {', '.join(LIVE_ENGINES)}")
    parser.add_argument("--out", type=Path, default=Path("run"), help="output folder (default run/)")
    parser.add_argument(
        "--time-compression",
        type=float,
        default=None,
        help="trace seconds per wall second of failure injection (default: the scenario's [simulation] "
        "time_compression, 3600)",
    )
    parser.add_argument(
        "--broker", default="127.0.0.1:1883", help="MQTT broker host:port (started if absent)"
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL (started if absent)")
    parser.add_argument(
        "--own-brokers",
        action="store_true",
        help="always start the project's Mosquitto and Redis (brokers/: accounts, ACL, passwords) on free "
        "ports, even when --broker or --redis answers",
    )
    parser.add_argument("--scenario", type=Path, help="scenario TOML (default: the paper's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the workload and the failure chains")
    parser.add_argument("--time-scale", type=float, default=1.0, help="wall seconds per emulated second")
    parser.set_defaults(func=run)


# ---------------------------------------------------------------------------------------- processes


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    log_path: Path


@dataclass
class Children:
    """The processes this command started, each in its own process group; stopped in reverse order."""

    logs: Path
    started: list[Child] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Child:
        path = self.logs / f"{name}.log"
        log = path.open("wb")
        proc = subprocess.Popen(
            args,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: the terminal's Ctrl-C reaches only `edgeoff up`
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        child = Child(name, proc, log, path)
        self.started.append(child)
        return child

    def pids(self) -> dict[str, int]:
        return {c.name: c.proc.pid for c in self.started}

    def stop(self, child: Child, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM to the child's process group, SIGKILL after `timeout`; always reaped."""
        if child.proc.poll() is None:
            _signal_group(child.proc.pid, signal.SIGTERM)
            try:
                child.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(child.proc.pid, signal.SIGKILL)
                child.proc.wait(timeout)
        _signal_group(child.proc.pid, signal.SIGKILL)  # anything the child left in its group
        child.log.close()

    def stop_all(self) -> None:
        for child in reversed(self.started):
            self.stop(child)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# ------------------------------------------------------------------------------------------ brokers


def _binary(name: str) -> str:
    path = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/local/sbin") / name) if p.is_file()), None
    )
    if path is None:
        raise MissingBinaryError(f"{name} is not installed; install it: {INSTALL_HINT[name]}")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listens(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False
    finally:
        client.close()


def _wait(condition: Any, child: Child, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not condition():
        if child.proc.poll() is not None or time.monotonic() > deadline:
            raise EdgeoffError(f"{what} did not start; see {child.log_path}")
        time.sleep(POLL_S)


def _split_host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise EdgeoffError(f"--broker must be host:port, got {text!r}") from None


@dataclass(frozen=True)
class Brokers:
    """Where the run's daemons connect, and with which accounts.

    `secrets` is None for a reused broker (used as it is, without accounts); otherwise it holds
    `passwords/<username>` of every account of the run (see launcher.brokers.generate_secrets).
    """

    host: str
    port: int
    redis_url: str
    secrets: Path | None = None

    def password_file(self, username: str) -> Path | None:
        return None if self.secrets is None else self.secrets / "passwords" / username

    def env(self, prefix: str, username: str) -> dict[str, str]:
        """The broker and Redis settings of one daemon (`prefix` e.g. EDGEOFF_SITE_)."""
        env = {
            f"{prefix}BROKER__HOST": self.host,
            f"{prefix}BROKER__PORT": str(self.port),
            f"{prefix}REDIS__URL": self.redis_url,
        }
        password_file = self.password_file(username)
        if password_file is not None:
            env[f"{prefix}BROKER__USERNAME"] = username
            env[f"{prefix}BROKER__PASSWORD_FILE"] = str(password_file)
        return env

    def settings(self, username: str) -> BrokerSettings:
        password_file = self.password_file(username)
        return BrokerSettings(
            host=self.host,
            port=self.port,
            username=None if password_file is None else username,
            password_file=password_file,
        )

    def watch_command(self) -> str:
        auth = ""
        password_file = self.password_file(OBSERVER)
        if password_file is not None:
            auth = f' -u {OBSERVER} -P "$(cat {shlex.quote(str(password_file))})"'
        return f"mosquitto_sub -h {self.host} -p {self.port}{auth} -t 'edgeoff/#' -v"


def _redis_secret(secrets_dir: Path) -> None:
    """Only the Redis password (secrets_dir/redis-auth.conf, 0600), for a run that reuses its MQTT broker."""
    secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    password = secrets.token_hex(24)
    for name, text in (("redis-password", password), ("redis-auth.conf", f"requirepass {password}")):
        fd = os.open(secrets_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")


def ensure_brokers(
    args: argparse.Namespace,
    sites: list[str],
    agent: str,
    children: Children,
    workdir: Path,
    console: Console,
) -> Brokers:
    """The broker at --broker and the Redis at --redis when they answer (and not --own-brokers), else
    Mosquitto and Redis started from brokers/ (accounts, ACL, persistence) on free ports in `workdir`."""
    host, port = _split_host_port(args.broker)
    own_mqtt = bool(args.own_brokers) or not _listens(host, port)
    own_redis = bool(args.own_brokers) or not _redis_answers(args.redis)
    reused = []
    if not own_mqtt:
        reused.append(f"the MQTT broker at {host}:{port}")
    if not own_redis:
        reused.append(f"Redis at {_redact(args.redis)}")
    if reused:
        _say(
            console,
            f"reusing {' and '.join(reused)} as configured there (--own-brokers starts the project's "
            "brokers, with accounts and passwords, on free ports)",
        )
    # every binary first: a missing one stops the run before anything is started or written
    mosquitto = _binary("mosquitto") if own_mqtt else ""
    passwd_tool = _binary("mosquitto_passwd") if own_mqtt else ""
    redis_server = _binary("redis-server") if own_redis else ""
    secrets_dir = workdir / "secrets"
    if own_mqtt:
        generate_secrets(
            secrets_dir,
            sites=sites,
            agents=[agent],
            acl_template=default_brokers_dir() / "mosquitto" / "acl",
            mosquitto_passwd=passwd_tool,
        )
        port = _free_port()
        conf = write_mosquitto_config(
            workdir / "mosquitto", secrets_dir=secrets_dir, data_dir=workdir / "mosquitto-data", port=port
        )
        child = children.start("mosquitto", [mosquitto, "-c", str(conf)])
        _wait(lambda: _listens("127.0.0.1", port), child, "mosquitto")
        host = "127.0.0.1"
    redis_url = args.redis
    if own_redis:
        if not own_mqtt:
            _redis_secret(secrets_dir)
        redis_port = _free_port()
        conf = write_redis_config(
            workdir / "redis", secrets_dir=secrets_dir, data_dir=workdir / "redis-data", port=redis_port
        )
        child = children.start("redis", [redis_server, str(conf)])
        password = (secrets_dir / "redis-password").read_text(encoding="utf-8").strip()
        redis_url = f"redis://:{password}@127.0.0.1:{redis_port}/0"
        _wait(lambda: _redis_answers(redis_url), child, "redis-server")
    return Brokers(host, port, redis_url, secrets_dir if own_mqtt else None)


def _say(console: Console, text: str) -> None:
    """One line as it is: no markup, no highlighting, never wrapped (so a command can be copied)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


# ------------------------------------------------------------------------------------------ the run


def injected_failures(log_text: str) -> list[Injection]:
    """The failures a site daemon logged ("injected failure for X s"), with their wall times."""
    out = []
    for line in log_text.splitlines():
        match = INJECTED.match(line)
        if match:
            ts = datetime.strptime(match["ts"], "%Y-%m-%d %H:%M:%S,%f").timestamp()  # local time, as logged
            out.append(Injection(site=match["site"], ts=ts, down_s=float(match["down"])))
    return out


class _Progress:
    """Watches the agent's retained policy topic (its progress) and site statuses, from the broker."""

    def __init__(self, settings: BrokerSettings, agent: str) -> None:
        import queue

        from edgeoff.wire import topics
        from edgeoff.wire.mqtt import Message, MqttClient, MqttEvent

        self._message_type = Message
        self._topics = topics
        self.inbox: queue.Queue[MqttEvent] = queue.Queue()
        self.client = MqttClient(
            settings=settings,
            client_id=f"edgeoff-up-{os.getpid()}",
            inbox=self.inbox,
        )
        self.policy_topic = topics.agent_policy(agent)
        self.client.subscribe(self.policy_topic)
        self.client.subscribe(topics.all_sites("status"))
        self.client.start()
        self.progress: dict[str, Any] = {}
        self.policy_version = 0
        self.offline: dict[str, int] = {}
        self.sites_down = 0
        self.last_fallback: dict[str, Any] | None = None

    def drain(self) -> None:
        import queue

        while True:
            try:
                event = self.inbox.get_nowait()
            except queue.Empty:
                return
            if not isinstance(event, self._message_type):
                continue
            try:
                body = json.loads(event.payload)
                if event.topic == self.policy_topic:
                    self.progress = body.get("progress", {})
                    self.policy_version = int(body.get("version", 0))
                    self.last_fallback = body.get("last_fallback")
                elif body.get("state") == "offline" and not event.retain:
                    self.sites_down += 1
            except (ValueError, AttributeError, TypeError):
                continue

    def line(self) -> str:
        p = self.progress
        return (
            f"apps {p.get('apps_done', 0)}  site failures seen {self.sites_down}  "
            f"remote failures {p.get('failures', 0)}  fallbacks {p.get('fallbacks', 0)}  "
            f"policy v{self.policy_version}"
        )

    def stop(self) -> None:
        self.client.stop()


def _print_table(console: Console, record: dict[str, Any]) -> None:
    table = Table(title=f"edgeoff up: {record['dataset']} / {record['engine']} (live)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    lat = record["detection_latency_ms"]
    rows = [
        ("application runs", f"{record['apps']}"),
        ("response time per app (s)", f"{record['rt_s']['mean']:.3f} ± {record['rt_s']['std']:.3f}"),
        ("battery left (%)", f"{record['battery_pct']['mean']:.4f}"),
        ("availability of remote attempts (%)", f"{record['availability_pct']['mean']:.2f}"),
        (
            "remote attempts / failures",
            f"{record['offloads_per_1000_apps'] * record['apps'] / 1000:.0f} / {record['failures']}",
        ),
        ("fallbacks", f"{record['fallbacks']}"),
        ("failures injected / detected", f"{record['failures_injected']} / {record['failures_detected']}"),
        (
            "detection latency p50 / p99 (ms)",
            "-" if lat["p50"] is None else f"{lat['p50']:.1f} / {lat['p99']:.1f}",
        ),
        (
            "offloading MD/ED/EC/ER/CD (%)",
            " / ".join(f"{v:.0f}" for v in record["distribution_pct"].values()),
        ),
        ("tasks lost", f"{record['tasks_lost']}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def run(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    if args.time_compression is None:
        args.time_compression = scenario.simulation.time_compression
    dataset = scenario.dataset(args.dataset)
    if args.engine not in LIVE_ENGINES:
        raise EdgeoffError(
            f"engine {args.engine!r} cannot run live (live engines: {', '.join(LIVE_ENGINES)})"
        )
    console = Console(stderr=False)
    out: Path = args.out
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    interrupted = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C: stop everything now (the finally below)
        interrupted.set()

    for sig in previous:
        signal.signal(sig, on_signal)
    children = Children(logs)
    try:
        with tempfile.TemporaryDirectory(prefix="edgeoff-up-") as tmp:
            return _run(args, scenario, dataset, console, out, children, Path(tmp), interrupted)
    except MissingBinaryError as exc:
        print(f"edgeoff up: {exc}", file=sys.stderr)
        return EXIT_MISSING_BINARY
    except KeyboardInterrupt:
        console.print("edgeoff up: interrupted twice, stopping everything")
        return EXIT_INTERRUPTED
    finally:
        children.stop_all()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(
    args: argparse.Namespace,
    scenario: Scenario,
    dataset: dict[str, str],
    console: Console,
    out: Path,
    children: Children,
    tmp: Path,
    interrupted: threading.Event,
) -> int:
    agent_id = scenario.mobile_id  # the agent runs on the mobile device: account agent-<mobile id>
    brokers = ensure_brokers(args, list(dataset), agent_id, children, tmp, console)
    host, port = brokers.host, brokers.port
    own = "" if brokers.secrets is None else " (the project's configuration, with accounts)"
    _say(console, f"broker {host}:{port}{own}, redis {_redact(brokers.redis_url)}; logs in {out / 'logs'}")
    _say(console, f"watch it live: {brokers.watch_command()}")
    python = sys.executable
    scenario_args = ["--scenario", str(args.scenario)] if args.scenario else []
    for i, site in enumerate(dataset):
        env = {
            **brokers.env("EDGEOFF_SITE_", site_username(site)),
            "EDGEOFF_SITE_EXECUTION_SCALE": str(args.time_scale),
        }
        site_args = ["--site", site, "--dataset", args.dataset, "--inject-failures"]
        site_args += ["--time-compression", str(args.time_compression), "--seed", str(args.seed * 1000 + i)]
        children.start(f"site-{site}", [python, "-m", "site_daemon", *site_args, *scenario_args], env)
    worker_args = ["--dataset", args.dataset, *scenario_args]
    env = brokers.env("EDGEOFF_WORKER_", WORKER)
    children.start("prediction-worker", [python, "-m", "prediction_worker", *worker_args], env)
    agent_out = out / "agent.json"
    agent_out.unlink(missing_ok=True)
    agent_env = {
        **brokers.env("EDGEOFF_AGENT_", agent_username(agent_id)),
        "EDGEOFF_AGENT_AGENT": agent_id,
        "EDGEOFF_AGENT_ENGINE": args.engine,
        "EDGEOFF_AGENT_DATASET": args.dataset,
        "EDGEOFF_AGENT_DURATION_S": str(args.duration),
        "EDGEOFF_AGENT_SEED": str(args.seed),
        "EDGEOFF_AGENT_TIME_SCALE": str(args.time_scale),
        "EDGEOFF_AGENT_TIME_COMPRESSION": str(args.time_compression),
    }
    agent = children.start(
        "agent", [python, "-m", "mobile_agent", "--out", str(agent_out), *scenario_args], agent_env
    )
    (out / "processes.json").write_text(json.dumps({"up": os.getpid(), **children.pids()}, indent=2) + "\n")
    progress = _Progress(brokers.settings(OBSERVER), agent_id)
    started = time.monotonic()
    try:
        _follow(console, progress, agent, started, args.duration, interrupted)
    finally:
        progress.stop()
    if agent.proc.poll() is None or not agent_out.exists():
        console.print(f"[red]edgeoff up: the agent wrote no results; see {agent.log_path}[/]")
        return 1
    record = json.loads(agent_out.read_text(encoding="utf-8"))
    children.stop_all()  # the sites' logs are complete once they stopped
    injections = [
        i
        for c in children.started
        if c.name.startswith("site-")
        for i in injected_failures(c.log_path.read_text(errors="replace"))
    ]
    detections = [Detection(d["site"], d["ts"], d["how"]) for d in record.pop("detections")]
    record.update(detection_summary(injections, detections))
    fallback_log = record.pop("fallback_log")
    record.pop("twin", None)  # the replay record stays in agent.json (`edgeoff twin`)
    config = {
        "mode": "live (edgeoff up)",
        "scenario": str(args.scenario) if args.scenario else "paper (default)",
        "datasets": [args.dataset],
        "engines": [args.engine],
        "duration_s": args.duration,
        "time_compression": args.time_compression,
        "time_scale": args.time_scale,
        "seed": args.seed,
        "broker": f"{host}:{port}",
        "broker_accounts": brokers.secrets is not None,  # False: a reused broker, used as it is
    }
    injected = [{"site": i.site, "ts": i.ts, "down_s": i.down_s} for i in injections]
    body = {
        "config": config,
        "results": [record],
        "injected": injected,
        "detections": [d.__dict__ for d in detections],
        "fallbacks": fallback_log,
    }
    (out / "results.json").write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    _print_table(console, record)
    console.print(f"wrote {out / 'results.json'}")
    return EXIT_INTERRUPTED if interrupted.is_set() else 0


def _follow(
    console: Console,
    progress: _Progress,
    agent: Child,
    started: float,
    duration: float,
    interrupted: threading.Event,
) -> None:
    """Show progress until the agent exits; on Ctrl-C (or past its grace time) ask it to stop."""
    asked_to_stop_at: float | None = None
    with console.status("starting") as status:
        while agent.proc.poll() is None:
            progress.drain()
            elapsed = time.monotonic() - started
            status.update(f"{min(elapsed, duration):5.0f}/{duration:.0f} s  {progress.line()}")
            overdue = elapsed > duration + AGENT_GRACE_S
            if (interrupted.is_set() or overdue) and asked_to_stop_at is None:
                console.print("stopping the agent after its current task")
                _signal_group(agent.proc.pid, signal.SIGTERM)
                asked_to_stop_at = time.monotonic()
            if asked_to_stop_at is not None and time.monotonic() - asked_to_stop_at > INTERRUPT_GRACE_S:
                return
            with contextlib.suppress(subprocess.TimeoutExpired):
                agent.proc.wait(POLL_S)
    progress.drain()
    console.print(progress.line())
