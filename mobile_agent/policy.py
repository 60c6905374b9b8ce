"""The agent's retained policy topic `agents/{agent}/policy` (JSON): the policy, its Q-values and
availability, the last fallback and the progress; recomputed (a new version) when a prediction or a status
changes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from edgeoff.wire import topics
from mobile_agent.state import AgentState

__all__ = ["PolicyPublishing"]


class PolicyPublishing(AgentState):
    """Policy publishing of `MobileAgent` (a mixin over `AgentState`)."""

    on_policy: Callable[[dict[str, Any]], None] | None
    _policy_topic: str
    _policy_version: int
    _policy_dirty: bool
    _policy_body: dict[str, Any] | None
    _last_fallback: dict[str, Any] | None

    def _publish_policy(self, *, progress_only: bool = False) -> None:
        """Publish the retained policy; recompute it (new version) unless only the progress changed."""
        if self._policy_body is None or not progress_only:
            snapshot = self.planner.policy(self.view)
            self._policy_version += 1
            self.counters.incr("policy_recomputations")
            self._policy_body = {
                "agent": self.settings.agent,
                "engine": self.planner.engine.name,
                **snapshot.to_json(self.site_ids),
                "prediction_versions": self.view.prediction_versions(),
                "version": self._policy_version,
            }
        r = self.record
        body: dict[str, Any] = {
            **self._policy_body,
            "last_fallback": self._last_fallback,
            "progress": {
                "apps_started": r.apps_started,
                "apps_done": r.apps_done,
                "failures": r.remote_failures,  # a running count: recounting every task was quadratic
                "fallbacks": r.fallback_count,
            },
            "ts": self.wall_clock(),
        }
        payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
        if (
            self.mqtt.publish(self._policy_topic, payload, qos=topics.QOS_AT_LEAST_ONCE, retain=True)
            is not None
        ):
            self._policy_dirty = False
        if self.on_policy is not None:
            self.on_policy(body)
