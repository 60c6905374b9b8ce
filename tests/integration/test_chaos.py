"""The small version of benchmarks/chaos.py: one fault of each of the six kinds while the agent offloads."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from needs import missing

pytestmark = pytest.mark.timeout(400)

CHAOS = Path(__file__).parents[2] / "benchmarks" / "chaos.py"


def test_one_fault_of_each_kind_loses_nothing_duplicates_nothing_and_suspects_no_healthy_site(
    tmp_path: Path,
) -> None:
    for tool in ("mosquitto", "redis-server"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            missing(f"{tool} (apt-get install mosquitto redis-server)")
    run = subprocess.run(
        [sys.executable, str(CHAOS), "--faults", "1", "--gap-s", "2", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=360,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["tasks_issued"] > 0
    assert summary["tasks_lost"] == 0
    assert summary["duplicates_accepted"] == 0
    assert summary["crashes"] == []
    assert summary["false_suspicions_broker_redis"] == 0
    kinds = summary["kinds"]
    assert kinds["site_stop"]["stale_executions"] + kinds["partition"]["stale_executions"] == 0
    assert all(row["faults"] == 1 for row in kinds.values())
