"""The operations settings every daemon shares: log format, metrics endpoint, health file.

:class:`OpsSettings` is a mixin: a daemon's settings class derives from `DaemonSettings` and from it, so the
fields take the daemon's own environment prefix (`EDGEOFF_SITE_METRICS_PORT`, `EDGEOFF_WORKER_HEALTH_FILE`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings

__all__ = [
    "DEFAULT_HEALTH_INTERVAL_S",
    "DEFAULT_LOOP_WATCHDOG_S",
    "OpsSettings",
    "add_ops_arguments",
    "settings_from_args",
]

DEFAULT_HEALTH_INTERVAL_S = 1.0  # health file rewrite and Redis probe period; probes allow several seconds
# A serve loop silent this long is hung: the daemon exits so that its supervisor restarts it. Well above any
# legitimate pause of a loop (an SVR fit, a policy iteration: well under a second), equal to systemd's
# WatchdogSec of the units, and as long as the health check that kills a frozen daemon under compose.
DEFAULT_LOOP_WATCHDOG_S = 30.0


class OpsSettings(BaseModel):
    """Mixin of a daemon's settings: how it is observed (logs, metrics, health, systemd)."""

    log_format: Literal["text", "json"] = "text"  # json: one object per line, for log shippers
    metrics_port: Annotated[int, Field(ge=0, le=65535)] | None = None  # Prometheus /metrics; None or 0: off
    metrics_host: str = "0.0.0.0"  # bind address of the metrics endpoint (a pod IP must be scrapable)
    health_file: Path | None = None  # JSON health record, rewritten atomically; read by `edgeoff health`
    health_interval_s: Annotated[float, Field(gt=0)] = DEFAULT_HEALTH_INTERVAL_S
    # seconds without a pass of the serve loop before the daemon exits (edgeoff.ops.watchdog); 0: off
    loop_watchdog_s: Annotated[float, Field(ge=0)] = DEFAULT_LOOP_WATCHDOG_S


def add_ops_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options of :class:`OpsSettings` (their `dest` names are the field names) and the
    `--settings-file` every daemon takes."""
    group = parser.add_argument_group("operations")
    group.add_argument(
        "--settings-file", type=Path, help="KEY=value settings file (systemd EnvironmentFile format)"
    )
    group.add_argument("--log-format", choices=("text", "json"), help="log lines as text or JSON objects")
    group.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (0: off)")
    group.add_argument("--health-file", type=Path, help="write a JSON health record here (edgeoff health)")


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def settings_from_args(settings_type: type[SettingsT], args: argparse.Namespace) -> SettingsT:
    """A daemon's settings: the options given on the command line win over the environment, which wins
    over the `--settings-file`."""
    overrides = {
        name: value for name, value in vars(args).items() if value is not None and name != "settings_file"
    }
    return settings_type(_env_file=args.settings_file, **overrides)
