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

Inline mode (`inline_loop=True`, opt-in): no thread at all; the owner's thread drives paho through
`poll(timeout)` (:mod:`edgeoff.wire.mqtt.inline`).
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edgeoff.wire.mqtt.callbacks import MAX_TRACKED_TOPICS, Callbacks
from edgeoff.wire.mqtt.events import (
    Counters,
    EventSink,
    FastPath,
    Will,
    backoff_delay,
)
from edgeoff.wire.mqtt.inline import STATE_POLL_S, InlineLoop
from edgeoff.wire.settings import BrokerSettings

__all__ = ["MqttClient"]

log = logging.getLogger(__name__)

DISCONNECT_NORMAL = 0  # MQTT v5 reason code: the broker discards the Last Will
DISCONNECT_WITH_WILL = 4  # MQTT v5 reason code "Disconnect with Will Message": the broker publishes it
LOOP_JOIN_TIMEOUT_S = 5.0  # paho's loop thread ends within one select() timeout (1 s) of the link dropping


class MqttClient(Callbacks, InlineLoop):
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
        fast_path: FastPath | None = None,
        session_expiry_s: int = 0,
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
        # fast_path: the network thread offers every message to it first (see FastPath)
        self._fast_path = fast_path
        # > 0: a persistent session (clean_start False, kept this long by the broker while disconnected), so
        # the QoS 1 messages sent to us while we reconnect wait for us instead of being dropped
        self._session_expiry_s = session_expiry_s
        self._inbox_bytes = settings.inbox_bytes
        self._published_topics: dict[int, str] = {}  # mid -> topic of unacknowledged QoS > 0 publishes
        self._denied_topics: set[str] = set()  # topics whose refusal was logged already
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
        client.max_inflight_messages_set(self.settings.max_inflight)
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
                self.settings.host,
                self.settings.port,
                keepalive=self.settings.keepalive_s,
                clean_start=self._session_expiry_s <= 0,
                properties=self._connect_properties(),
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

    def _connect_properties(self) -> Properties | None:
        if self._session_expiry_s <= 0:
            return None
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self._session_expiry_s
        return properties

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
            if qos > 0 and info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                if len(self._published_topics) >= MAX_TRACKED_TOPICS:
                    self._published_topics.clear()  # acknowledgements lost with a connection
                self._published_topics[info.mid] = topic
            unwritten = self.inline_loop and self._client.want_write()
        if unwritten:  # the socket did not take it all (or another thread published): poll() finishes it
            self.wake()
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.counters.incr("out_dropped.publish_error")
            return None
        self.counters.incr("out")
        return info
