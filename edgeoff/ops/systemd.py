"""systemd's notify protocol without a dependency: READY=1, WATCHDOG=1, STOPPING=1.

A unit with `Type=notify` passes `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace) and, with
`WatchdogSec=`, `WATCHDOG_USEC` (and `WATCHDOG_PID`). The daemon sends one datagram per state change.
Without `NOTIFY_SOCKET` every call is a no-op, so the same code runs under compose, Kubernetes and tests.

The environment is read once, by :meth:`Notifier.from_environ` at the entry point: these variables are
systemd's protocol with the process, not settings of edgeoff.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import deque
from collections.abc import Mapping

__all__ = ["Notifier"]

log = logging.getLogger(__name__)

USEC_PER_S = 1_000_000
WATCHDOG_FRACTION = 0.5  # ping at half the timeout, as sd_watchdog_enabled(3) recommends
KEEP_SENT = 16  # recent messages kept for inspection (bounded: the watchdog pings forever)


class Notifier:
    """Sends sd_notify messages to `address` (None: disabled)."""

    def __init__(self, address: str | None, *, watchdog_s: float | None = None) -> None:
        self.address = address
        self.watchdog_s = watchdog_s  # the unit's WatchdogSec; None: no watchdog
        self.sent: deque[str] = deque(maxlen=KEEP_SENT)  # the latest messages sent, oldest first
        self._failing = False  # log the first failure of a streak only (the watchdog retries every period)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, pid: int | None = None) -> Notifier:
        """The notifier systemd configured for this process (disabled when NOTIFY_SOCKET is unset)."""
        address = environ.get("NOTIFY_SOCKET") or None
        watchdog_s: float | None = None
        usec = environ.get("WATCHDOG_USEC", "")
        watchdog_pid = environ.get("WATCHDOG_PID", "")
        own_pid = os.getpid() if pid is None else pid
        if usec.isdigit() and int(usec) > 0 and (not watchdog_pid or watchdog_pid == str(own_pid)):
            watchdog_s = int(usec) / USEC_PER_S
        return cls(address, watchdog_s=watchdog_s)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send WATCHDOG=1 (half the unit's timeout), or None."""
        if self.address is None or self.watchdog_s is None:
            return None
        return self.watchdog_s * WATCHDOG_FRACTION

    def notify(self, state: str) -> bool:
        """Send one state string (`READY=1`, ...); False when disabled or not delivered.

        The send never blocks: a notify socket nobody drains (a Unix datagram queue holds about ten
        messages) must not stall the serve loop and its heartbeats; the message is dropped and logged.
        """
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(state.encode("utf-8"), target)
        except OSError as exc:
            if not self._failing:
                log.warning("sd_notify %s to %s failed: %s", state.split("\n")[0], self.address, exc)
            self._failing = True
            return False
        self._failing = False
        self.sent.append(state)
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")
