"""The site's injected outages: crash and recover on the failure chain's schedule (failure_injection)."""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

from site_daemon.failure_injection import Period
from site_daemon.heartbeats import HeartbeatSender
from site_daemon.state import SiteState

__all__ = ["KEEPALIVE_GRACE", "InjectedFailures"]

log = logging.getLogger("edgeoff.site")

KEEPALIVE_GRACE = 1.5  # Mosquitto drops a client after 1.5 x its keepalive without a packet


class InjectedFailures(SiteState):
    """Failure injection of `SiteDaemon` (a mixin over `SiteState`)."""

    failures: Iterator[Period] | None
    _next_phase_at: float | None
    _link_expires_at: float | None
    _generation: int
    _abort: threading.Event
    _heartbeats: HeartbeatSender
    _queue: deque[Any]

    def _next_phase(self) -> None:
        assert self.failures is not None
        assert self._next_phase_at is not None
        phase = next(self.failures)
        self._next_phase_at += phase.duration_s
        if phase.state == "down":
            self._crash(phase.duration_s)
        else:
            self._recover()

    def _crash(self, duration_s: float) -> None:
        """Behave like a failed node: silence, tasks abandoned; the will fires when the link is given up
        (at once for `crash`, after 1.5 x keepalive for `hang`)."""
        self.counters.incr("failures_injected")
        log.warning(
            "site %s: injected failure for %.3f s (session %s)", self.site.id, duration_s, self._session
        )
        self._record_injection(duration_s)
        self._up = False
        self._generation += 1
        self._abort.set()
        self._abort = threading.Event()
        self._session = None
        self._heartbeats.beat_for(None)
        self._unsent.clear()
        self.counters.incr("tasks_abandoned", len(self._queue))
        self._queue.clear()
        if self.settings.failure_mode == "crash":
            self.mqtt.pause(with_will=True)
        else:
            self._link_expires_at = self.clock() + KEEPALIVE_GRACE * self.settings.broker.keepalive_s

    def _record_injection(self, duration_s: float) -> None:
        """Append the failure to the injection log (if set); a write error is logged and counted."""
        path = self.settings.injection_log
        if path is None:
            return
        event = {
            "site": self.site.id,
            "ts": self.wall_clock(),
            "down_s": duration_s,
            "session": self._session,
        }
        try:
            with path.open("a", encoding="utf-8") as log_file:
                log_file.write(json.dumps(event) + "\n")
        except OSError as exc:
            self.counters.incr("injection_log_errors")
            log.warning("site %s: cannot record the injected failure in %s: %s", self.site.id, path, exc)

    def _recover(self) -> None:
        log.warning("site %s: recovering from the injected failure", self.site.id)
        self._up = True
        if self._link_expires_at is not None:
            # Back before the broker noticed: a rebooted node's old link is simply gone (no will: the new
            # session's online status follows at once), then it connects again with a new session.
            self._link_expires_at = None
            self.mqtt.pause(with_will=False)
        self.mqtt.resume()
