"""The agent's record for `edgeoff twin`: opt-in, capped (then marked truncated), and `edgeoff twin` on a
truncated or missing record (one line each)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeoff.scenario import Scenario, default_scenario
from launcher.cli import main
from mobile_agent.meter import Attempt, Phase, TaskMeasurement
from mobile_agent.planner import sample_app_run
from mobile_agent.settings import AgentSettings
from mobile_agent.twin_record import DEFAULT_TWIN_MAX_ENTRIES, RunRecorder

MD = 0


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return default_scenario()


def local_task(run: int, level: int, seconds: float) -> TaskMeasurement:
    phases = (Phase("execute", seconds, MD, MD),)
    return TaskMeasurement(run, level, False, True, MD, phases, (Attempt(MD, True, False),))


def record_runs(recorder: RunRecorder, scenario: Scenario, runs: int, t0: float = 1000.0) -> float:
    """Feed `runs` application runs, all on the phone, one wall second apart; the time after them."""
    rng = np.random.default_rng(0)
    ts = t0
    for run in range(runs):
        specs = sample_app_run(scenario, rng)
        recorder.app_run(run, ts, specs)
        recorder.site_view(ts, "ed", known_down=False, forecast=0.9)
        for spec in specs:
            recorder.task(ts, local_task(run, spec.level, spec.mi / 1000.0), scenario.site_ids)
        ts += 1.0
    return ts


def test_recording_is_off_unless_asked(scenario: Scenario) -> None:
    assert AgentSettings().record_twin is False
    recorder = RunRecorder()
    record_runs(recorder, scenario, 5)
    assert recorder.entries == 0
    assert recorder.to_json() is None


def test_the_record_stops_at_its_cap_and_says_so(scenario: Scenario) -> None:
    full = RunRecorder(enabled=True)
    record_runs(full, scenario, 3)
    entries = full.entries
    capped = RunRecorder(enabled=True, max_entries=entries + 2)
    record_runs(capped, scenario, 10)
    twin = capped.to_json()
    assert twin is not None
    assert capped.entries == entries + 2
    assert twin["truncated"] is True
    assert twin["truncated_ts"] == 1003.0  # the fourth run: its start and view change fit, a task did not
    assert twin["apps"][:3] == full.apps
    assert twin["started_ts"] == 1000.0
    untouched = full.to_json()
    assert untouched is not None
    assert untouched["truncated"] is False


def test_a_million_entries_stay_under_the_default_cap(scenario: Scenario) -> None:
    recorder = RunRecorder(enabled=True)
    task = local_task(0, 0, 0.1)
    for k in range(1_000_000):
        recorder.task(float(k), task, scenario.site_ids)
    assert recorder.entries == DEFAULT_TWIN_MAX_ENTRIES
    assert recorder.truncated_ts == float(DEFAULT_TWIN_MAX_ENTRIES)


def write_run(path: Path, twin: object) -> Path:
    config = {
        "scenario": "paper (default)",
        "datasets": ["DS1"],
        "engines": ["mdp-svr"],
        "time_compression": 3600.0,
        "time_scale": 1.0,
    }
    path.mkdir()
    (path / "results.json").write_text(json.dumps({"config": config, "injected": []}))
    (path / "agent.json").write_text(json.dumps({"twin": twin}))
    return path


def test_twin_compares_only_the_recorded_prefix(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = RunRecorder(enabled=True)
    record_runs(full, scenario, 4)
    recorder = RunRecorder(enabled=True, max_entries=full.entries - 1)  # the fourth run cut short
    record_runs(recorder, scenario, 20)
    assert main(["twin", str(write_run(tmp_path / "run", recorder.to_json()))]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    notes = [line for line in out if "comparing only" in line]
    assert notes == [
        f"edgeoff twin: the agent's record stopped at its cap of {full.entries - 1} entries "
        "(twin_max_entries): comparing only the first 3 complete application runs"
    ]
    summary = json.loads(out[-1])
    assert summary["apps"] == 3
    assert summary["truncated"] is True


def test_twin_refuses_a_run_without_a_record_in_one_line(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["twin", str(write_run(tmp_path / "off", None))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "record_twin setting is off" in err
    early = RunRecorder(enabled=True, max_entries=2)  # not even the first run's tasks
    record_runs(early, scenario, 3)
    assert main(["twin", str(write_run(tmp_path / "early", early.to_json()))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no complete application run before its cap (twin_max_entries) stopped it" in err
