"""The daemon's own watchdog: a serve loop that stopped ticking ends its process, so a supervisor restarts it.

systemd's `WatchdogSec` and Kubernetes' liveness probe restart a hung daemon from outside; Docker does not
act on a failing health check, so under compose (or a plain `docker run --restart`) a hung loop would stay
hung forever. :class:`LoopWatchdog` runs on a thread of its own: when the loop has not called
:meth:`LoopWatchdog.beat` for `limit_s` seconds, it logs one line and exits the process with
:data:`EXIT_HUNG` (`os._exit`: a hung loop may hold locks that a clean shutdown would wait on), and the
restart policy applies. A process frozen as a whole (SIGSTOP, a cgroup freeze) stops this thread too: only
something outside the process can end it (compose's health check does, see compose/README.md).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

__all__ = ["EXIT_HUNG", "LoopWatchdog"]

log = logging.getLogger("edgeoff.ops")

EXIT_HUNG = 70  # EX_SOFTWARE: not EXIT_CONFIG (2), which systemd units keep from restarting


def _exit_hung() -> None:
    logging.shutdown()  # flush the one line we logged
    os._exit(EXIT_HUNG)


class LoopWatchdog:
    """Ends the process when the serve loop has not beaten for `limit_s` seconds (0: off)."""

    def __init__(
        self,
        name: str,
        limit_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_hang: Callable[[], None] = _exit_hung,
    ) -> None:
        self.name = name
        self.limit_s = limit_s
        self.clock = clock
        self._on_hang = on_hang
        self._last_beat = clock()
        self._armed = limit_s > 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """The loop made a pass (called from `Operations.tick`)."""
        self._last_beat = self.clock()

    def disarm(self) -> None:
        """The daemon is shutting down: its loop stops ticking on purpose."""
        self._armed = False

    def check(self) -> bool:
        """True (after calling `on_hang` once) when armed and the last beat is older than `limit_s`."""
        if not self._armed:
            return False
        silent_s = self.clock() - self._last_beat
        if silent_s < self.limit_s:
            return False
        self._armed = False
        log.critical(
            "%s: serve loop silent for %.0f s (loop_watchdog_s=%g): exiting %d so that it is restarted",
            self.name,
            silent_s,
            self.limit_s,
            EXIT_HUNG,
        )
        self._on_hang()
        return True

    def start(self) -> None:
        """Check on a daemon thread, a few times per limit, from now on (the first beat counts from now)."""
        if not self._armed or self._thread is not None:
            return
        self._last_beat = self.clock()
        period = min(1.0, self.limit_s / 4)
        self._thread = threading.Thread(target=self._run, args=(period,), name="loop-watchdog", daemon=True)
        self._thread.start()

    def _run(self, period: float) -> None:
        while not self._stop.wait(period):
            if self.check():
                return

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2 * min(1.0, self.limit_s / 4) + 1)
            self._thread = None
