"""MqttClient in inline mode (`inline_loop=True`): the owner's thread drives the network through `poll`.

Against a real Mosquitto: connect, subscribe, receive, publish (also from another thread), wake-ups,
broker restart (reconnect with backoff, subscriptions re-made), Last Will on pause, fresh will on resume,
normal stop without the will, callbacks that raise do not stop the loop.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from edgeoff.wire.mqtt import Connected, Disconnected, Message, MqttClient, MqttEvent, Will
from edgeoff.wire.settings import BrokerSettings

from .conftest import Observer, Server

TIMEOUT_S = 10.0


class Inline:
    """An inline MqttClient and the events its polls produced."""

    def __init__(self, client: MqttClient, inbox: queue.Queue[MqttEvent]) -> None:
        self.client = client
        self.inbox = inbox
        self.events: list[MqttEvent] = []

    def pump(self, condition: Callable[[], bool], what: str, timeout: float = TIMEOUT_S) -> None:
        """Poll (and collect events) until `condition()` holds; fail after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            while True:
                try:
                    self.events.append(self.inbox.get_nowait())
                except queue.Empty:
                    break
            if condition():
                return
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
            self.client.poll(0.05)

    def of(self, kind: type[MqttEvent]) -> list[MqttEvent]:
        return [e for e in self.events if isinstance(e, kind)]

    def messages(self, topic: str) -> list[Message]:
        return [e for e in self.events if isinstance(e, Message) and e.topic == topic]

    def connect(self) -> None:
        self.pump(lambda: bool(self.of(Connected)), "the inline client to connect")


class RaisingOnce:
    """An inbox whose first put of a message raises (a broken sink): the callback guard must absorb it."""

    def __init__(self) -> None:
        self.queue: queue.Queue[MqttEvent] = queue.Queue()
        self.raised = False

    def put_nowait(self, item: MqttEvent, /) -> None:
        if isinstance(item, Message) and not self.raised:
            self.raised = True
            raise RuntimeError("sink failure")
        self.queue.put_nowait(item)

    def qsize(self) -> int:
        return self.queue.qsize()


def _settings(broker: Server, **overrides: float) -> BrokerSettings:
    return BrokerSettings(host=broker.host, port=broker.port, **overrides)


@pytest.fixture
def inline(mosquitto: Server) -> Iterator[Callable[..., Inline]]:
    made: list[MqttClient] = []

    def make(
        client_id: str = "inline-test",
        *,
        will_factory: Callable[[], Will | None] | None = None,
        settings: BrokerSettings | None = None,
    ) -> Inline:
        inbox: queue.Queue[MqttEvent] = queue.Queue()
        client = MqttClient(
            settings=settings or _settings(mosquitto),
            client_id=client_id,
            inbox=inbox,
            will_factory=will_factory,
            inline_loop=True,
        )
        made.append(client)
        return Inline(client, inbox)

    yield make
    for client in made:
        client.stop()


def test_poll_needs_inline_mode(mosquitto: Server) -> None:
    client = MqttClient(settings=_settings(mosquitto), client_id="threaded", inbox=queue.Queue())
    with pytest.raises(RuntimeError, match="inline_loop"):
        client.poll(0.0)


def test_no_thread_is_started_and_nothing_happens_without_poll(inline: Callable[..., Inline]) -> None:
    attempts: list[float] = []

    def will() -> Will | None:  # asked before every connection attempt: the witness of any attempt
        attempts.append(time.monotonic())
        return None

    before = {t.ident for t in threading.enumerate()}
    node = inline(will_factory=will)
    node.client.start()
    # No waiting needed: a thread that start() started would still be alive now (a supervisor lives until
    # stop()), and there is none; so only this thread, in poll(), can attempt a connection, and it has not.
    assert {t.ident for t in threading.enumerate()} == before
    assert attempts == []  # nobody connects behind the owner's back
    assert not node.client.connected.is_set()
    node.connect()
    assert attempts  # the witness works: poll() made the attempt
    assert {t.ident for t in threading.enumerate()} == before
    assert node.client.connected.is_set()


def test_subscribe_receive_and_publish(
    inline: Callable[..., Inline], observer: Callable[..., Observer]
) -> None:
    watch = observer("inline/out")
    node = inline()
    node.client.subscribe("inline/in", qos=1)  # before start: made in on_connect
    node.client.start()
    node.connect()
    node.client.subscribe("inline/late", qos=1)  # while connected: made at once
    node.client.poll(0.2)  # the SUBACKs

    watch.publish("inline/in", b"one")
    watch.publish("inline/late", b"two")
    node.pump(lambda: len(node.of(Message)) == 2, "both messages")
    assert [m.payload for m in node.messages("inline/in")] == [b"one"]
    assert [m.payload for m in node.messages("inline/late")] == [b"two"]

    for n in range(50):  # QoS 1 from the owner's thread: written at once, acknowledged through poll
        assert node.client.publish("inline/out", str(n).encode(), qos=1) is not None
    info = node.client.publish("inline/out", b"last", qos=1)
    assert node.client.wait_published(info, TIMEOUT_S)
    watch.wait(lambda o: len(o.on("inline/out")) == 51, TIMEOUT_S, "the observer to get all 51")
    assert [m.payload for m in watch.on("inline/out")][:3] == [b"0", b"1", b"2"]
    node.pump(lambda: node.client.counters.get("out_acked") == 51, "51 PUBACKs")


def test_publish_from_another_thread_and_wake(
    mosquitto: Server, inline: Callable[..., Inline], observer: Callable[..., Observer]
) -> None:
    watch = observer("inline/worker")
    # a keepalive far longer than the long poll below: no PINGREQ is due and the broker stays silent
    node = inline(settings=_settings(mosquitto, keepalive_s=120))
    node.client.start()
    node.connect()

    def worker() -> None:
        for n in range(200):
            node.client.publish("inline/worker", str(n).encode(), qos=1)
        node.inbox.put_nowait(Disconnected(reason_code=-1))  # a marker event of the worker's own
        node.client.wake()

    thread = threading.Thread(target=worker)
    thread.start()
    node.pump(lambda: any(isinstance(e, Disconnected) and e.reason_code == -1 for e in node.events), "marker")
    thread.join()
    # paho sends at most the broker's receive-maximum unacknowledged: the rest goes out as PUBACKs come in,
    # which poll() reads; so the owner keeps polling
    node.pump(lambda: len(watch.on("inline/worker")) == 200, "200 messages from the worker")
    node.pump(lambda: node.client.counters.get("out_acked") == 200, "200 PUBACKs")

    # wake() cuts a long poll short: without it, poll() would return after its full timeout (nothing else
    # arrives: every PUBACK is in, nobody publishes to it, no keepalive is due), so any return before it is
    # the wake-up, however loaded the machine
    long_poll_s = 30.0
    waker = threading.Timer(0.1, node.client.wake)
    waker.start()
    start = time.monotonic()
    node.client.poll(long_poll_s)
    assert time.monotonic() - start < long_poll_s
    waker.join()


def test_broker_restart_reconnects_with_backoff_and_resubscribes(
    mosquitto: Server, inline: Callable[..., Inline], observer: Callable[..., Observer]
) -> None:
    node = inline(settings=_settings(mosquitto, reconnect_min_s=0.05, reconnect_max_s=0.5))
    node.client.subscribe("inline/sub", qos=1)
    node.client.start()
    node.connect()

    mosquitto.proc.kill()  # the broker dies: the link drops, connection attempts are refused
    mosquitto.proc.wait()
    node.pump(lambda: bool(node.of(Disconnected)), "the link to drop")
    assert not node.client.connected.is_set()
    node.pump(lambda: node.client.counters.get("connect_failures") >= 2, "refused attempts")
    assert node.client.counters.get("reconnect_waits") >= 2
    assert node.client.publish("inline/sub", b"lost") is None  # offline: dropped, counted
    assert node.client.counters.get("out_dropped.not_connected") == 1

    mosquitto.restart()  # same port, empty broker (no persistence): subscriptions must be made again
    node.pump(lambda: len(node.of(Connected)) == 2, "the reconnection")
    assert node.client.counters.get("connects") == 2
    node.client.poll(0.2)  # the SUBACK
    watch = observer()
    watch.publish("inline/sub", b"after restart")
    node.pump(lambda: bool(node.messages("inline/sub")), "a message on the re-made subscription")


def test_callbacks_that_raise_do_not_stop_the_loop(
    mosquitto: Server, observer: Callable[..., Observer]
) -> None:
    sink = RaisingOnce()
    client = MqttClient(
        settings=_settings(mosquitto), client_id="inline-raising", inbox=sink, inline_loop=True
    )
    node = Inline(client, sink.queue)
    try:
        client.subscribe("inline/raise", qos=1)
        client.start()
        node.connect()
        client.poll(0.2)  # the SUBACK
        watch = observer()
        watch.publish("inline/raise", b"first")  # its callback raises
        watch.publish("inline/raise", b"second")
        node.pump(lambda: bool(node.messages("inline/raise")), "the second message")
        assert [m.payload for m in node.messages("inline/raise")] == [b"second"]
        assert client.counters.get("callback_errors") == 1
        assert client.connected.is_set()
    finally:
        client.stop()


def test_pause_fires_the_will_and_resume_makes_a_fresh_one(
    inline: Callable[..., Inline], observer: Callable[..., Observer]
) -> None:
    watch = observer("inline/status")
    sessions = iter(range(1, 100))

    def will() -> Will:
        return Will(topic="inline/status", payload=f"gone {next(sessions)}".encode(), qos=1, retain=False)

    node = inline(will_factory=will)
    node.client.start()
    node.connect()
    node.client.pause(with_will=True)
    node.pump(lambda: bool(node.of(Disconnected)), "the pause to drop the link")
    watch.wait(lambda o: bool(o.on("inline/status")), TIMEOUT_S, "the will of session 1")
    for _ in range(6):  # nothing reconnects while paused
        node.client.poll(0.05)
    node.pump(lambda: True, "the events of those polls")
    assert len(node.of(Connected)) == 1

    node.client.resume()
    node.pump(lambda: len(node.of(Connected)) == 2, "the reconnection after resume")
    second = node.of(Connected)[1]
    assert isinstance(second, Connected)
    assert second.will is not None
    assert second.will.payload == b"gone 2"

    node.client.stop()  # normal DISCONNECT: the broker discards the will
    assert not node.client.connected.is_set()

    # Barriers instead of a sleep: stop() returns once the DISCONNECT and the close are in the broker's
    # socket, before the first barrier is sent, so the broker handles them in the round of its event loop
    # that handles that barrier, or earlier; the second barrier is handled in a later round. A will
    # published on that close would be queued to the observer before the second barrier (one connection,
    # in order).
    def received(payload: bytes) -> Callable[[Observer], bool]:
        return lambda o: payload in [m.payload for m in o.on("inline/status")]

    for barrier in (b"barrier 1", b"barrier 2"):
        watch.publish("inline/status", barrier)
        watch.wait(received(barrier), TIMEOUT_S, f"the {barrier!r} after stop")
    assert [m.payload for m in watch.on("inline/status")] == [b"gone 1", b"barrier 1", b"barrier 2"]
