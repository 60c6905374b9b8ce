"""Each daemon's command line is generated from its settings model: one place defines a setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from edgeoff.ops import settings_from_args
from mobile_agent.daemon import AgentSettings
from mobile_agent.daemon import build_parser as agent_parser
from prediction_worker.daemon import WorkerSettings
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
