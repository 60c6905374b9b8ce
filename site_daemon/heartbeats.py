"""The site's heartbeats, on a thread of their own (ARCHITECTURE rule 8: heartbeats never wait).

The daemon's thread claims tasks in Redis, stores results and connects (a session INCR), any of which can
block for seconds when Redis stalls; heartbeats must not stop then, or the detector declares a healthy
site down. So a small thread publishes them (QoS 0, msgpack `{session, seq, mono_ts}`) on schedule and
does nothing else; the daemon's thread only tells it which session to beat for (`beat_for`, None: silent:
disconnected, or an injected failure). In the MQTT client's inline mode another thread may publish (paho
writes from it under the client's lock).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from edgeoff.ops import MAX_IDLE_WAIT_S
from edgeoff.wire import topics
from edgeoff.wire.codec import encode_msgpack
from edgeoff.wire.messages import Heartbeat
from edgeoff.wire.mqtt import Counters, MqttClient

__all__ = ["HeartbeatSender"]

log = logging.getLogger("edgeoff.site")

JOIN_TIMEOUT_S = 2.0


class HeartbeatSender:
    """Publishes a heartbeat every `interval_s` seconds while a session is set."""

    def __init__(
        self,
        *,
        mqtt: MqttClient,
        site: str,
        interval_s: float,
        counters: Counters,
        clock: Callable[[], float],
    ) -> None:
        self._mqtt = mqtt
        self._topic = topics.site_topic(site, "heartbeat")
        self._interval_s = interval_s
        self._counters = counters
        self._clock = clock
        self._session: int | None = None  # written by the daemon's thread, read here (one reference)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{site}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def beat_for(self, session: int | None) -> None:
        """Beat for `session` from now on (a new session starts at seq 0 at once); None: fall silent."""
        self._session = session
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(JOIN_TIMEOUT_S)

    def _run(self) -> None:
        current: int | None = None
        seq = 0
        next_at = self._clock()
        while not self._stop.is_set():
            session = self._session
            if session is None:
                current = None
                self._wake.wait(MAX_IDLE_WAIT_S)
                self._wake.clear()
                continue
            now = self._clock()
            if session != current:  # a new connection: its first heartbeat at once
                current, seq, next_at = session, 0, now
            if now >= next_at:
                try:
                    payload = encode_msgpack(Heartbeat(session=session, seq=seq, mono_ts=now))
                    if self._mqtt.publish(self._topic, payload, qos=topics.QOS_AT_MOST_ONCE) is not None:
                        self._counters.incr("heartbeats_sent")
                except Exception:  # never let the heartbeat thread die
                    self._counters.incr("heartbeat_errors")
                    log.exception("heartbeat failed (ignored)")
                seq += 1
                next_at += self._interval_s
                if next_at < now:  # fell behind (the process was stopped): keep the cadence, no burst
                    next_at = now + self._interval_s
            self._wake.wait(max(next_at - self._clock(), 0.0))
            self._wake.clear()
