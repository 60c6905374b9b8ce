"""The worker's heartbeat board: heartbeats skip the inbox (ARCHITECTURE rule 8).

The network thread offers every message to :meth:`HeartbeatBoard.take` (the MQTT client's fast path): a
heartbeat is stamped on arrival and appended to the board (one list append, atomic under the GIL; nothing
that can block), and the worker's loop takes the whole board at every poll, in arrival order. A beat
appended while the board is swapped is taken at the next poll, or at worst lost (the next one follows
within one interval). A worker that was busy (Redis, a refit) therefore still sees when each heartbeat came.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeoff.wire import topics
from edgeoff.wire.codec import decode_msgpack
from edgeoff.wire.errors import DecodeError, TopicError
from edgeoff.wire.messages import Heartbeat
from edgeoff.wire.mqtt import Counters, Message
from prediction_worker.detector import Detector, Shard, Verdict
from prediction_worker.settings import WorkerSettings

__all__ = ["HeartbeatBoard", "HeartbeatIntake"]

MAX_KNOWN_SITES = 100_000  # heartbeat topics remembered for the cheap path

HEARTBEAT_SUFFIX = "/heartbeat"


class HeartbeatBoard:
    """Heartbeats `(topic, payload, arrival)` waiting for the worker's loop."""

    def __init__(self) -> None:
        self._beats: list[tuple[str, bytes, float]] = []
        self.taken = 0  # heartbeats ever taken (written by the network thread only)

    def take(self, topic: str, payload: bytes, at: float) -> bool:
        """Network thread: keep a heartbeat; False for any other message (it goes to the inbox)."""
        if not topic.endswith(HEARTBEAT_SUFFIX):
            return False
        self._beats.append((topic, payload, at))
        self.taken += 1
        return True

    def drain(self) -> list[tuple[str, bytes, float]]:
        """The loop: every heartbeat taken since the last drain, oldest first."""
        beats, self._beats = self._beats, []
        return beats


class HeartbeatIntake:
    """The board's heartbeats into the detector (a mixin of `PredictionWorker`: the worker's state).

    The first heartbeat of a topic takes the checked path (`_on_message`: topic parsed and validated,
    ownership, counted drops); a valid, owned topic is then remembered, and its later beats only decode
    (strictly) and go to the detector, counted once per poll: no regex and no lock per beat.
    """

    settings: WorkerSettings
    counters: Counters
    detector: Detector
    shard: Shard
    _board: HeartbeatBoard
    _beats_counted: int
    _owned_site: dict[str, str]
    _arrivals: list[float]  # the arrivals of the heartbeats of the last drain, oldest first

    if TYPE_CHECKING:

        def _on_message(self, message: Message, *, held: bool = False) -> None: ...

        def _on_verdict(self, verdict: Verdict) -> None: ...

        def _drop(self, reason: str, topic: str, detail: str) -> None: ...

    def _take_beats(self) -> None:
        """Every heartbeat on the board, in arrival order, into the detector."""
        taken = self._board.taken
        self.counters.incr("in", taken - self._beats_counted)
        self._beats_counted = taken
        limit = self.settings.max_message_bytes
        counted = 0
        beats = self._board.drain()
        # when the network thread stamped them: the loop checks that it kept running (see poll)
        self._arrivals = [at for _, _, at in beats]
        for topic, payload, at in beats:
            site = self._owned_site.get(topic)
            if site is None:  # first beat on this topic (or a bad one): the checked path, then remembered
                self._on_message(Message(topic=topic, payload=payload, qos=0, retain=False, received_at=at))
                self._remember(topic)
                continue
            try:  # the cheap path of a known, owned site: no regex, no lock per beat
                session = decode_msgpack(Heartbeat, payload, max_bytes=limit).session
            except DecodeError as exc:
                self._drop("heartbeat_decode", topic, str(exc))
                continue
            counted += 1
            for verdict in self.detector.heartbeat(site, session, at):
                self._on_verdict(verdict)
        if counted:
            self.counters.incr("in_heartbeats", counted)

    def _remember(self, topic: str) -> None:
        """Cache a heartbeat topic whose site id is valid and owned (bounded)."""
        try:
            parsed = topics.parse_topic(topic)
        except TopicError:
            return
        if (
            parsed.kind == "heartbeat"
            and self.shard.owns(parsed.id)
            and len(self._owned_site) < MAX_KNOWN_SITES
        ):
            self._owned_site[topic] = parsed.id
