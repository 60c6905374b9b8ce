"""`edgeoff up`'s run: brokers, sites, worker and agent started in order, followed, measured, stopped.

    check everything (arguments, scenario, --out, brokers to reuse, binaries): exit 2 before anything runs
    -> brokers -> sites and prediction worker, each until ready -> agent until ready -> progress
    -> results table and results.json -> every process stopped

Exit 0 after a run in which applications used the sites; 1 when a daemon did not start or exited during
the run, the agent wrote no results, or no application could use any site; 2 for bad input (nothing
started); 130 after Ctrl-C (results still written). Every child runs in its own process group
(launcher.up.children), so a Ctrl-C in the terminal reaches only this command, which then stops the
children in order: the agent first, so it writes what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from rich.console import Console

from edgeoff.errors import EdgeoffError
from edgeoff.files import atomic_write, check_output
from edgeoff.scenario import Scenario, load_scenario
from edgeoff.traces import load_node_table
from launcher.brokers import agent_username, site_username
from launcher.up.broker_setup import (
    PROGRESS,
    WORKER,
    BrokerPlan,
    Brokers,
    plan_brokers,
    redact,
    start_brokers,
)
from launcher.up.children import Child, Children, StartInterruptedError, last_line, wait_ready
from launcher.up.progress import Progress, follow
from launcher.up.report import (
    RunWindow,
    detection_log,
    injection_log,
    print_table,
    results_body,
    run_failure,
)
from launcher.up.workdir import remove_stale, work_folder

__all__ = ["CONNECTION_FILE", "run"]

EXIT_FAILED = 1  # the run did not do what it should (the reason is printed)
EXIT_INTERRUPTED = 130  # the shell's code for a SIGINT
DAEMON_START_TIMEOUT_S = 60.0  # importing numpy and scikit-learn takes seconds on a loaded small machine
CONNECTION_FILE = "connection.json"  # in --out: how `edgeoff status --run DIR` connects (no secret in it)


def say(console: Console, text: str) -> None:
    """One line as it is: no markup, no highlighting, never wrapped (so a command can be copied)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def fail(console: Console, text: str) -> None:
    """The reason a run failed, in red, as it is (a path with brackets is not markup)."""
    console.print(f"edgeoff up: {text}", style="red", markup=False, highlight=False, soft_wrap=True)


def run(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    if args.time_compression is None:
        args.time_compression = scenario.simulation.time_compression
    dataset = scenario.dataset(args.dataset)
    scenario.require_nodes([args.dataset], load_node_table(), "the packaged LANL node table")
    out: Path = args.out
    check_output(out, folder=True)
    console = Console(stderr=False)
    for folder in remove_stale():
        say(console, f"removed {folder}, the work folder of an `edgeoff up` that was killed")
    plan = plan_brokers(args, lambda text: say(console, text))  # bad --broker, missing binary: exit 2
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for stale in ("processes.json", CONNECTION_FILE, "results.json", "agent.json"):
        (out / stale).unlink(missing_ok=True)  # a previous run's: never mistaken for this one's
    for stale_log in logs.glob("*.injections.jsonl"):
        stale_log.unlink()
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
        with work_folder() as tmp:
            return _run(args, scenario, dataset, plan, console, out, children, tmp, interrupted)
    except StartInterruptedError as exc:
        console.print(f"edgeoff up: {exc}; stopping everything")
        return EXIT_INTERRUPTED
    except EdgeoffError as exc:  # StartError among them: something did not start
        fail(console, str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        console.print("edgeoff up: interrupted twice, stopping everything")
        return EXIT_INTERRUPTED
    finally:
        children.stop_all()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _start_daemons(
    args: argparse.Namespace,
    scenario: Scenario,
    dataset: dict[str, str],
    brokers: Brokers,
    children: Children,
    health: Path,
    agent_out: Path,
    interrupted: threading.Event,
) -> Child:
    """Sites and the prediction worker until ready, then the agent until ready; the agent."""
    python = sys.executable
    scenario_args = ["--scenario", str(args.scenario)] if args.scenario else []
    waiting = []
    for i, site in enumerate(dataset):
        env = {
            **brokers.env("EDGEOFF_SITE_", site_username(site)),
            "EDGEOFF_SITE_EXECUTION_SCALE": str(args.time_scale),
            "EDGEOFF_SITE_HEALTH_FILE": str(health / f"site-{site}.json"),
            "EDGEOFF_SITE_INJECTION_LOG": str(injection_log(children.logs, site)),
        }
        site_args = ["--site", site, "--dataset", args.dataset, "--inject-failures"]
        site_args += ["--time-compression", str(args.time_compression), "--seed", str(args.seed * 1000 + i)]
        child = children.start(f"site-{site}", [python, "-m", "site_daemon", *site_args, *scenario_args], env)
        waiting.append((child, health / f"site-{site}.json"))
    env = {
        **brokers.env("EDGEOFF_WORKER_", WORKER),
        "EDGEOFF_WORKER_HEALTH_FILE": str(health / "prediction-worker.json"),
    }
    # the sites' failure rate: the worker's availability window is the scenario's at this rate
    worker_args = ["--dataset", args.dataset, "--time-compression", str(args.time_compression)]
    worker_args += scenario_args
    child = children.start("prediction-worker", [python, "-m", "prediction_worker", *worker_args], env)
    waiting.append((child, health / "prediction-worker.json"))
    wait_ready(waiting, DAEMON_START_TIMEOUT_S, interrupted)
    agent_env = {
        **brokers.env("EDGEOFF_AGENT_", agent_username(scenario.mobile_id)),
        "EDGEOFF_AGENT_AGENT": scenario.mobile_id,
        "EDGEOFF_AGENT_ENGINE": args.engine,
        "EDGEOFF_AGENT_DATASET": args.dataset,
        "EDGEOFF_AGENT_DURATION_S": str(args.duration),
        "EDGEOFF_AGENT_SEED": str(args.seed),
        "EDGEOFF_AGENT_TIME_SCALE": str(args.time_scale),
        "EDGEOFF_AGENT_TIME_COMPRESSION": str(args.time_compression),
        "EDGEOFF_AGENT_HEALTH_FILE": str(health / "agent.json"),
        "EDGEOFF_AGENT_RECORD_TWIN": "true",  # `edgeoff twin RUN_DIR` replays it
        "EDGEOFF_AGENT_DETECTION_LOG": str(detection_log(children.logs)),
    }
    agent_args = ["--out", str(agent_out), *scenario_args]
    agent = children.start("agent", [python, "-m", "mobile_agent", *agent_args], agent_env)
    wait_ready([(agent, health / "agent.json")], DAEMON_START_TIMEOUT_S, interrupted)
    return agent


def _run(
    args: argparse.Namespace,
    scenario: Scenario,
    dataset: dict[str, str],
    plan: BrokerPlan,
    console: Console,
    out: Path,
    children: Children,
    tmp: Path,
    interrupted: threading.Event,
) -> int:
    agent_id = scenario.mobile_id  # the agent runs on the mobile device: account agent-<mobile id>
    brokers = start_brokers(plan, list(dataset), agent_id, children, tmp)
    own = "" if brokers.secrets is None else " (the project's configuration, with accounts)"
    where = f"{brokers.host}:{brokers.port}"
    say(console, f"broker {where}{own}, redis {redact(brokers.redis_url)}; logs in {out / 'logs'}")
    atomic_write(out / CONNECTION_FILE, json.dumps(brokers.connection(), indent=2) + "\n")
    say(console, f"watch it live: {brokers.watch_command()}")
    say(console, f"or: edgeoff status --run {out} --watch")
    health = tmp / "health"
    health.mkdir()
    agent_out = out / "agent.json"
    agent = _start_daemons(args, scenario, dataset, brokers, children, health, agent_out, interrupted)
    window = RunWindow(start=time.time())
    atomic_write(out / "processes.json", json.dumps({"up": os.getpid(), **children.pids()}, indent=2) + "\n")
    progress = Progress(brokers.settings(PROGRESS), agent_id)
    try:
        follow(console, progress, agent, time.monotonic(), args.duration, interrupted)
    finally:
        progress.stop()
    window = RunWindow(window.start, end=time.time())
    if agent.proc.poll() is None or not agent_out.exists():
        code = agent.proc.poll()
        why = "it did not stop in time" if code is None else f"exit {code}: {last_line(agent.log_path)}"
        fail(console, f"the agent wrote no results ({why}); see {agent.log_path}")
        return EXIT_FAILED
    died = [c for c in children.started if c is not agent and c.proc.poll() is not None]
    children.stop_all()  # the sites' records are complete once they stopped
    record = json.loads(agent_out.read_text(encoding="utf-8"))
    body = results_body(args, scenario, brokers, record, children, window)
    atomic_write(out / "results.json", json.dumps(body, indent=2) + "\n")
    print_table(console, body["results"][0])
    console.print(f"wrote {out / 'results.json'}")
    failure = run_failure(body["results"][0], died)
    if failure is not None:
        fail(console, failure)
        return EXIT_FAILED
    return EXIT_INTERRUPTED if interrupted.is_set() else 0
