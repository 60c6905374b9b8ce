"""paho's callbacks of :class:`~edgeoff.wire.mqtt.MqttClient` (run on the network thread, or inside
`poll` in inline mode): each is guarded so it can never raise into paho, and each only counts and enqueues."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho

from edgeoff.wire.mqtt.events import Connected, Counters, Disconnected, EventSink, FastPath, Message, Will

__all__ = ["Callbacks"]

log = logging.getLogger(__name__)

SUBACK_FAILURE = 0x80  # SUBACK reason codes from 0x80 up are refusals
PUBACK_FAILURE = 0x80  # PUBACK reason codes from 0x80 up: the broker refused the publish (e.g. ACL)
MAX_TRACKED_TOPICS = 10_000  # topics of unacknowledged publishes (to name a refusal); cleared past this


def _guarded(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Wrap a paho callback so that it can never raise into paho's network thread."""

    def wrap(fn: Callable[..., None]) -> Callable[..., None]:
        def guarded(self: Callbacks, *args: Any) -> None:
            try:
                fn(self, *args)
            except Exception:
                self.counters.incr("callback_errors")
                log.exception("MQTT %s callback failed (ignored, network thread kept alive)", name)

        return guarded

    return wrap


class Callbacks:
    """The callback half of `MqttClient` (a mixin: the state is the client's, set in its `__init__`)."""

    client_id: str
    counters: Counters
    connected: threading.Event
    _inbox: EventSink
    _inbox_limit: int
    _inbox_bytes: int
    _max_message_bytes: int | None
    _fast_path: FastPath | None
    _subscriptions: dict[str, int]
    _accepted: bool
    _will: Will | None
    _link_down: threading.Event
    _published_topics: dict[int, str]
    _denied_topics: set[str]

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
        arrived = time.monotonic()
        payload = bytes(message.payload)
        fast = self._fast_path
        if fast is not None and fast(message.topic, payload, arrived):
            return  # taken by the fast path, which counts it
        self.counters.incr("in")
        if self._max_message_bytes is not None and len(payload) > self._max_message_bytes:
            self.counters.incr("in_dropped.oversized")
            log.warning(
                "MQTT %s: dropped a message on %.80s: oversized (%d bytes)",
                self.client_id,
                message.topic,
                len(payload),
            )
            return
        queued_bytes = int(getattr(self._inbox, "nbytes", 0))
        if self._inbox.qsize() >= self._inbox_limit or queued_bytes + len(payload) > self._inbox_bytes:
            self.counters.incr("in_dropped.inbox_full")
            if self.counters.get("in_dropped.inbox_full") % 1000 == 1:  # the first of every thousand
                log.warning(
                    "MQTT %s: inbox full: dropping messages (e.g. on %.80s)", self.client_id, message.topic
                )
            return
        self._inbox.put_nowait(
            Message(
                topic=message.topic,
                payload=payload,
                qos=int(message.qos),
                retain=bool(message.retain),
                received_at=arrived,
            )
        )

    @_guarded("on_publish")
    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        topic = self._published_topics.pop(mid, None)
        code = int(getattr(reason_code, "value", reason_code) or 0)
        if code < PUBACK_FAILURE:
            self.counters.incr("out_acked")
            return
        self.counters.incr("out_denied")  # an ACL refusal (0x87) or another error: never "acked"
        name = topic if topic is not None else f"message id {mid}"
        if name not in self._denied_topics and len(self._denied_topics) < MAX_TRACKED_TOPICS:
            self._denied_topics.add(name)
            log.error("MQTT %s: the broker refused a publish on %.80s: %s", self.client_id, name, reason_code)

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
