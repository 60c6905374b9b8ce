"""Each daemon's command line is generated from its settings model: one place defines a setting."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from unittest.mock import MagicMock

import pytest
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from edgeoff.ops import settings_from_args
from mobile_agent.daemon import AgentSettings
from mobile_agent.daemon import build_parser as agent_parser
from prediction_worker.availability_trace import AvailabilityWindow
from prediction_worker.daemon import WorkerSettings, build_worker
from prediction_worker.daemon import build_parser as worker_parser
from site_daemon.daemon import SiteSettings
from site_daemon.daemon import build_parser as site_parser

DAEMONS = [(SiteSettings, site_parser), (WorkerSettings, worker_parser), (AgentSettings, agent_parser)]


@pytest.mark.parametrize(("model", "parser"), DAEMONS)
def test_every_top_level_setting_is_a_flag_with_help(model: type[BaseSettings], parser: object) -> None:
    built = parser()  # type: ignore[operator]
    actions = {a.dest: a for a in built._actions}
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            continue  # sections (broker, redis) come from the environment or the settings file
        assert name in actions, name
        assert actions[name].help, f"{name} has no help (a comment on its declaration)"
    assert "settings_file" in actions


def test_flags_win_over_the_environment_and_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "site.env"
    env_file.write_text("EDGEOFF_SITE_SITE=ec\nEDGEOFF_SITE_SEED=1\nEDGEOFF_SITE_FAILURE_MODE=crash\n")
    monkeypatch.setenv("EDGEOFF_SITE_SEED", "2")
    args = site_parser().parse_args(
        [
            "--settings-file",
            str(env_file),
            "--time-compression",
            "60",
            "--inject-failures",
            "--failure-mode",
            "hang",
        ]
    )
    settings = settings_from_args(SiteSettings, args)
    assert (settings.site, settings.seed, settings.failure_mode) == ("ec", 2, "hang")
    assert settings.time_compression == 60.0
    assert settings.inject_failures is True
    args = site_parser().parse_args(["--site", "ed", "--no-inject-failures", "--max-concurrent-tasks", "3"])
    settings = settings_from_args(SiteSettings, args)
    assert settings.inject_failures is False
    assert settings.max_concurrent_tasks == 3


def test_a_bad_choice_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        worker_parser().parse_args(["--detector", "nope"])
    assert exc.value.code == 2


def test_the_worker_takes_its_heartbeat_interval_from_the_scenario_only() -> None:
    assert "heartbeat_s" not in WorkerSettings.model_fields
    assert "missed_heartbeats" not in WorkerSettings.model_fields


@pytest.fixture
def no_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """build_worker without Redis: the store is a stand-in (only the worker's construction is tested)."""
    monkeypatch.setattr(
        "prediction_worker.daemon.PredictionStore.from_settings", lambda settings: MagicMock()
    )


@pytest.mark.usefixtures("no_redis")
def test_the_worker_window_is_the_scenarios_at_the_sites_time_compression(tmp_path: Path) -> None:
    """prediction_window_h trace hours at the sites' rate, in wall seconds: 24 h at 5400 -> 16 s."""
    scenario = tmp_path / "scenario.toml"
    paper = (Path(__file__).parents[1] / "edgeoff" / "scenarios" / "paper.toml").read_text(encoding="utf-8")
    scenario.write_text(paper.replace("prediction_window_h = 24\n", "prediction_window_h = 12\n"))
    worker = build_worker(WorkerSettings(time_compression=5400), threading.Event())
    assert worker.window == AvailabilityWindow(seconds=16.0, trace_h=24.0)
    worker = build_worker(WorkerSettings(scenario=scenario), threading.Event())
    assert worker.window == AvailabilityWindow(seconds=12.0, trace_h=12.0)  # at the scenario's 3600


@pytest.mark.usefixtures("no_redis")
def test_the_former_window_settings_are_read_with_a_warning_and_ignored(tmp_path: Path) -> None:
    env_file = tmp_path / "worker.env"
    env_file.write_text("EDGEOFF_WORKER_WINDOW_TRACE_H=12\nEDGEOFF_WORKER_TIME_COMPRESSION=7200\n")
    args = worker_parser().parse_args(["--settings-file", str(env_file), "--window-s", "60"])
    with pytest.warns(FutureWarning, match="is deprecated and ignored") as caught:
        settings = settings_from_args(WorkerSettings, args)
    assert sorted(str(w.message).split()[3] for w in caught) == ["window_s", "window_trace_h"]
    worker = build_worker(settings, threading.Event())
    assert worker.window == AvailabilityWindow(seconds=12.0, trace_h=24.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        WorkerSettings()  # nothing to warn about
