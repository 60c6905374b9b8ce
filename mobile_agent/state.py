"""What every part of the agent reads: the state `MobileAgent.__init__` (mobile_agent.daemon) sets.

The agent is one class assembled from mixins, one concern each (task execution, remote attempts, the
event pump, policy publishing); they inherit these declarations so that each states only what is its own.
"""

from __future__ import annotations

from collections.abc import Callable

from edgeoff.scenario import Scenario
from edgeoff.wire.mqtt import Counters, MqttClient
from mobile_agent.avoidance import AvoidingView
from mobile_agent.planner import Planner
from mobile_agent.record import RunRecord
from mobile_agent.settings import AgentSettings

__all__ = ["AgentState"]


class AgentState:
    """Declarations only (for the type checker); the values are set by `MobileAgent.__init__`."""

    settings: AgentSettings
    scenario: Scenario
    planner: Planner
    view: AvoidingView
    site_ids: tuple[str, ...]
    mobile: int  # the phone's site index
    mqtt: MqttClient
    counters: Counters
    clock: Callable[[], float]  # monotonic seconds
    wall_clock: Callable[[], float]  # epoch seconds
    record: RunRecord
