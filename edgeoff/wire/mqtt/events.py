"""The MQTT adapter's events, counters and backoff: what a daemon receives and what it counts.

Events go from paho's callbacks to a daemon's inbox (`EventSink`, a `queue.Queue`): `Connected`,
`Disconnected` and `Message` (its payload untrusted). `Counters` are thread-safe named counters every
daemon exports as metrics; `backoff_delay` is the reconnect delay.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import paho.mqtt.client as paho

__all__ = [
    "Connected",
    "Counters",
    "Disconnected",
    "EventSink",
    "FastPath",
    "Inbox",
    "Message",
    "MqttEvent",
    "Will",
    "backoff_delay",
    "wait_published",
]


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
    """An incoming PUBLISH; `payload` is untrusted; `received_at`: monotonic clock (s) when it arrived,
    stamped on the network thread, so a daemon that was busy still sees when a heartbeat came."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_at: float = 0.0


MqttEvent = Connected | Disconnected | Message


class EventSink(Protocol):
    """Where the client hands over events: a `queue.Queue` of the daemon's own event type."""

    def put_nowait(self, item: MqttEvent, /) -> None: ...

    def qsize(self) -> int: ...


T = TypeVar("T")

# A handler the network thread calls for every message before the inbox: (topic, payload, arrival) -> True
# when it took the message. It must be as cheap as a dict assignment and never block (the heartbeat path).
FastPath = Callable[[str, bytes, float], bool]


class Inbox(queue.Queue[T]):
    """A `queue.Queue` that also counts the payload bytes of the messages waiting in it (`nbytes`), so the
    MQTT client can bound the inbox in bytes as well as in messages."""

    def __init__(self) -> None:
        super().__init__()
        self.nbytes = 0

    def _put(self, item: Any) -> None:  # called under the queue's mutex
        if isinstance(item, Message):
            self.nbytes += len(item.payload)
        super()._put(item)

    def _get(self) -> Any:
        item = super()._get()
        if isinstance(item, Message):
            self.nbytes -= len(item.payload)
        return item


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
