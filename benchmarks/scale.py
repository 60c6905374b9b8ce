"""One prediction worker (or --shard k workers) under many sites: detection latency, false suspicions, CPU.

Run as ``python benchmarks/scale.py [--sites 100,300,1000,3000] [--duration-s 60] [--shards 1]``. For each
N it starts a private Mosquitto and Redis, the worker(s) with the N site ids (`--sites-file`, so a shard
subscribes to its own sites only), and `--emulators` processes that emulate the N sites as light
heartbeat publishers: one MQTT connection per process, every site beating every 150 ms (6.7 Hz, msgpack
`{session, seq, mono_ts}`, QoS 0, phases spread over the interval), each with a retained online status.
Every `--hang-every-s` one random site hangs (its heartbeats stop, as after SIGSTOP) for `--hang-s`, then
comes back with a new session. An observer records the workers' `detector:down` predictions.

Per N it prints: heartbeats per second, hangs injected and detected, detection latency p50/p99 (hang to
down prediction received), false suspicions (a down of a site that was not hung) and per hour, and the
workers' CPU (share of one core, from /proc). Target (issue 10): 1,000 sites with p99 <= 1.65 s and no
false suspicion. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import paho.mqtt.client as paho
import redis
from local_brokers import free_port, listens, wait_until
from paho.mqtt.enums import CallbackAPIVersion

from edgeoff.wire import topics
from edgeoff.wire.codec import decode_json, encode_json
from edgeoff.wire.messages import DOWN_MODEL, Prediction, SiteStatus
from edgeoff.wire.mqtt import Inbox, Message, MqttClient, MqttEvent
from edgeoff.wire.settings import BrokerSettings
from edgeoff.wire.store import TaskStore

HEARTBEAT_S = 0.15
STALL_REPORT_S = 0.5  # an emulator tick this late is reported: the sender was starved, not the detector
DETECTION_S = 1.5
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# ---------------------------------------------------------------------- the emulator (a child process)


def emulate(
    port: int,
    redis_port: int,
    sites: list[str],
    duration_s: float,
    hang_every_s: float,
    hang_s: float,
    seed: int,
) -> None:
    """Beat for `sites` for `duration_s`; hang one random site every `hang_every_s`; print hangs as JSON.

    Sessions come from each site's counter in Redis (INCR), as a real site's do: the worker ignores a
    session above the counter (edgeoff.wire.sessions)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"emulator-{seed}", protocol=paho.MQTTv5)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    rng = random.Random(seed)
    counters = TaskStore(redis.Redis(host="127.0.0.1", port=redis_port))
    session = {site: counters.next_session(site) for site in sites}
    seq = dict.fromkeys(sites, 0)
    for site in sites:
        status = SiteStatus(state="online", session=session[site], ts=time.time())
        client.publish(topics.site_topic(site, "status"), encode_json(status), qos=1, retain=True)
    hung: dict[str, float] = {}  # site -> resume at (monotonic)
    start = time.monotonic()
    next_hang = start + 5.0 + rng.uniform(0, hang_every_s)  # a calm start: every site seen first
    offsets = {site: i * HEARTBEAT_S / len(sites) for i, site in enumerate(sites)}
    tick = 0
    while (now := time.monotonic()) < start + duration_s:
        base = start + tick * HEARTBEAT_S
        lag = now - base - HEARTBEAT_S
        if lag > STALL_REPORT_S:  # this emulator itself was starved: its sites really fell silent
            print(json.dumps({"stall": time.time(), "lag": lag}), flush=True)
        for site in sites:
            due = base + offsets[site]
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if site in hung:
                continue
            payload = msgpack.packb({"session": session[site], "seq": seq[site], "mono_ts": time.monotonic()})
            client.publish(f"{topics.PREFIX}/sites/{site}/heartbeat", payload, qos=0)
            seq[site] += 1
        tick += 1
        now = time.monotonic()
        for site, resume in list(hung.items()):
            if now >= resume:
                del hung[site]
                session[site] = counters.next_session(site)
                seq[site] = 0
                status = SiteStatus(state="online", session=session[site], ts=time.time())
                client.publish(topics.site_topic(site, "status"), encode_json(status), qos=1, retain=True)
        if now >= next_hang and now < start + duration_s - hang_s - DETECTION_S - 1:
            candidates = [s for s in sites if s not in hung]
            if candidates:
                site = rng.choice(candidates)
                hung[site] = now + hang_s
                print(json.dumps({"site": site, "ts": time.time()}), flush=True)
            next_hang = now + hang_every_s
    client.loop_stop()
    client.disconnect()
    counters.close()


# ---------------------------------------------------------------------- the parent


def run(n: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    procs: list[subprocess.Popen[bytes]] = []
    port, redis_port = free_port(), free_port()
    conf = workdir / f"mosquitto-{n}.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n"
        "set_tcp_nodelay true\nlog_dest stderr\nlog_type error\n",
        encoding="utf-8",
    )
    log = (workdir / f"servers-{n}.log").open("ab")
    procs.append(subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT))
    procs.append(
        subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    )
    wait_until(lambda: listens(port) and listens(redis_port), 10, "brokers")
    sites = [f"s{i:05d}" for i in range(n)]
    sites_file = workdir / f"sites-{n}.txt"
    sites_file.write_text("\n".join(sites) + "\n", encoding="utf-8")
    workers: list[subprocess.Popen[bytes]] = []
    for shard in range(args.shards):
        env = {
            **os.environ,
            "EDGEOFF_WORKER_BROKER__PORT": str(port),
            "EDGEOFF_WORKER_REDIS__URL": f"redis://127.0.0.1:{redis_port}/0",
            "EDGEOFF_WORKER_LOG_LEVEL": "WARNING",
            "EDGEOFF_WORKER_BROKER__INBOX_SIZE": "100000",
        }
        cmd = [
            sys.executable,
            "-m",
            "prediction_worker",
            "--worker-id",
            f"w{shard}",
            "--shard",
            f"{shard}/{args.shards}",
            "--sites-file",
            str(sites_file),
        ]
        wlog = (workdir / f"worker-{n}-{shard}.log").open("ab")
        workers.append(subprocess.Popen(cmd, env=env, stdout=wlog, stderr=subprocess.STDOUT))
    procs += workers
    downs: list[tuple[float, str]] = []
    stop = threading.Event()
    observer = threading.Thread(target=_observe, args=(port, stop, downs), daemon=True)
    observer.start()
    time.sleep(3.0)  # the workers import numpy and scikit-learn and subscribe
    per = [sites[i :: args.emulators] for i in range(args.emulators)]
    emulators = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--emulate",
                str(port),
                str(redis_port),
                ",".join(chunk),
                str(args.duration_s),
                str(args.hang_every_s * args.emulators),
                str(args.hang_s),
                str(k),
            ],
            stdout=subprocess.PIPE,
        )
        for k, chunk in enumerate(per)
    ]
    time.sleep(5.0)  # the calm start of the emulators
    cpu0, t0 = sum(cpu_s(w.pid) for w in workers), time.monotonic()
    hangs: list[tuple[float, str]] = []
    sender_stalls: list[tuple[float, float, set[str]]] = []  # (wall, lag, the sites of that emulator)
    for emulator, chunk in zip(emulators, per, strict=True):
        out, _ = emulator.communicate(timeout=args.duration_s + 60)
        events = [json.loads(line) for line in out.decode().splitlines() if line]
        hangs += [(e["ts"], e["site"]) for e in events if "site" in e]
        sender_stalls += [(e["stall"], e["lag"], set(chunk)) for e in events if "stall" in e]
    cpu1, t1 = sum(cpu_s(w.pid) for w in workers), time.monotonic()
    end_wall = time.time()  # the emulators stopped beating: every site goes silent after this
    time.sleep(DETECTION_S + 0.5)
    stop.set()
    observer.join(5)
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    latencies: list[float] = []
    missed = 0
    for ts, site in hangs:
        seen = [t for t, s in downs if s == site and ts <= t <= ts + args.hang_s + DETECTION_S]
        if seen:
            latencies.append(min(seen) - ts)
        else:
            missed += 1

    def hung(t: float, s: str) -> bool:
        return any(site == s and ts - 0.2 <= t <= ts + args.hang_s + 1.0 for ts, site in hangs)

    def starved(t: float, s: str) -> bool:
        return any(s in ss and at - lag - 0.2 <= t <= at + DETECTION_S + 0.5 for at, lag, ss in sender_stalls)

    silent = [(t, s) for t, s in downs if t <= end_wall and not hung(t, s)]
    false = sum(1 for t, s in silent if not starved(t, s))
    measured_s = t1 - t0
    latencies.sort()

    def q(p: float) -> float | None:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 3) if latencies else None

    return {
        "sites": n,
        "workers": args.shards,
        "heartbeats_per_s": round(n / HEARTBEAT_S, 1),
        "hangs": len(hangs),
        "detected": len(latencies),
        "missed": missed,
        "detection_p50_s": q(0.5),
        "detection_p99_s": q(0.99),
        "false_suspicions": false,
        "false_per_hour": round(false / max(measured_s, 1e-9) * 3600, 1),
        "downs_of_starved_senders": len(silent) - false,
        "sender_stalls": len(sender_stalls),
        "worker_cpu_pct": round((cpu1 - cpu0) / max(measured_s, 1e-9) * 100, 1),
        "measured_s": round(measured_s, 1),
    }


def _observe(port: int, stop: threading.Event, downs: list[tuple[float, str]]) -> None:
    inbox: Inbox[MqttEvent] = Inbox()
    client = MqttClient(settings=BrokerSettings(port=port), client_id="scale-observer", inbox=inbox)
    client.subscribe(f"{topics.PREFIX}/predictions/+", qos=1)
    client.start()
    while not stop.is_set():
        try:
            event = inbox.get(timeout=0.1)
        except Exception:
            continue
        if isinstance(event, Message) and not event.retain:
            try:
                prediction = decode_json(Prediction, event.payload)
            except Exception:
                continue
            if prediction.model == DOWN_MODEL:
                downs.append((time.time(), prediction.site))
    client.stop()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--emulate":
        port, redis_port, sites, duration, every, hold, seed = sys.argv[2:9]
        emulate(
            int(port),
            int(redis_port),
            sites.split(","),
            float(duration),
            float(every),
            float(hold),
            int(seed),
        )
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sites", default="100,300,1000,3000", help="comma-separated site counts")
    parser.add_argument("--duration-s", type=float, default=60.0, help="seconds of heartbeats per count")
    parser.add_argument("--shards", type=int, default=1, help="workers, each with --shard i/n")
    parser.add_argument("--emulators", type=int, default=4, help="emulator processes")
    parser.add_argument("--hang-every-s", type=float, default=1.0, help="a hang every this many seconds")
    parser.add_argument("--hang-s", type=float, default=3.0, help="how long a hung site stays silent")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="edgeoff-scale-"))
    rows = []
    for n in (int(x) for x in args.sites.split(",")):
        row = run(n, args, workdir)
        rows.append(row)
        print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    print(json.dumps({"benchmark": "scale", "load": os.getloadavg(), "rows": rows}))


if __name__ == "__main__":
    main()
