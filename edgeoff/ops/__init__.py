"""Operations: what every daemon shares to be run and observed in production.

    settings  OpsSettings mixin (log_format, metrics_port, health_file, ...); settings_parser: a daemon's
              command line generated from its settings model
    logs      text or JSON-lines logging with the daemon's context on every line
    metrics   a Prometheus registry per daemon; the daemons' Counters exported at scrape time
    health    the atomically rewritten health file and the check behind `edgeoff health`
    systemd   sd_notify (READY, WATCHDOG, STOPPING) over NOTIFY_SOCKET, without a dependency
    daemon    run_daemon (the common `main()`) and Operations (tick from the serve loop)

Adopting it in a daemon (see site_daemon.daemon):

    class AgentSettings(DaemonSettings, OpsSettings): ...          # fields + EDGEOFF_AGENT_METRICS_PORT ...
    def build_agent(settings, stop, ops=None): ... ops.watch(agent.counters) ...
    # serve loop: self.ops.tick(connected=self.mqtt.connected.is_set()); shutdown: self.ops.stopping()
    def main(argv=None): return run_daemon(prog="edgeoff-agent", argv=argv, parser=settings_parser(...),
                                            settings_from_args=_settings, build=build_agent,
                                            label=lambda s: {"agent": s.agent})
"""

from edgeoff.ops.daemon import (
    EXIT_CONFIG,
    MAX_IDLE_WAIT_S,
    ObservedSettings,
    Operations,
    RedisProbe,
    Service,
    run_daemon,
)
from edgeoff.ops.health import HealthCheck, HealthRecord, check_health, read_health, write_health
from edgeoff.ops.logs import JsonFormatter, setup_logging
from edgeoff.ops.metrics import COUNTER_FAMILIES, CountersCollector, Metrics, exposition
from edgeoff.ops.settings import OpsSettings, field_comments, settings_from_args, settings_parser
from edgeoff.ops.systemd import Notifier

__all__ = [
    "COUNTER_FAMILIES",
    "EXIT_CONFIG",
    "MAX_IDLE_WAIT_S",
    "CountersCollector",
    "HealthCheck",
    "HealthRecord",
    "JsonFormatter",
    "Metrics",
    "Notifier",
    "ObservedSettings",
    "Operations",
    "OpsSettings",
    "RedisProbe",
    "Service",
    "check_health",
    "exposition",
    "field_comments",
    "read_health",
    "run_daemon",
    "settings_from_args",
    "settings_parser",
    "setup_logging",
    "write_health",
]
