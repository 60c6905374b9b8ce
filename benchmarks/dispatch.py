"""Benchmark of task dispatch: end-to-end tasks per second against a raw paho QoS 1 loop, in the same run.

Run as ``python benchmarks/dispatch.py``. Starts a private Mosquitto and Redis on free loopback ports
(as `edgeoff up` does) and one real site daemon with zero-cost emulated execution, then measures, in
alternating blocks:

- end to end: the agent's MqttClient publishes a TaskRequest (QoS 1, msgpack) to the site's tasks topic;
  the site claims it in Redis (Lua, lease), runs it (0 s), stores the result (SET NX) and publishes the
  TaskResult (QoS 1) on `results/{agent}`, which the agent decodes;
- raw: a paho client publishes a QoS 1 message to a topic it is subscribed to and receives it.

Each loop keeps `WINDOW` messages in flight. Reported: messages per second of each, the ratio, and p50/p99
round trip of single messages (window 1). The last line printed is a JSON object.
"""

from __future__ import annotations

import json
import queue
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeoff.commands.up import Children, ensure_broker, ensure_redis
from edgeoff.wire import topics
from edgeoff.wire.codec import decode_msgpack, encode_msgpack
from edgeoff.wire.messages import TaskRequest, TaskResult
from edgeoff.wire.mqtt import Message, MqttClient, MqttEvent
from edgeoff.wire.settings import BrokerSettings

AGENT = "bench-agent"
SITE = "ed"
WINDOW = 16  # messages in flight in the throughput runs
TASKS_PER_BLOCK = 500
LATENCY_SAMPLES = 300
BLOCKS = 3
TIMEOUT_S = 30.0


class Loop:
    """An MQTT client whose messages on `topic` are counted; the sender decides what to send."""

    def __init__(self, broker: BrokerSettings, client_id: str, topic: str) -> None:
        self.inbox: queue.Queue[MqttEvent] = queue.Queue()
        self.client = MqttClient(settings=broker, client_id=client_id, inbox=self.inbox)
        self.client.subscribe(topic)
        self.client.start()
        deadline = time.monotonic() + TIMEOUT_S
        while not self.client.connected.wait(0.05):
            if time.monotonic() > deadline:
                raise RuntimeError("benchmark client cannot connect")

    def receive(self) -> Message:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            event = self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            if isinstance(event, Message):
                return event


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


def run_loop(loop: Loop, send: Any, n: int, window: int) -> list[float]:
    """Send `n` messages with `window` in flight; round trip (s) of each, in completion order."""
    sent_at: dict[int, float] = {}
    rtts = []
    nxt = 0
    while nxt < min(window, n):
        sent_at[nxt] = time.perf_counter()
        send(nxt)
        nxt += 1
    for _ in range(n):
        key = loop_key(loop.receive())
        rtts.append(time.perf_counter() - sent_at.pop(key))
        if nxt < n:
            sent_at[nxt] = time.perf_counter()
            send(nxt)
            nxt += 1
    return rtts


def loop_key(message: Message) -> int:
    if message.topic.startswith(f"{topics.PREFIX}/results/"):
        return int(decode_msgpack(TaskResult, message.payload).task_id.rsplit("-", 1)[1])
    return int(message.payload)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="edgeoff-bench-") as tmp:
        children = Children(Path(tmp))
        try:
            host, port = ensure_broker("127.0.0.1:1", children, Path(tmp))
            redis_url = ensure_redis("redis://127.0.0.1:1/0", children, Path(tmp))
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


def measure(broker: BrokerSettings) -> dict[str, Any]:
    watcher = Loop(broker, "bench-watch", topics.site_topic(SITE, "status"))
    while json.loads(watcher.receive().payload)["state"] != "online":
        pass
    watcher.client.stop()
    agent = Loop(broker, "bench-agent", topics.results(AGENT))
    raw = Loop(broker, "bench-raw", "bench/raw")
    block = [0]

    def send_task(n: int) -> None:
        agent.client.publish(topics.site_topic(SITE, "tasks"), encode_msgpack(_request(n, block[0])), qos=1)

    def send_raw(n: int) -> None:
        raw.client.publish("bench/raw", str(n).encode(), qos=1)

    e2e_rates, raw_rates = [], []
    for _ in range(BLOCKS):
        for loop, send, rates in ((agent, send_task, e2e_rates), (raw, send_raw, raw_rates)):
            block[0] += 1
            start = time.perf_counter()
            run_loop(loop, send, TASKS_PER_BLOCK, WINDOW)
            rates.append(TASKS_PER_BLOCK / (time.perf_counter() - start))
    block[0] += 1
    e2e_rtt = np.array(run_loop(agent, send_task, LATENCY_SAMPLES, 1)) * 1000
    raw_rtt = np.array(run_loop(raw, send_raw, LATENCY_SAMPLES, 1)) * 1000
    agent.client.stop()
    raw.client.stop()
    e2e, rawr = statistics.median(e2e_rates), statistics.median(raw_rates)
    return {
        "benchmark": "dispatch",
        "window": WINDOW,
        "e2e_tasks_per_s": round(e2e, 1),
        "raw_qos1_msgs_per_s": round(rawr, 1),
        "e2e_over_raw": round(e2e / rawr, 3),
        "e2e_rtt_ms_p50": round(float(np.percentile(e2e_rtt, 50)), 3),
        "e2e_rtt_ms_p99": round(float(np.percentile(e2e_rtt, 99)), 3),
        "raw_rtt_ms_p50": round(float(np.percentile(raw_rtt, 50)), 3),
        "raw_rtt_ms_p99": round(float(np.percentile(raw_rtt, 99)), 3),
    }


if __name__ == "__main__":
    main()
