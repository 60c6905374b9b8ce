"""A small MQTT v5 client around paho-mqtt 2.x that cannot lose its network thread.

Rules it enforces (ARCHITECTURE "Rules that keep it correct"):

* `Client(CallbackAPIVersion.VERSION2, protocol=MQTTv5)`; reason codes compared by value.
* Callbacks never do work and never raise: each body is wrapped so an exception is logged and counted; a
  message is only copied onto the daemon's inbox (bounded: overflow is counted as dropped).
* Subscriptions live in a set and are re-made in `on_connect`.
* Reconnection is ours, not paho's (paho's delay has no jitter): a supervisor thread connects, runs paho's
  network loop until the link drops, then waits `uniform(0, min(max, min * 2**attempt))` (exponential
  backoff with full jitter) and connects again. Before each connection it asks `will_factory` for the Last
  Will, so a daemon can put a fresh session number into every connection's will.

Threads (default, threaded mode): the supervisor owns connecting; paho's loop thread owns the socket while
connected; any thread may call `publish`. A lock and a `_loop_running` flag make sure nobody writes to the
socket while the supervisor connects (paho writes from the caller's thread when its own loop thread is not
running).

Inline mode (`inline_loop=True`, opt-in): no thread at all. The owner's thread drives paho through
`poll(timeout)` (paho's "external event loop": `select` on its socket, `loop_read`, `loop_write`,
`loop_misc`), so a message goes from the socket to the inbox and a publish from the owner to the socket
without a single thread hand-off. The callbacks run inside `poll` and still only enqueue. `poll` also does
what the supervisor does: when the link is down and the backoff delay has passed it connects (TCP connect
bounded by `connect_timeout_s`, with a fresh will), and it schedules the next attempt with the same
full-jitter backoff. Every paho call is made under the lock, `select` outside it, so:

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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from edgeoff.wire.settings import BrokerSettings

__all__ = [
    "Connected",
    "Counters",
    "Disconnected",
    "EventSink",
    "Message",
    "MqttClient",
    "MqttEvent",
    "Will",
    "backoff_delay",
    "wait_published",
]

log = logging.getLogger(__name__)

DISCONNECT_NORMAL = 0  # MQTT v5 reason code: the broker discards the Last Will
DISCONNECT_WITH_WILL = 4  # MQTT v5 reason code "Disconnect with Will Message": the broker publishes it
SUBACK_FAILURE = 0x80  # SUBACK reason codes from 0x80 up are refusals
LOOP_JOIN_TIMEOUT_S = 5.0  # paho's loop thread ends within one select() timeout (1 s) of the link dropping
STATE_POLL_S = 0.05  # how often the supervisor re-checks stop/pause while it waits for the link to drop


@dataclass(frozen=True)
class Will:
    """Last Will: published by the broker when the connection ends without a normal DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True)
class Connected:
    """The broker accepted a connection made with `will` (None: no will)."""

    will: Will | None


@dataclass(frozen=True)
class Disconnected:
    """The link dropped (reason code value; 0 is a normal disconnect) or a connect was refused."""

    reason_code: int


@dataclass(frozen=True)
class Message:
    """An incoming PUBLISH; `payload` is untrusted."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


MqttEvent = Connected | Disconnected | Message


class EventSink(Protocol):
    """Where the client hands over events: a `queue.Queue` of the daemon's own event type."""

    def put_nowait(self, item: MqttEvent, /) -> None: ...

    def qsize(self) -> int: ...


class Counters:
    """Thread-safe named counters: messages in/out, drops by reason, callback errors, connects."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def incr(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


def backoff_delay(attempt: int, *, min_s: float, max_s: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform(0, min(max_s, min_s * 2**attempt)) seconds."""
    ceiling = min(max_s, min_s * 2.0 ** min(attempt, 62))
    return rng.uniform(0.0, ceiling)


def _guarded(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Wrap a paho callback so that it can never raise into paho's network thread."""

    def wrap(fn: Callable[..., None]) -> Callable[..., None]:
        def guarded(self: MqttClient, *args: Any) -> None:
            try:
                fn(self, *args)
            except Exception:
                self.counters.incr("callback_errors")
                log.exception("MQTT %s callback failed (ignored, network thread kept alive)", name)

        return guarded

    return wrap


class MqttClient:
    """One MQTT v5 connection that keeps itself connected; events go to `inbox`."""

    def __init__(
        self,
        *,
        settings: BrokerSettings,
        client_id: str,
        inbox: EventSink,
        will_factory: Callable[[], Will | None] | None = None,
        max_message_bytes: int | None = None,
        rng: random.Random | None = None,
        inline_loop: bool = False,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.counters = Counters()
        self.connected = threading.Event()  # set between a successful CONNACK and the link dropping
        self._inbox = inbox
        self._inbox_limit = settings.inbox_size
        self._will_factory = will_factory
        self._max_message_bytes = max_message_bytes
        self._rng = rng if rng is not None else random.Random()
        self._subscriptions: dict[str, int] = {}  # topic filter -> QoS
        self._lock = threading.Lock()  # guards _subscriptions, _loop_running, _will and every client call
        self._loop_running = False
        self._will: Will | None = None
        self._stopping = threading.Event()
        self._want_connected = threading.Event()
        self._link_down = threading.Event()
        self._accepted = False  # this attempt got a successful CONNACK (resets the backoff)
        self._supervisor: threading.Thread | None = None
        self.inline_loop = inline_loop  # True: the owner's thread drives the network through poll()
        self._started = False
        self._attempt = 0  # inline mode: connection attempts since the last accepted one (backoff exponent)
        self._next_attempt_at: float | None = None  # inline mode: when poll() may connect (None: not now)
        self._wake_r: socket.socket | None = None  # inline mode: wake() writes here to interrupt poll()
        self._wake_w: socket.socket | None = None
        self._client = self._make_client()

    # ------------------------------------------------------------------ lifecycle

    def _make_client(self) -> paho.Client:
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv5,
            reconnect_on_failure=False,  # the supervisor reconnects, with jitter
        )
        client.suppress_exceptions = True  # second line of defence behind _guarded
        client.connect_timeout = self.settings.connect_timeout_s
        if self.settings.username is not None:
            client.username_pw_set(self.settings.username, self.settings.secret_password())
        tls = self.settings.tls
        if tls.enabled:
            client.tls_set(
                ca_certs=str(tls.ca_file) if tls.ca_file else None,
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
            )
            client.tls_insecure_set(tls.insecure)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        return client

    def start(self) -> None:
        """Start connecting in the background (returns at once); inline mode: from the next `poll`."""
        if self._supervisor is not None or self._started:
            raise RuntimeError("MqttClient.start() called twice")
        if self.inline_loop:
            self._started = True
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._next_attempt_at = time.monotonic()
            self._want_connected.set()
            return
        self._want_connected.set()
        self._supervisor = threading.Thread(
            target=self._supervise, name=f"mqtt-{self.client_id}", daemon=True
        )
        self._supervisor.start()

    def stop(self, *, with_will: bool = False, timeout: float = 5.0) -> None:
        """Disconnect (normally, or with reason code 4 so the broker publishes the will) and stop."""
        self._stopping.set()
        self._want_connected.clear()
        self._disconnect(DISCONNECT_WITH_WILL if with_will else DISCONNECT_NORMAL)
        if self.inline_loop:
            self._stop_inline(timeout)
            return
        if self._supervisor is not None:
            self._supervisor.join(timeout)

    def pause(self, *, with_will: bool = True) -> None:
        """Drop the connection like a crashed node (the broker fires the will) and stay disconnected."""
        self._want_connected.clear()
        self._disconnect(DISCONNECT_WITH_WILL if with_will else DISCONNECT_NORMAL)

    def resume(self) -> None:
        """Connect again after `pause` (with a fresh will from `will_factory`)."""
        if self.inline_loop:
            with self._lock:
                if not self._loop_running:
                    self._next_attempt_at = time.monotonic()  # as the supervisor: at once after a pause
        self._want_connected.set()
        self.wake()

    def _disconnect(self, reason: int) -> None:
        with self._lock:
            if self._loop_running:
                self._client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=reason))

    def _supervise(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            if not self._want_connected.is_set():
                self._want_connected.wait(STATE_POLL_S)
                continue
            if self._connect_once():
                self._run_until_link_down()
            if self._accepted:
                attempt = 0
            if self._stopping.is_set() or not self._want_connected.is_set():
                continue
            delay = backoff_delay(
                attempt,
                min_s=self.settings.reconnect_min_s,
                max_s=self.settings.reconnect_max_s,
                rng=self._rng,
            )
            attempt += 1
            self.counters.incr("reconnect_waits")
            log.info("MQTT %s: reconnecting in %.3f s (attempt %d)", self.client_id, delay, attempt)
            self._stopping.wait(delay)

    def _connect_once(self) -> bool:
        """One connection attempt: will, TCP connect, CONNECT sent; the CONNACK arrives in on_connect."""
        if not self._open():
            return False
        with self._lock:
            # loop_start() opens a new wake-up socket pair without closing the last one: close it first, or
            # every reconnect leaks two file descriptors (paho-mqtt 2.2).
            self._client._reset_sockets(sockpair_only=True)
            self._client.loop_start()
            self._loop_running = True
        return True

    def _open(self) -> bool:
        """Will, TCP connect and CONNECT sent (False: failed, back off); no network loop started."""
        self._accepted = False
        self._link_down.clear()
        try:
            will = self._will_factory() if self._will_factory is not None else None
        except Exception as exc:
            self.counters.incr("will_factory_errors")
            log.warning("MQTT %s: cannot prepare the will (%s); backing off", self.client_id, exc)
            return False
        self._will = will
        self._client.will_clear()
        if will is not None:
            self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        try:
            self._client.connect(
                self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s, clean_start=True
            )
        except (OSError, ValueError) as exc:
            self.counters.incr("connect_failures")
            log.info(
                "MQTT %s: cannot connect to %s:%d: %s",
                self.client_id,
                self.settings.host,
                self.settings.port,
                exc,
            )
            return False
        return True

    def _run_until_link_down(self) -> None:
        stop_deadline: float | None = None
        while not self._link_down.wait(STATE_POLL_S):
            if self._stopping.is_set():
                stop_deadline = stop_deadline or time.monotonic() + LOOP_JOIN_TIMEOUT_S
                if not self.connected.is_set() or time.monotonic() > stop_deadline:
                    break
        with self._lock:
            self._loop_running = False
        self._client.loop_stop()
        self.connected.clear()

    # ------------------------------------------------------------------ inline mode (the owner's thread)

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

    # ------------------------------------------------------------------ API for the daemon's thread

    def subscribe(self, topic: str, qos: int = 1) -> None:
        """Subscribe now (when connected) and again after every reconnect."""
        with self._lock:
            self._subscriptions[topic] = qos
            if self._loop_running and self.connected.is_set():
                self._client.subscribe(topic, qos=qos)

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
    ) -> paho.MQTTMessageInfo | None:
        """Publish; returns paho's message info (`.mid`, `.wait_for_publish()`), or None when offline."""
        with self._lock:
            if not (self._loop_running and self.connected.is_set()):
                self.counters.incr("out_dropped.not_connected")
                return None
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
            unwritten = self.inline_loop and self._client.want_write()
        if unwritten:  # the socket did not take it all (or another thread published): poll() finishes it
            self.wake()
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.counters.incr("out_dropped.publish_error")
            return None
        self.counters.incr("out")
        return info

    # ------------------------------------------------------------------ paho callbacks (network thread)

    @_guarded("on_connect")
    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        code = int(getattr(reason_code, "value", reason_code))
        if code != 0:
            self.counters.incr("connect_refused")
            log.warning("MQTT %s: broker refused the connection: %s", self.client_id, reason_code)
            self._inbox.put_nowait(Disconnected(reason_code=code))
            return
        self._accepted = True
        self.counters.incr("connects")
        _disable_nagle(client)
        self.connected.set()  # before the snapshot: a concurrent subscribe() is made twice, never zero times
        for topic, qos in tuple(self._subscriptions.items()):
            client.subscribe(topic, qos=qos)
        self._inbox.put_nowait(Connected(will=self._will))

    @_guarded("on_disconnect")
    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        self.connected.clear()
        self._link_down.set()
        self.counters.incr("disconnects")
        self._inbox.put_nowait(Disconnected(reason_code=int(getattr(reason_code, "value", reason_code))))

    @_guarded("on_message")
    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self.counters.incr("in")
        payload = bytes(message.payload)
        if self._max_message_bytes is not None and len(payload) > self._max_message_bytes:
            self.counters.incr("in_dropped.oversized")
            log.warning(
                "MQTT %s: dropped a message on %.80s: oversized (%d bytes)",
                self.client_id,
                message.topic,
                len(payload),
            )
            return
        if self._inbox.qsize() >= self._inbox_limit:
            self.counters.incr("in_dropped.inbox_full")
            log.warning("MQTT %s: dropped a message on %.80s: inbox full", self.client_id, message.topic)
            return
        self._inbox.put_nowait(
            Message(topic=message.topic, payload=payload, qos=int(message.qos), retain=bool(message.retain))
        )

    @_guarded("on_publish")
    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        self.counters.incr("out_acked")

    @_guarded("on_subscribe")
    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any
    ) -> None:
        if any(int(getattr(rc, "value", rc)) >= SUBACK_FAILURE for rc in reason_codes):
            self.counters.incr("subscribe_refused")
            log.error("MQTT %s: broker refused a subscription: %s", self.client_id, reason_codes)


def _disable_nagle(client: paho.Client) -> None:
    """Send small packets at once: with Nagle's algorithm and delayed ACKs every MQTT hop waits ~40 ms
    (paho never sets TCP_NODELAY); measured by benchmarks/dispatch.py: round trip p50 88 ms -> 1.4 ms."""
    sock = client.socket()
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def wait_published(info: paho.MQTTMessageInfo | None, timeout: float) -> bool:
    """Wait until a QoS>0 publish is acknowledged (False on timeout or when it was never sent)."""
    if info is None:
        return False
    deadline = time.monotonic() + timeout
    while not info.is_published():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            info.wait_for_publish(min(remaining, 0.1))
        except (ValueError, RuntimeError):
            return False
    return True
