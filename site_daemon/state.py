"""What every part of the site reads: the state `SiteDaemon.__init__` (site_daemon.daemon) sets.

The daemon is one class assembled from mixins, one concern each (the task path, status and heartbeats,
injected failures); they inherit these declarations so that each states only what is its own.
"""

from __future__ import annotations

from collections.abc import Callable

from edgeoff.scenario import Site
from edgeoff.wire.messages import TaskResult
from edgeoff.wire.mqtt import Counters, MqttClient
from site_daemon.settings import SiteSettings

__all__ = ["SiteState"]


class SiteState:
    """Declarations only (for the type checker); the values are set by `SiteDaemon.__init__`."""

    settings: SiteSettings
    site: Site
    mqtt: MqttClient
    counters: Counters
    clock: Callable[[], float]  # monotonic seconds
    wall_clock: Callable[[], float]  # epoch seconds
    _session: int | None  # the current session (None: not connected yet)
    _up: bool  # False while an injected failure lasts
    _unsent: list[tuple[str, TaskResult]]  # (topic, result) to publish once connected
