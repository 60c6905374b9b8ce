"""`edgeoff up` then `edgeoff twin`: the live run replayed through the offline simulator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import _binary, free_port

pytestmark = pytest.mark.timeout(150)


def test_twin_replays_a_short_live_run(tmp_path: Path) -> None:
    _binary("mosquitto")
    _binary("mosquitto_passwd")
    _binary("redis-server")
    out = tmp_path / "run"
    unreachable = ["--broker", f"127.0.0.1:{free_port()}", "--redis", f"redis://127.0.0.1:{free_port()}/0"]
    # ten trace hours per second: a few injected failures in 15 s
    up = [sys.executable, "-m", "launcher.cli", "up", "--out", str(out), "--duration", "15", *unreachable]
    up += ["--own-brokers", "--time-compression", "36000", "--seed", "3"]
    done = subprocess.run(up, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    twin = subprocess.run(
        [sys.executable, "-m", "launcher.cli", "twin", str(out)], capture_output=True, text=True, timeout=60
    )
    assert twin.returncode == 0, twin.stderr
    figures = json.loads(twin.stdout.strip().splitlines()[-1])
    assert set(figures) == {
        "apps",
        "rt_rel_err",
        "energy_rel_err",
        "fallbacks_live",
        "fallbacks_sim",
        "placements_agree_pct",
        "truncated",
    }
    assert figures["truncated"] is False  # a short run fits under the agent's cap
    live = json.loads((out / "results.json").read_text())["results"][0]
    assert 0 < figures["apps"] <= live["apps"]
    # the same workload, failures and views: the model explains the live run up to the system's overhead
    assert abs(figures["rt_rel_err"]) < 0.25
    assert abs(figures["energy_rel_err"]) < 0.25
    assert figures["placements_agree_pct"] >= 80.0


def test_twin_of_a_folder_without_a_run_is_one_line_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "launcher.cli", "twin", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "results.json: not found" in done.stderr
