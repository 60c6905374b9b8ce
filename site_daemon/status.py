"""The site's connection: a session number per connection, its Last Will, the retained online status and
profile, the repair of a stale or forged status; the heartbeats of the session (site_daemon.heartbeats).

A status on the site's own topic that is not its own is answered: an older session's (a late will) or an
unreadable one by re-publishing the current online status; a newer session's by taking a newer session
still (a reconnect), when Redis did give that session out (someone else connected with this site's
credentials), or by re-publishing when it did not (a forgery: agents and workers ignore sessions above
the counter anyway, the re-publish only mends the retained copy that people see)."""

from __future__ import annotations

import logging
import queue
from typing import TYPE_CHECKING, Literal

from edgeoff.ops.logs import DropLog
from edgeoff.wire import topics
from edgeoff.wire.codec import decode_json, encode_json
from edgeoff.wire.errors import DecodeError
from edgeoff.wire.messages import SiteProfile, SiteStatus, TaskResult
from edgeoff.wire.mqtt import Connected, Message, Will
from edgeoff.wire.sessions import SessionBound
from edgeoff.wire.store import TaskStore
from site_daemon.heartbeats import HeartbeatSender
from site_daemon.state import SiteState
from site_daemon.tasks import SiteEvent

__all__ = ["REPAIR_INTERVAL_S", "StatusKeeping"]

REPAIR_INTERVAL_S = 0.1  # at most ten re-publications of the online status a second

log = logging.getLogger("edgeoff.site")


class StatusKeeping(SiteState):
    """Connection, status and heartbeats of `SiteDaemon` (a mixin over `SiteState`)."""

    store: TaskStore
    inbox: queue.Queue[SiteEvent]
    _heartbeats: HeartbeatSender
    _status_topic: str
    _drops: DropLog
    _sessions: SessionBound
    _repair_due: float | None  # when to re-publish the online status over a foreign one (None: not)
    _last_repair: float

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
        """Repair the retained status when a status not of the current session overwrote the online.

        A message flagged retained is the value the broker held when we subscribed, which predates our
        online publish (sent after the SUBSCRIBE on the same connection): our online replaces it anyway.
        A live (non-retained) delivery of another session's status is a late will, or not ours at all.
        """
        if message.retain:
            return
        try:
            status = decode_json(SiteStatus, message.payload, max_bytes=self.settings.max_message_bytes)
        except DecodeError as exc:
            status = None
            self.counters.incr("status_unreadable")
            self._drops.drop("status_decode", message.topic, str(exc))
        session = self._session
        if session is None or not self._up:
            return
        if status is not None and status.session == session:
            return  # our own online, offline (shutdown) or will: nothing to repair
        if (
            status is not None
            and status.session > session
            and self._sessions.plausible(self.site.id, status.session)
        ):
            # a newer session than ours that Redis did give out: readers now follow it, so take a newer one
            self.counters.incr("status_superseded")
            self._drops.drop("newer_session", message.topic, f"session {status.session}; reconnecting")
            self.mqtt.pause(with_will=False)
            self.mqtt.resume()
            return
        self.counters.incr("status_repaired")
        self._drops.drop(
            "stale_status", message.topic, f"{status!r:.120}; re-publishing online (session {session})"
        )
        self._repair_due = max(self._repair_due or 0.0, self._last_repair + REPAIR_INTERVAL_S)
        self._repair_status()

    def _repair_status(self) -> None:
        """Re-publish the online status when a repair is due (at most one per REPAIR_INTERVAL_S: a flood of
        foreign statuses gets a repair after the last one, not one publish each)."""
        now = self.clock()
        if self._repair_due is None or now < self._repair_due:
            return
        self._repair_due = None
        session = self._session
        if session is None or not self._up:
            return
        self._last_repair = now
        self.mqtt.publish(
            self._status_topic, self._status("online", session), qos=topics.QOS_AT_LEAST_ONCE, retain=True
        )
