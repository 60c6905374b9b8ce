"""The worker's heartbeat board: heartbeats skip the inbox (ARCHITECTURE rule 8).

The network thread offers every message to :meth:`HeartbeatBoard.take` (the MQTT client's fast path): a
heartbeat is stamped on arrival and appended to the board (one list append, atomic under the GIL; nothing
that can block), and the worker's loop takes the whole board at every poll, in arrival order. A beat
appended while the board is swapped is taken at the next poll, or at worst lost (the next one follows
within one interval). A worker that was busy (Redis, a refit) therefore still sees when each heartbeat came.
"""

from __future__ import annotations

__all__ = ["HeartbeatBoard"]

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
