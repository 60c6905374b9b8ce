"""Benchmark of the agent's reaction: from a prediction published to the agent's new policy in effect.

Run as ``python benchmarks/reaction.py``. Starts a private Mosquitto on a free loopback port and a real
mobile agent (`python -m mobile_agent`, busy running applications; one site, `ed`, announced online by a
retained status and no site daemon, so the agent also meets deadlines and falls back meanwhile). Then it
publishes `SAMPLES` predictions for `ed` (retained JSON, QoS 1, a new version and value each time) one at a
time and waits for the retained policy on `agents/{agent}/policy` that carries that prediction version.
Latency = policy received - prediction published (two broker hops, the agent's decode, Algorithm 1 on the
reference task, its JSON). The last line printed is a JSON object with p50/p99.
"""

from __future__ import annotations

import json
import queue
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from local_brokers import start_brokers

from edgeoff.wire import topics
from edgeoff.wire.codec import encode_json
from edgeoff.wire.messages import Prediction, SiteStatus
from edgeoff.wire.mqtt import Message, MqttClient, MqttEvent, wait_published
from edgeoff.wire.settings import BrokerSettings
from launcher.up.children import Children

AGENT = "bench-agent"
SITE = "ed"
SAMPLES = 300
WARMUP = 20
TIMEOUT_S = 30.0


def policy_with_version(inbox: queue.Queue[MqttEvent], version: int) -> float:
    """Wait for the policy carrying prediction `version` of SITE; the perf_counter time it arrived."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        event = inbox.get(timeout=max(0.0, deadline - time.monotonic()))
        if isinstance(event, Message):
            body = json.loads(event.payload)
            if body.get("prediction_versions", {}).get(SITE) == version:
                return time.perf_counter()


def measure(broker: BrokerSettings) -> dict[str, Any]:
    inbox: queue.Queue[MqttEvent] = queue.Queue()
    client = MqttClient(settings=broker, client_id="bench-reaction", inbox=inbox)
    client.subscribe(topics.agent_policy(AGENT))
    client.start()
    deadline = time.monotonic() + TIMEOUT_S
    while not client.connected.wait(0.05):
        if time.monotonic() > deadline:
            raise RuntimeError("benchmark client cannot connect")
    online = SiteStatus(state="online", session=1, ts=time.time())
    wait_published(
        client.publish(topics.site_topic(SITE, "status"), encode_json(online), qos=1, retain=True), 5
    )
    latencies = []
    for version in range(1, WARMUP + SAMPLES + 1):
        availability = 0.2 + 0.7 * (version % 2)  # the value flips every time: the policy changes
        prediction = Prediction(
            site=SITE, availability=availability, version=version, model="svr", ts=time.time()
        )
        sent = time.perf_counter()
        client.publish(topics.prediction(SITE), encode_json(prediction), qos=1, retain=True)
        received = policy_with_version(inbox, version)
        if version > WARMUP:
            latencies.append((received - sent) * 1000)
    client.stop()
    lat = np.array(latencies)
    return {
        "benchmark": "reaction",
        "samples": SAMPLES,
        "prediction_to_policy_ms_p50": round(float(np.percentile(lat, 50)), 3),
        "prediction_to_policy_ms_p99": round(float(np.percentile(lat, 99)), 3),
        "prediction_to_policy_ms_max": round(float(lat.max()), 3),
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="edgeoff-bench-") as tmp:
        children = Children(Path(tmp))
        try:
            host, port, _ = start_brokers(children, Path(tmp))
            broker = BrokerSettings(host=host, port=port)
            env = {
                "EDGEOFF_AGENT_BROKER__HOST": host,
                "EDGEOFF_AGENT_BROKER__PORT": str(port),
                "EDGEOFF_AGENT_AGENT": AGENT,
                "EDGEOFF_AGENT_WAIT_SITES_S": "0",
                "EDGEOFF_AGENT_DURATION_S": "600",
                "EDGEOFF_AGENT_LOG_LEVEL": "ERROR",
            }
            children.start("agent", [sys.executable, "-m", "mobile_agent"], env)
            result = measure(broker)
        finally:
            children.stop_all()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
