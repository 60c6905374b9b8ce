"""The site's connection: a session number per connection, its Last Will, the retained online status and
profile, the repair of a stale status; the heartbeats of the session (site_daemon.heartbeats)."""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from edgeoff.scenario import Site
from edgeoff.wire import topics
from edgeoff.wire.codec import decode_json, encode_json
from edgeoff.wire.errors import DecodeError
from edgeoff.wire.messages import SiteProfile, SiteStatus, TaskResult
from edgeoff.wire.mqtt import Connected, Counters, Message, MqttClient, Will
from edgeoff.wire.store import TaskStore
from site_daemon.heartbeats import HeartbeatSender
from site_daemon.settings import SiteSettings
from site_daemon.tasks import SiteEvent

__all__ = ["StatusKeeping"]

log = logging.getLogger("edgeoff.site")


class StatusKeeping:
    """Connection, status and heartbeats of `SiteDaemon` (a mixin: the daemon's state)."""

    settings: SiteSettings
    site: Site
    store: TaskStore
    mqtt: MqttClient
    counters: Counters
    clock: Callable[[], float]
    wall_clock: Callable[[], float]
    inbox: queue.Queue[SiteEvent]
    _heartbeats: HeartbeatSender
    _status_topic: str
    _session: int | None
    _up: bool
    _unsent: list[tuple[str, TaskResult]]

    if TYPE_CHECKING:  # provided by another part of the class; declared for the type checker

        def _publish_result(
            self, agent: str, result: TaskResult, payload: bytes | None = None
        ) -> None: ...  # TaskClaims'

    def _status(self, state: Literal["online", "offline"], session: int) -> bytes:
        return encode_json(SiteStatus(state=state, session=session, ts=self.wall_clock()))

    def _make_will(self) -> Will:
        """Runs (in the daemon's thread, from `poll`) before every connection: a new session and its will."""
        session = self.store.next_session(self.site.id)
        return Will(topic=self._status_topic, payload=self._status("offline", session), qos=1, retain=True)

    def _on_connected(self, event: Connected) -> None:
        if event.will is None or not self._up:  # a connection made just before an injected crash
            return
        session = decode_json(SiteStatus, event.will.payload).session
        self._session = session
        self._heartbeats.beat_for(session)
        profile = SiteProfile(
            site=self.site.id,
            type=self.site.type,
            mips=self.site.mips,
            memory_gb=self.site.memory_gb,
            storage_gb=self.site.storage_gb,
        )
        self.mqtt.publish(
            self._status_topic, self._status("online", session), qos=topics.QOS_AT_LEAST_ONCE, retain=True
        )
        self.mqtt.publish(
            topics.site_topic(self.site.id, "profile"),
            encode_json(profile),
            qos=topics.QOS_AT_LEAST_ONCE,
            retain=True,
        )
        log.info("site %s: online, session %d", self.site.id, session)
        unsent, self._unsent = self._unsent, []
        for agent, result in unsent:
            self._publish_result(agent, result)

    def _on_own_status(self, message: Message) -> None:
        """Repair the retained status when a late will of an older session overwrote the current online.

        A message flagged retained is the value the broker held when we subscribed, which predates our
        online publish (sent after the SUBSCRIBE on the same connection): our online replaces it anyway.
        A live (non-retained) delivery of an offline with an older session is a late will: repair it.
        """
        if message.retain:
            return
        try:
            status = decode_json(SiteStatus, message.payload, max_bytes=self.settings.max_message_bytes)
        except DecodeError as exc:
            status = None
            log.warning("site %s: unreadable status on its own topic: %s", self.site.id, exc)
        session = self._session
        if session is None or not self._up or (status is not None and status.state == "online"):
            return
        if status is not None and status.session == session:
            return  # our own offline (shutdown) or our own will: nothing to repair
        self.counters.incr("status_repaired")
        log.warning(
            "site %s: stale status %s on its topic; re-publishing online (session %d)",
            self.site.id,
            status,
            session,
        )
        self.mqtt.publish(
            self._status_topic, self._status("online", session), qos=topics.QOS_AT_LEAST_ONCE, retain=True
        )
