"""The agent's event pump: every wait drains the inbox, so statuses, predictions and results are handled at
once and the policy is republished when it changed."""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from edgeoff.ops import MAX_IDLE_WAIT_S, Operations
from edgeoff.ops.logs import DropLog, RateLimitedLog
from edgeoff.wire import topics
from edgeoff.wire.codec import decode_json, decode_msgpack
from edgeoff.wire.errors import DecodeError, TopicError
from edgeoff.wire.messages import Prediction, SiteProfile, SiteStatus, TaskResult
from edgeoff.wire.mqtt import Connected, Disconnected, Message, MqttEvent
from edgeoff.wire.sessions import SessionBound
from mobile_agent.meter import Detection
from mobile_agent.planner import Change
from mobile_agent.state import AgentState
from mobile_agent.twin_record import RunRecorder

__all__ = ["REFUSED_CODES", "EventPump"]

# CONNACK reason codes of a broker that will not take these credentials, however often asked: MQTT v5 bad
# user name or password (0x86), not authorized (0x87); MQTT 3.1.1 codes 4 and 5.
REFUSED_CODES = frozenset({0x86, 0x87, 4, 5})

log = logging.getLogger("edgeoff.agent")


class EventPump(AgentState):
    """Event handling of `MobileAgent` (a mixin over `AgentState`)."""

    recorder: RunRecorder
    ops: Operations
    stop: threading.Event
    inbox: queue.Queue[MqttEvent]
    sessions: SessionBound | None
    _policy_dirty: bool
    _sent: dict[tuple[str, int], int]
    _results: dict[tuple[str, int], TaskResult]
    _drops: DropLog
    _quiet: RateLimitedLog
    _refused: int | None  # the broker's reason code when it refused our connection (bad credentials)

    if TYPE_CHECKING:  # provided by another part of the class; declared for the type checker

        def _publish_policy(self, *, progress_only: bool = False) -> None: ...  # PolicyPublishing's

        def _on_result(self, sender: str, result: TaskResult) -> None: ...  # RemoteAttempts'

        def _read_back(self, key: tuple[str, int]) -> None: ...  # RemoteAttempts'

    def _pump(self, until: float, done: Callable[[], bool], *, interruptible: bool = False) -> None:
        """Handle events until `done()`, the time `until` (clock), or (interruptible) a stop request."""
        while not done():
            self.ops.tick(connected=self.mqtt.connected.is_set())
            if interruptible and self.stop.is_set():
                return
            remaining = until - self.clock()
            if remaining <= 0:
                return
            try:
                event = self.inbox.get(timeout=min(remaining, MAX_IDLE_WAIT_S))
            except queue.Empty:
                continue
            self._handle(event)
            if self._policy_dirty:
                self._publish_policy()
        self._drops.flush()
        self._quiet.flush()

    def _handle(self, event: MqttEvent) -> None:
        match event:
            case Message():
                try:
                    self._on_message(event)
                except (DecodeError, TopicError) as exc:
                    self.counters.incr("in_dropped.invalid")
                    self._drops.drop("invalid", event.topic, str(exc))
            case Connected():
                log.info("agent %s: connected", self.settings.agent)
                self._policy_dirty = True
                for key in list(self._sent):  # a result published while we reconnected may be stored only
                    if key not in self._results:
                        self._read_back(key)
                self._refused = None
            case Disconnected():
                log.warning("agent %s: disconnected (reason %d)", self.settings.agent, event.reason_code)
                if event.reason_code in REFUSED_CODES and not self.mqtt.connected.is_set():
                    self._refused = event.reason_code

    def _on_message(self, message: Message) -> None:
        parsed = topics.parse_topic(message.topic)
        limit = self.settings.max_message_bytes
        change: Change
        match parsed.kind:
            case "status":
                status = decode_json(SiteStatus, message.payload, max_bytes=limit)
                if self.sessions is not None and not self.sessions.plausible(parsed.id, status.session):
                    self.counters.incr("in_ignored.unknown_session")  # never given by Redis: forged
                    self._quiet.log(
                        logging.INFO,
                        f"session:{parsed.id}",
                        "agent: %s",
                        f"ignored a status of {parsed.id} with a session above its counter",
                    )
                    return
                self._heard_from(parsed.id)
                change = self.view.apply_status(parsed.id, status)
                self._on_change(parsed.id, change, "offline status")
            case "profile":
                profile = decode_json(SiteProfile, message.payload, max_bytes=limit)
                self._heard_from(parsed.id)
                change = self.view.apply_profile(parsed.id, profile)
                self._count_ignored(change, message.topic)
            case "prediction":
                prediction = decode_json(Prediction, message.payload, max_bytes=limit)
                self._heard_from(parsed.id)
                change = self.view.apply_prediction(parsed.id, prediction)
                self._on_change(parsed.id, change, "detector:down prediction")
            case "results" if parsed.id == self.settings.agent and parsed.site is not None:
                self._on_result(parsed.site, decode_msgpack(TaskResult, message.payload, max_bytes=limit))
            case _:
                raise TopicError(f"unexpected topic {message.topic[:80]!r}")

    def _heard_from(self, site: str) -> None:
        """A valid message of `site` (or about it) arrived: a site avoided after a missed deadline is back."""
        if self.view.heard_from(site):
            self._policy_dirty = True

    def _count_ignored(self, change: Change, topic: str) -> None:
        if change == "ignored":
            self.counters.incr("in_ignored")
            self._quiet.log(
                logging.INFO, "ignored", "agent: ignored a stale or unknown message on %.80s", topic
            )

    def _on_change(self, site: str, change: Change, how: str) -> None:
        self._count_ignored(change, site)
        if change in ("changed", "down", "up"):
            self._policy_dirty = True
            i = self.site_ids.index(site)
            self.recorder.site_view(
                self.wall_clock(),
                site,
                known_down=bool(self.view.known_down()[i]),
                forecast=float(self.view.forecasts()[i]),
            )
        if change == "down":
            self._detected(Detection(site=site, ts=self.wall_clock(), how=how))
            log.warning("agent: site %s is down (%s)", site, how)
        elif change == "up":
            log.info("agent: site %s is up", site)

    def _detected(self, detection: Detection) -> None:
        """Count the detection, keep the first ones, append it to the detection log (if set)."""
        self.record.detected(detection)
        path = self.settings.detection_log
        if path is None:
            return
        line = json.dumps({"site": detection.site, "ts": detection.ts, "how": detection.how})
        try:
            with path.open("a", encoding="utf-8") as log_file:
                log_file.write(line + "\n")
        except OSError as exc:
            self.counters.incr("detection_log_errors")
            self._quiet.log(logging.WARNING, "detection_log", "agent: %s", f"cannot append to {path}: {exc}")
