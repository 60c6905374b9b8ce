"""`edgeoff up` end to end: its own brokers, sites with failure injection, the agent, no leftovers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import _binary, free_port, wait_for

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
    _binary("redis-server")
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> tuple[subprocess.Popen[bytes], Path]:
        out = tmp_path / "run"
        unreachable = [
            "--broker",
            f"127.0.0.1:{free_port()}",
            "--redis",
            f"redis://127.0.0.1:{free_port()}/0",
        ]
        cmd = [sys.executable, "-m", "edgeoff.cli", "up", "--out", str(out), *unreachable, *args]
        log = (tmp_path / "up.log").open("wb")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        started.append(proc)
        return proc, out

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def pids(out: Path) -> dict[str, int]:
    found: dict[str, int] = json.loads((out / "processes.json").read_text())
    return found


def log_of(tmp_path: Path) -> str:
    return (tmp_path / "up.log").read_text(errors="replace")


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
    assert record["failures_detected"] <= record["failures_injected"]
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
