"""Inline mode of :class:`~edgeoff.wire.mqtt.MqttClient`: the owner's thread drives the network.

No thread at all. The owner's thread drives paho through `poll(timeout)` (paho's "external event loop":
`select` on its socket, `loop_read`, `loop_write`, `loop_misc`), so a message goes from the socket to the
inbox and a publish from the owner to the socket without a single thread hand-off. The callbacks run inside
`poll` and still only enqueue. `poll` also does what the threaded mode's supervisor does: when the link is
down and the backoff delay has passed it connects (TCP connect bounded by `connect_timeout_s`, with a fresh
will), and it schedules the next attempt with the same full-jitter backoff. Every paho call is made under
the lock, `select` outside it, so:

* the owner thread calls `poll`, `publish`, `subscribe`, `pause`, `resume`, `stop` and `wait_published`;
* any other thread may call `publish`, `subscribe`, `pause`, `resume` and `wake` (paho then writes from that
  thread under the lock, as it does in threaded mode while the supervisor connects; a write the socket
  cannot take at once is finished by the owner's next `poll`, which `wake` interrupts). Those threads must
  not call `poll` or `wait_published`;
* a thread that puts its own events on the inbox calls `wake()` after it, so that `poll` returns at once.
"""

from __future__ import annotations

import contextlib
import logging
import random
import select
import socket
import threading
import time
from typing import TYPE_CHECKING

import paho.mqtt.client as paho

from edgeoff.wire.mqtt.events import Counters, backoff_delay, wait_published
from edgeoff.wire.settings import BrokerSettings

__all__ = ["InlineLoop"]

log = logging.getLogger(__name__)

STATE_POLL_S = 0.05  # how often a waiting loop re-checks stop/pause and the link


class InlineLoop:
    """The inline-mode half of `MqttClient` (a mixin: the state is the client's, set in its `__init__`)."""

    settings: BrokerSettings
    client_id: str
    counters: Counters
    connected: threading.Event
    inline_loop: bool
    _client: paho.Client
    _lock: threading.Lock
    _loop_running: bool
    _rng: random.Random
    _started: bool
    _stopping: threading.Event
    _want_connected: threading.Event
    _link_down: threading.Event
    _accepted: bool
    _attempt: int
    _next_attempt_at: float | None
    _wake_r: socket.socket | None
    _wake_w: socket.socket | None

    if TYPE_CHECKING:  # provided by another part of the class; declared for the type checker

        def _open(self) -> bool: ...  # MqttClient's: will, TCP connect and CONNECT sent

    def poll(self, timeout: float) -> None:
        """Inline mode: connect when due, wait up to `timeout` s for network traffic or `wake`, handle it.

        Callbacks run here and only enqueue: drain the inbox without blocking afterwards. Returns early when
        something arrived, was woken, or a reconnect attempt is due. Never raises for network trouble.
        """
        if not self.inline_loop:
            raise RuntimeError("MqttClient.poll() needs inline_loop=True")
        wake_r = self._wake_r
        if not self._started or self._stopping.is_set() or wake_r is None:
            return
        if self._link_down.is_set() and self._loop_running:  # dropped since the last poll (e.g. pause)
            self._link_lost()
        self._reconnect_if_due()
        timeout = max(timeout, 0.0)
        sock = self._client.socket() if self._loop_running else None
        if not isinstance(sock, socket.socket):
            sock = None
        if sock is None and self._next_attempt_at is not None and self._want_connected.is_set():
            timeout = min(timeout, max(self._next_attempt_at - time.monotonic(), 0.0))
        rlist: list[socket.socket] = [wake_r]
        wlist: list[socket.socket] = []
        pending = 0
        if sock is not None:
            rlist.append(sock)
            with self._lock:
                if self._client.want_write():
                    wlist.append(sock)
            pending_fn = getattr(sock, "pending", None)  # TLS: bytes already decrypted, select cannot see
            if pending_fn is not None:
                pending = int(pending_fn())
            if pending:
                timeout = 0.0
        try:
            readable, _, _ = select.select(rlist, wlist, [], timeout)
        except (OSError, ValueError):  # the socket was closed under us (pause or stop from another thread)
            readable = []
        if wake_r in readable:
            with contextlib.suppress(OSError):
                wake_r.recv(4096)
        if sock is not None:
            self._run_io(read=pending > 0 or sock in readable)
        if self._link_down.is_set() and self._loop_running:
            self._link_lost()

    def wake(self) -> None:
        """Interrupt a `poll` (inline mode; any thread; a no-op in threaded mode or before `start`)."""
        wake_w = self._wake_w
        if wake_w is None:
            return
        with contextlib.suppress(OSError):  # full (a wake-up is pending anyway) or closed (stopped)
            wake_w.send(b"\0")

    def wait_published(self, info: paho.MQTTMessageInfo | None, timeout: float) -> bool:
        """`wait_published` that also drives the network in inline mode (from the owner's thread)."""
        if not self.inline_loop:
            return wait_published(info, timeout)
        if info is None:
            return False
        deadline = time.monotonic() + timeout
        while not info.is_published():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._loop_running:
                return False
            self.poll(min(remaining, STATE_POLL_S))
        return True

    def _run_io(self, *, read: bool) -> None:
        """paho's read, write and keepalive steps under the lock (inline mode)."""
        try:
            with self._lock:
                if not self._loop_running:
                    return
                if read:
                    self._client.loop_read()
                if self._client.want_write():  # e.g. the SUBSCRIBEs queued by on_connect, PUBACKs
                    self._client.loop_write()
                self._client.loop_misc()  # keepalive: PINGREQ when due, drop a link whose PINGRESP is late
        except Exception:
            self.counters.incr("poll_errors")
            log.exception("MQTT %s: network step failed (ignored)", self.client_id)
        if self._client.socket() is None:  # paho closed the socket (its on_disconnect has fired)
            self._link_down.set()

    def _reconnect_if_due(self) -> None:
        """Inline mode: one connection attempt when the link is down, wanted, and the backoff has passed."""
        if self._loop_running or not self._want_connected.is_set():
            return
        if self._next_attempt_at is None or time.monotonic() < self._next_attempt_at:
            return
        self._next_attempt_at = None
        if self._open():
            with self._lock:
                self._loop_running = True
            return
        self._schedule_reconnect()

    def _link_lost(self) -> None:
        """Inline mode: the link dropped (or was paused): forget it and schedule the next attempt."""
        with self._lock:
            self._loop_running = False
        self.connected.clear()
        if self._accepted:
            self._attempt = 0
        if self._stopping.is_set() or not self._want_connected.is_set():
            return  # paused or stopping: resume() asks for a connection at once
        self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        if self._accepted:
            self._attempt = 0
        delay = backoff_delay(
            self._attempt,
            min_s=self.settings.reconnect_min_s,
            max_s=self.settings.reconnect_max_s,
            rng=self._rng,
        )
        self._attempt += 1
        self.counters.incr("reconnect_waits")
        log.info("MQTT %s: reconnecting in %.3f s (attempt %d)", self.client_id, delay, self._attempt)
        self._next_attempt_at = time.monotonic() + delay

    def _stop_inline(self, timeout: float) -> None:
        """After the DISCONNECT was queued: let it reach the socket, then close everything."""
        deadline = time.monotonic() + timeout
        while self._loop_running and not self._link_down.is_set() and time.monotonic() < deadline:
            sock = self._client.socket()
            if not isinstance(sock, socket.socket):
                break
            try:
                select.select([], [sock], [], min(STATE_POLL_S, max(deadline - time.monotonic(), 0.0)))
            except (OSError, ValueError):
                break
            self._run_io(read=False)
        with self._lock:
            self._loop_running = False
            self._client._reset_sockets()  # the socket, if the DISCONNECT did not close it
        self.connected.clear()
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._wake_r = self._wake_w = None
