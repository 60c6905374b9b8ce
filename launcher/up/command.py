"""`edgeoff up`'s run: brokers, sites, worker and agent started in order, followed, measured, stopped.

Every child runs in its own process group (launcher.up.children), so a Ctrl-C in the terminal reaches only
this command, which then stops the children in order: the agent first, so it writes what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

from rich.console import Console

from edgeoff.errors import EdgeoffError
from edgeoff.scenario import Scenario, load_scenario
from launcher.brokers import agent_username, site_username
from launcher.up.broker_setup import OBSERVER, WORKER, MissingBinaryError, ensure_brokers, redact
from launcher.up.children import Children
from launcher.up.progress import Progress, follow
from launcher.up.report import injected_failures, print_table
from mobile_agent.meter import Detection, detection_summary
from mobile_agent.planner import LIVE_ENGINES

__all__ = ["run"]

EXIT_MISSING_BINARY = 2
EXIT_INTERRUPTED = 130  # the shell's code for a SIGINT


def say(console: Console, text: str) -> None:
    """One line as it is: no markup, no highlighting, never wrapped (so a command can be copied)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


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
    brokers = ensure_brokers(args, list(dataset), agent_id, children, tmp, lambda text: say(console, text))
    host, port = brokers.host, brokers.port
    own = "" if brokers.secrets is None else " (the project's configuration, with accounts)"
    say(console, f"broker {host}:{port}{own}, redis {redact(brokers.redis_url)}; logs in {out / 'logs'}")
    say(console, f"watch it live: {brokers.watch_command()}")
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
    progress = Progress(brokers.settings(OBSERVER), agent_id)
    started = time.monotonic()
    try:
        follow(console, progress, agent, started, args.duration, interrupted)
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
    print_table(console, record)
    console.print(f"wrote {out / 'results.json'}")
    return EXIT_INTERRUPTED if interrupted.is_set() else 0
