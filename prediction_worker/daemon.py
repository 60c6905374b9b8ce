"""The prediction worker daemon: failure detector, availability trace and forecast per site, over MQTT+Redis.

    settings -> scenario (heartbeat interval, datasets) -> Redis store -> MQTT client -> serve -> SIGTERM

One thread owns all state. paho's callbacks only put events on the inbox; the loop decodes each message
(a bad one is logged, counted by reason and dropped), feeds the detector with `time.monotonic()`, polls the
detector every `poll_s` for down verdicts, keeps the per-site availability trace, and when a site's
prediction changes writes the value of record to Redis and publishes its retained JSON copy.

Subscriptions: `edgeoff/v1/sites/+/heartbeat` (msgpack Heartbeat, QoS 0) and `edgeoff/v1/sites/+/status`
(JSON SiteStatus, QoS 1).

Message contract of `edgeoff/v1/predictions/{site}` (retained JSON :class:`~edgeoff.wire.messages.Prediction`,
QoS 1), the fields of the model fixed by the wire contract:

* while the detector holds the site up: `availability` is the forecast of the next window, `model` the
  forecaster that made it (`svr`, `svr-features`, `ewm`, `last-value`, `training-mean`, `mttf`, `belief`
  (then the probability that the site stays up for the next task), `steady-state:{node}` or `prior`, see
  :mod:`prediction_worker.availability_trace`);
* while the site is suspected or offline: `availability` 0.0 and `model` `detector:down` (:data:`DOWN_MODEL`).
  This is how the agent learns of a failure within the detection time; the forecast is published again
  when the site is back up;
* `version` grows by one with every published change of a site (HINCRBY in Redis, so it never goes
  backwards, across reconnects and worker restarts alike); `ts` is the wall clock of the change.

A prediction is published when the up/down verdict changes, or when the forecast moves by more than
`epsilon`.

Redis (prefix `edgeoff:v1:`), the state of record:

| key                        | type | value                                                               |
|----------------------------|------|---------------------------------------------------------------------|
| prediction:{site}          | hash | availability, model, version, ts, up (0/1), worker (one Lua script)  |
| site:{site}:verdicts       | list | JSON verdicts, newest first: up, session, reason, ts; LTRIM to bound |
| site:{site}:windows        | list | availability of each closed window, newest first; LTRIM to bound     |
| worker:{worker}:counters   | hash | the worker's counters, rewritten every `stats_s` (health, tests)     |

After every MQTT reconnect the worker re-reads each known site's record from Redis and re-publishes it
retained (a restarted broker without persistence has forgotten the retained copies); a site first seen by
this process restores its live windows from Redis.

Sharing the sites between several workers, two ways:

* `--shard i/n` (recommended): every worker subscribes to all sites and handles only those whose stable
  hash (BLAKE2b of the id) mod n is i (:class:`~prediction_worker.detector.Shard`); the others are counted
  as `in_ignored.not_owned`. Every site has exactly one owner, so no two workers publish for one site.
* `--shared`: subscribe through `$share/{group}/...`. The broker then divides *messages*, not sites:
  Mosquitto delivers each message to one member of the group in turn, so with n workers each one sees
  every n-th heartbeat of every site (an effective interval n times longer: the phi detector adapts, the
  fixed detector stays correct while n * interval < interval * missed) and a status reaches one worker
  only. Versions stay monotonic (Redis), but every worker publishes for every site. Use it for one active
  worker plus standbys that take over the moment it disconnects, or combine it with `--shard`.
"""

from __future__ import annotations

import argparse
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from edgeoff.ops import (
    EXIT_CONFIG,
    MAX_IDLE_WAIT_S,
    Operations,
    run_daemon,
    settings_from_args,
    settings_parser,
)
from edgeoff.scenario import load_scenario
from edgeoff.traces import load_node_table
from edgeoff.wire import topics
from edgeoff.wire.codec import decode_json, decode_msgpack
from edgeoff.wire.errors import DecodeError, StoreError, TopicError
from edgeoff.wire.messages import Heartbeat, SiteStatus
from edgeoff.wire.mqtt import Connected, Disconnected, Message, MqttClient, MqttEvent
from prediction_worker.detector import Detector, FixedTimeoutDetector, PhiAccrualDetector
from prediction_worker.predictions import PredictionPublishing, Seed, _SiteView
from prediction_worker.settings import WorkerSettings
from prediction_worker.store import PredictionStore

__all__ = [
    "EXIT_CONFIG",
    "PredictionWorker",
    "WorkerSettings",
    "build_detector",
    "main",
]

log = logging.getLogger("edgeoff.worker")

ERROR_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)  # |forecast - window availability|


def build_detector(settings: WorkerSettings, heartbeat_s: float, missed: int) -> Detector:
    """The configured detector for a sender interval of `heartbeat_s` seconds."""
    if settings.detector == "phi":
        return PhiAccrualDetector(
            settings.phi_threshold,
            settings.phi_window,
            settings.phi_min_std_s,
            acceptable_pause_s=settings.phi_pause_s,
            first_interval_s=heartbeat_s,
        )
    return FixedTimeoutDetector(heartbeat_s, missed)


class PredictionWorker(PredictionPublishing):
    """Serves the sites of one shard until `stop` is set."""

    def __init__(
        self,
        *,
        settings: WorkerSettings,
        detector: Detector,
        store: PredictionStore,
        stop: threading.Event,
        seeds: Mapping[str, Seed] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        ops: Operations | None = None,
    ) -> None:
        self.settings = settings
        self.detector = detector
        self.store = store
        self.stop = stop
        self.seeds = dict(seeds or {})
        self.clock = clock
        self.wall_clock = wall_clock
        self.shard = settings.shard_spec
        self.inbox: queue.Queue[MqttEvent] = queue.Queue()
        self.mqtt = MqttClient(
            settings=settings.broker,
            client_id=f"edgeoff-worker-{settings.worker_id}",
            inbox=self.inbox,
            max_message_bytes=settings.max_message_bytes,
        )
        self.counters = self.mqtt.counters
        self.ops = ops if ops is not None else Operations(name=f"worker={settings.worker_id}")
        self.ops.watch(self.counters)
        self._prediction_error = self.ops.metrics.histogram(
            "prediction_abs_error",
            "Absolute error of the forecast in force when a window closed, against its availability.",
            ERROR_BUCKETS,
            ["site"],
        )
        self._availability = self.ops.metrics.gauge(
            "predicted_availability", "The last published availability of each site.", ["site"]
        )
        self._views: dict[str, _SiteView] = {}
        self._connects = 0
        self._next_poll = 0.0
        self._next_stats = 0.0

    # ------------------------------------------------------------------ the loop

    def subscription(self, kind: Literal["heartbeat", "status"]) -> str:
        topic = topics.all_sites(kind)
        return f"$share/{self.settings.share_group}/{topic}" if self.settings.shared else topic

    def serve(self) -> None:
        """Connect, serve until `stop` is set, then disconnect cleanly."""
        self.mqtt.subscribe(self.subscription("heartbeat"), qos=topics.QOS_AT_MOST_ONCE)
        self.mqtt.subscribe(self.subscription("status"), qos=topics.QOS_AT_LEAST_ONCE)
        self.mqtt.start()
        log.info(
            "worker %s serving: detector %s, shard %s%s",
            self.settings.worker_id,
            type(self.detector).__name__,
            self.shard,
            f", shared group {self.settings.share_group}" if self.settings.shared else "",
        )
        try:
            while not self.stop.is_set():
                self.step()
                self.ops.tick(connected=self.mqtt.connected.is_set())
        finally:
            self._shutdown()

    def step(self) -> None:
        """Handle at most one event, then poll the detector when due."""
        now = self.clock()
        timeout = min(MAX_IDLE_WAIT_S, self._next_poll - now)
        try:
            event = self.inbox.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            event = None
        if event is not None:
            self.handle(event)
        now = self.clock()
        if now >= self._next_poll:
            self._next_poll = now + self.settings.poll_s
            self.poll(now)
        if now >= self._next_stats:
            self._next_stats = now + self.settings.stats_s
            self._write_stats()

    def handle(self, event: MqttEvent) -> None:
        match event:
            case Message():
                self._on_message(event)
            case Connected():
                self._connects += 1
                if self._connects > 1:
                    self._resync()
            case Disconnected():
                log.warning("worker %s: disconnected (reason %d)", self.settings.worker_id, event.reason_code)

    # ------------------------------------------------------------------ input

    def _drop(self, reason: str, topic: str, detail: str) -> None:
        self.counters.incr(f"in_dropped.{reason}")
        log.warning("worker: dropped a message on %.80r (%s): %s", topic, reason, detail)

    def _on_message(self, message: Message) -> None:
        try:
            parsed = topics.parse_topic(message.topic)
        except TopicError as exc:
            self._drop("topic", message.topic, str(exc))
            return
        limit = self.settings.max_message_bytes
        now = self.clock()
        if parsed.kind == "heartbeat":
            try:
                beat = decode_msgpack(Heartbeat, message.payload, max_bytes=limit)
            except DecodeError as exc:
                self._drop("heartbeat_decode", message.topic, str(exc))
                return
            if not self._owned(parsed.id):
                return
            self.counters.incr("in_heartbeats")
            verdicts = self.detector.heartbeat(parsed.id, beat.session, now)
        elif parsed.kind == "status":
            try:
                status = decode_json(SiteStatus, message.payload, max_bytes=limit)
            except DecodeError as exc:
                self._drop("status_decode", message.topic, str(exc))
                return
            if not self._owned(parsed.id):
                return
            self.counters.incr("in_statuses")
            verdicts = self.detector.status(parsed.id, status.state, status.session, now)
        else:
            self._drop("topic", message.topic, f"not a subscribed kind ({parsed.kind})")
            return
        for verdict in verdicts:
            self._on_verdict(verdict)

    def _owned(self, site: str) -> bool:
        if self.shard.owns(site):
            return True
        self.counters.incr("in_ignored.not_owned")
        return False

    # ------------------------------------------------------------------ core calls

    def poll(self, now: float) -> None:
        """Down verdicts of silent sites, closed windows, retries of unstored changes."""
        for verdict in self.detector.poll(now):
            self._on_verdict(verdict)
        for site, view in self._views.items():
            closed = view.trace.advance(now)
            if closed:
                self._windows_closed(site, view, closed)
            if closed or view.dirty:
                self._update(site, view)

    def _write_stats(self) -> None:
        try:
            self.store.write_counters(self.settings.worker_id, self.counters.snapshot())
        except StoreError as exc:
            log.warning("worker: cannot write counters: %s", exc)

    def _shutdown(self) -> None:
        self.ops.stopping()
        self._write_stats()
        self.mqtt.stop(with_will=False)
        self.store.close()
        log.info("worker %s: stopped; counters %s", self.settings.worker_id, self.counters.snapshot())


# ---------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    return settings_parser(
        WorkerSettings,
        prog="edgeoff-worker",
        description="Run an edgeoff prediction worker: failure detector, availability trace and forecast "
        "per site (MQTT + Redis).",
    )


def build_worker(
    settings: WorkerSettings, stop: threading.Event, ops: Operations | None = None
) -> PredictionWorker:
    """The worker for `settings`: scenario (heartbeat interval, dataset seeds), detector and Redis store."""
    scenario = load_scenario(settings.scenario)
    heartbeat_s = scenario.detection.heartbeat_ms / 1000.0  # one source: the scenario, as for the sites
    missed = scenario.detection.missed_heartbeats
    seeds: dict[str, Seed] = {}
    if settings.dataset is not None:
        nodes = load_node_table()
        for site, node in scenario.dataset(settings.dataset).items():
            if node in nodes:
                seeds[site] = Seed(node=node, trace=nodes[node])
    return PredictionWorker(
        settings=settings,
        detector=build_detector(settings, heartbeat_s, missed),
        store=PredictionStore.from_settings(settings.redis),
        stop=stop,
        seeds=seeds,
        ops=ops,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`edgeoff-worker`: settings, logging, build, serve until SIGTERM/SIGINT, exit 0 (2: bad settings)."""
    return run_daemon(
        prog="edgeoff-worker",
        argv=argv,
        parser=build_parser(),
        settings_from_args=functools.partial(settings_from_args, WorkerSettings),
        build=build_worker,
        label=lambda settings: {"worker": settings.worker_id},
    )
