"""Benchmark of task dispatch: end-to-end tasks per second against a raw paho QoS 1 loop, in the same run.

Run as ``python benchmarks/dispatch.py``. Starts a private Mosquitto and Redis on free loopback ports and
one real site daemon (its own process, zero-cost emulated execution), then measures, in alternating blocks
through the same broker, each loop with the same `WINDOW` of messages in flight and QoS 1 both ways:

- end to end (`e2e`): the agent's MqttClient (inline mode: its network I/O runs on the benchmark's thread,
  as the site daemon's does) publishes a TaskRequest (QoS 1, msgpack) to the site's tasks
  topic; the site decodes it, claims it in Redis (Lua, lease), runs it (0 s), stores the result (SET NX)
  and publishes the TaskResult (QoS 1) on `results/{agent}`, which the agent decodes (pydantic, strict);
- raw: a bare paho-mqtt client (no project code; TCP_NODELAY like every client of the project) publishes
  a QoS 1 message to a topic it is subscribed to and receives it;
- raw_wrapped (for information): the same raw loop through the project's MqttClient, to show what the
  wrapper costs.

The target ratio is `e2e_over_raw` = tasks per second over raw messages per second, as the issue states
it: one task round trip (request and result, two QoS 1 messages and two MQTT clients) is charged against
one raw message. That is the stricter of the two readings, and the honest one on this kind of machine:
per task, the agent's client does exactly the work the raw client does per message (one publish, one
receive), while the second hop runs in another process (the site) on another core; counting the task as
two messages would credit the end-to-end path with that parallelism instead of measuring its overhead.

Every loop gets one unmeasured warm-up block, then BLOCKS measured blocks each; rates are medians over
blocks. Reported: rates, ratio, round trip p50/p99 under load (the throughput blocks) and of single
messages (window 1). The last line printed is a JSON object.
"""

from __future__ import annotations

import json
import queue
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import paho.mqtt.client as paho
from local_brokers import start_brokers
from paho.mqtt.enums import CallbackAPIVersion

from edgeoff.wire import topics
from edgeoff.wire.codec import decode_msgpack, encode_msgpack
from edgeoff.wire.messages import TaskRequest, TaskResult
from edgeoff.wire.mqtt import Message, MqttClient, MqttEvent
from edgeoff.wire.settings import BrokerSettings
from launcher.up.children import Children

AGENT = "bench-agent"
SITE = "ed"
WINDOW = 16  # messages in flight in the throughput runs (below the broker's max_inflight_messages)
TASKS_PER_BLOCK = 2000
LATENCY_SAMPLES = 500
BLOCKS = 5
TIMEOUT_S = 30.0
RAW_TOPIC = "bench/raw"
TARGET_RATIO = 0.5


class Loop(Protocol):
    def send(self, n: int) -> None: ...

    def receive(self) -> int: ...

    def stop(self) -> None: ...


def _wait_connected(connected: threading.Event) -> None:
    if not connected.wait(TIMEOUT_S):
        raise RuntimeError("benchmark client cannot connect")


class WrappedLoop:
    """A client of the project (MqttClient) subscribed to `topic`; `inline`: driven by this thread."""

    def __init__(self, broker: BrokerSettings, client_id: str, topic: str, *, inline: bool = False) -> None:
        self.inbox: queue.Queue[MqttEvent] = queue.Queue()
        self.inline = inline
        self.client = MqttClient(settings=broker, client_id=client_id, inbox=self.inbox, inline_loop=inline)
        self.client.subscribe(topic)
        self.client.start()
        if inline:
            deadline = time.monotonic() + TIMEOUT_S
            while not self.client.connected.is_set() and time.monotonic() < deadline:
                self.client.poll(0.05)
            settle = time.monotonic() + 0.2
            while time.monotonic() < settle:
                self.client.poll(0.05)
        _wait_connected(self.client.connected)
        if not inline:
            time.sleep(0.2)  # the SUBSCRIBE is sent from on_connect: let its SUBACK come back

    def message(self) -> Message:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            if self.inline:
                try:
                    event = self.inbox.get_nowait()
                except queue.Empty:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError("no message from the broker") from None
                    self.client.poll(remaining)
                    continue
            else:
                event = self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            if isinstance(event, Message):
                return event

    def stop(self) -> None:
        self.client.stop()


class AgentLoop(WrappedLoop):
    """End to end: task requests to the site, results back (what a mobile agent does)."""

    def __init__(self, broker: BrokerSettings) -> None:
        super().__init__(broker, "bench-agent", topics.results(AGENT), inline=True)
        self.block = 0
        self._tasks_topic = topics.site_topic(SITE, "tasks")

    def send(self, n: int) -> None:
        self.client.publish(self._tasks_topic, encode_msgpack(_request(n, self.block)), qos=1)

    def receive(self) -> int:
        return int(decode_msgpack(TaskResult, self.message().payload).task_id.rsplit("-", 1)[1])


class WrappedRawLoop(WrappedLoop):
    """Raw messages to itself through the project's MqttClient."""

    def __init__(self, broker: BrokerSettings) -> None:
        super().__init__(broker, "bench-raw-wrapped", f"{RAW_TOPIC}/wrapped")
        self.block = 0

    def send(self, n: int) -> None:
        self.client.publish(f"{RAW_TOPIC}/wrapped", str(n).encode(), qos=1)

    def receive(self) -> int:
        return int(self.message().payload)


class RawLoop:
    """Raw messages to itself through a bare paho-mqtt client (its own network thread, as MqttClient)."""

    def __init__(self, broker: BrokerSettings) -> None:
        self.block = 0
        self.inbox: queue.Queue[bytes] = queue.Queue()
        subscribed = threading.Event()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw", protocol=paho.MQTTv5)

        def on_connect(c: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            sock = c.socket()
            if isinstance(sock, socket.socket):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c.subscribe(RAW_TOPIC, qos=1)

        client.on_connect = on_connect
        client.on_subscribe = lambda c, userdata, mid, codes, props: subscribed.set()
        client.on_message = lambda c, userdata, message: self.inbox.put(bytes(message.payload))
        client.connect(broker.host, broker.port, keepalive=30)
        client.loop_start()
        _wait_connected(subscribed)
        self.client = client

    def send(self, n: int) -> None:
        self.client.publish(RAW_TOPIC, str(n).encode(), qos=1)

    def receive(self) -> int:
        return int(self.inbox.get(timeout=TIMEOUT_S))

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _request(n: int, block: int) -> TaskRequest:
    return TaskRequest(
        task_id=f"b{block}-{n}",
        attempt=0,
        agent=AGENT,
        app="BENCH",
        task="ZERO",
        mi=0.0,
        input_kb=0.0,
        output_kb=0.0,
        memory_gb=0.0,
        deadline_s=10.0,
    )


def run_loop(loop: Loop, n: int, window: int) -> list[float]:
    """Send `n` messages with `window` in flight; round trip (s) of each, in completion order."""
    sent_at: dict[int, float] = {}
    rtts = []
    nxt = 0
    while nxt < min(window, n):
        sent_at[nxt] = time.perf_counter()
        loop.send(nxt)
        nxt += 1
    for _ in range(n):
        key = loop.receive()
        rtts.append(time.perf_counter() - sent_at.pop(key))
        if nxt < n:
            sent_at[nxt] = time.perf_counter()
            loop.send(nxt)
            nxt += 1
    return rtts


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="edgeoff-bench-") as tmp:
        children = Children(Path(tmp))
        try:
            host, port, redis_url = start_brokers(children, Path(tmp))
            env = {
                "EDGEOFF_SITE_BROKER__HOST": host,
                "EDGEOFF_SITE_BROKER__PORT": str(port),
                "EDGEOFF_SITE_REDIS__URL": redis_url,
                "EDGEOFF_SITE_EXECUTION_SCALE": "0",
                "EDGEOFF_SITE_LOG_LEVEL": "WARNING",
            }
            children.start("site", [sys.executable, "-m", "site_daemon", "--site", SITE], env)
            result = measure(BrokerSettings(host=host, port=port))
        finally:
            children.stop_all()
    print(json.dumps(result))


def _ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.array(values) * 1000, q)), 3)


def measure(broker: BrokerSettings) -> dict[str, Any]:
    watcher = WrappedLoop(broker, "bench-watch", topics.site_topic(SITE, "status"))
    while json.loads(watcher.message().payload)["state"] != "online":
        pass
    watcher.stop()
    loops: dict[str, Any] = {
        "e2e": AgentLoop(broker),
        "raw": RawLoop(broker),
        "raw_wrapped": WrappedRawLoop(broker),
    }
    rates: dict[str, list[float]] = {name: [] for name in loops}
    loaded: dict[str, list[float]] = {name: [] for name in loops}
    block = 0
    for measured in [False] + [True] * BLOCKS:  # a warm-up block of every loop first
        for name, loop in loops.items():
            block += 1
            loop.block = block  # task ids stay unique across blocks
            start = time.perf_counter()
            rtts = run_loop(loop, TASKS_PER_BLOCK, WINDOW)
            if measured:
                rates[name].append(TASKS_PER_BLOCK / (time.perf_counter() - start))
                loaded[name].extend(rtts)
    single: dict[str, list[float]] = {}
    for name in ("e2e", "raw"):
        block += 1
        loops[name].block = block
        single[name] = run_loop(loops[name], LATENCY_SAMPLES, 1)
    for loop in loops.values():
        loop.stop()
    e2e, raw = statistics.median(rates["e2e"]), statistics.median(rates["raw"])
    return {
        "benchmark": "dispatch",
        "window": WINDOW,
        "blocks": BLOCKS,
        "per_block": TASKS_PER_BLOCK,
        "e2e_tasks_per_s": round(e2e, 1),
        "raw_qos1_msgs_per_s": round(raw, 1),
        "e2e_over_raw": round(e2e / raw, 3),
        "target": TARGET_RATIO,
        "target_met": e2e / raw >= TARGET_RATIO,
        "raw_wrapped_qos1_msgs_per_s": round(statistics.median(rates["raw_wrapped"]), 1),
        "e2e_rtt_ms_p50": _ms(single["e2e"], 50),
        "e2e_rtt_ms_p99": _ms(single["e2e"], 99),
        "raw_rtt_ms_p50": _ms(single["raw"], 50),
        "raw_rtt_ms_p99": _ms(single["raw"], 99),
        "e2e_loaded_rtt_ms_p50": _ms(loaded["e2e"], 50),
        "e2e_loaded_rtt_ms_p99": _ms(loaded["e2e"], 99),
        "raw_loaded_rtt_ms_p50": _ms(loaded["raw"], 50),
        "raw_loaded_rtt_ms_p99": _ms(loaded["raw"], 99),
    }


if __name__ == "__main__":
    main()
