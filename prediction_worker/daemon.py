"""The prediction worker daemon: failure detector, availability trace and forecast per site, over MQTT+Redis.

    settings -> scenario (heartbeat interval, datasets) -> Redis store -> MQTT client -> serve -> SIGTERM

One thread owns all state. paho's callbacks only put events on the inbox; the loop decodes each message
(a bad one is logged, counted by reason and dropped), feeds the detector with `time.monotonic()`, polls the
detector every `poll_s` for down verdicts, keeps the per-site availability trace, and when a site's
prediction changes writes the value of record to Redis and publishes its retained JSON copy.

Subscriptions: `edgeoff/v1/sites/+/heartbeat` (msgpack Heartbeat, QoS 0) and `edgeoff/v1/sites/+/status`
(JSON SiteStatus, QoS 1).

The message contract of `predictions/{site}`: :mod:`prediction_worker.predictions`.

Redis (prefix `edgeoff:v1:`), the state of record:

| key                        | type | value                                                               |
|----------------------------|------|---------------------------------------------------------------------|
| prediction:{site}          | hash | availability, model, epoch, version, ts, up (0/1), worker (Lua)      |
| site:{site}:verdicts       | list | JSON verdicts, newest first: up, session, reason, ts; LTRIM to bound |
| site:{site}:windows        | list | availability of each closed window, newest first; LTRIM to bound     |
| worker:{worker}:counters   | hash | the worker's counters, rewritten every `stats_s` (health, tests)     |
| workers:epoch              | str  | the counter of worker epochs (INCR only, prediction_worker.store)    |

After every MQTT reconnect the worker re-reads each known site's record from Redis and re-publishes it
retained (a restarted broker without persistence has forgotten the retained copies); a site first seen by
this process restores its live windows from Redis.

Sharing the sites between several workers, two ways:

* `--shard i/n` (recommended): a worker handles the sites whose stable hash (BLAKE2b of the id) mod n is
  i (:class:`~prediction_worker.detector.Shard`) and subscribes to those sites' topics only (the
  scenario's sites and `--sites-file`); a site it does not know of is counted as `in_ignored.not_owned`.
  Every site has exactly one owner, so no two workers publish for one site.
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
import itertools
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from edgeoff.errors import ScenarioError
from edgeoff.ops import (
    EXIT_CONFIG,
    MAX_IDLE_WAIT_S,
    Operations,
    run_daemon,
    settings_from_args,
    settings_parser,
)
from edgeoff.ops.logs import DropLog, RateLimitedLog
from edgeoff.scenario import Simulation, load_scenario
from edgeoff.traces import load_node_table
from edgeoff.wire import topics
from edgeoff.wire.codec import decode_json, decode_msgpack
from edgeoff.wire.errors import DecodeError, StoreError, TopicError
from edgeoff.wire.messages import Heartbeat, Prediction, SiteStatus
from edgeoff.wire.mqtt import Connected, Disconnected, Inbox, Message, MqttClient, MqttEvent
from edgeoff.wire.sessions import SessionBound
from prediction_worker.availability_trace import AvailabilityWindow
from prediction_worker.detector import Detector, FixedTimeoutDetector, PhiAccrualDetector
from prediction_worker.heartbeats import HeartbeatBoard, HeartbeatIntake
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

MAX_EVENTS = 256  # inbox events handled per pass before the heartbeats and the detector get their turn
OFFLINE_HOLD_S = 0.2  # an offline status is judged this long after it came, if we are still connected
DEFAULT_STALL_S = 0.75  # half the paper's detection time (10 x 150 ms)
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


class PredictionWorker(HeartbeatIntake, PredictionPublishing):
    """Serves the sites of one shard until `stop` is set."""

    def __init__(
        self,
        *,
        settings: WorkerSettings,
        detector: Detector,
        store: PredictionStore,
        stop: threading.Event,
        seeds: Mapping[str, Seed] | None = None,
        sites: Sequence[str] = (),
        window: AvailabilityWindow | None = None,
        stall_s: float = DEFAULT_STALL_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        ops: Operations | None = None,
    ) -> None:
        self.settings = settings
        # the forecasters' window (build_worker: the scenario's); None: [simulation]'s defaults
        self.window = window or AvailabilityWindow.of(Simulation(), settings.time_compression)
        self.detector = detector
        self.store = store
        self.stop = stop
        self.seeds = dict(seeds or {})
        self.clock = clock
        self.wall_clock = wall_clock
        self.shard = settings.shard_spec
        self.sites = tuple(sites)  # known site ids: a sharded worker subscribes to its own only
        self.inbox: Inbox[MqttEvent] = Inbox()
        self._board = HeartbeatBoard()  # heartbeats skip the inbox, stamped on arrival
        self._beats_counted = 0
        self._owned_site: dict[str, str] = {}
        self._arrivals: list[float] = []  # heartbeat topic -> its site, for valid owned sites
        self.mqtt = MqttClient(
            settings=settings.broker,
            client_id=f"edgeoff-worker-{settings.worker_id}",
            inbox=self.inbox,
            max_message_bytes=settings.max_message_bytes,
            fast_path=self._board.take,
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
        self._drops = DropLog(log, f"worker {settings.worker_id}", clock=clock)
        self._errors = RateLimitedLog(log, clock=clock)
        self._sessions = SessionBound(store.session, clock=clock)  # no session above the site's counter
        self._epoch = 0
        self._connects = 0
        self._next_poll = 0.0
        self._next_stats = 0.0
        self._last_poll: float | None = None
        self._held_offline: list[tuple[float, Message]] = []  # (judge at, offline status), oldest first
        self._judge_from: float | None = None  # None: judging; else the clock time judging resumes at
        self._stall_s = stall_s  # a loop pass this late means this worker itself stalled
        self._grace_s = settings.broker.reconnect_max_s + settings.resync_grace_s

    # ------------------------------------------------------------------ the loop

    def subscription(self, kind: Literal["heartbeat", "status"]) -> str:
        topic = topics.all_sites(kind)
        return f"$share/{self.settings.share_group}/{topic}" if self.settings.shared else topic

    def subscriptions(self) -> list[tuple[str, int]]:
        """Topic filters and QoS: every site's (`+`), or with a shard of n > 1 and known sites, only the
        sites this shard owns, so the broker never sends it the other shards' heartbeats. Besides, the
        predictions of those sites, to answer one this worker did not publish (see predictions.py; not
        with --shared, where every worker publishes)."""
        kinds: tuple[tuple[Literal["heartbeat", "status"], int], ...] = (
            ("heartbeat", topics.QOS_AT_MOST_ONCE),
            ("status", topics.QOS_AT_LEAST_ONCE),
        )
        if self.settings.shared:
            return [(self.subscription(kind), qos) for kind, qos in kinds]
        if self.shard.count == 1 or not self.sites:
            own = [(self.subscription(kind), qos) for kind, qos in kinds]
            return [*own, (f"{topics.PREFIX}/predictions/+", topics.QOS_AT_LEAST_ONCE)]
        owned = [site for site in self.sites if self.shard.owns(site)]
        out = [(topics.site_topic(site, kind), qos) for site in owned for kind, qos in kinds]
        return out + [(topics.prediction(site), topics.QOS_AT_LEAST_ONCE) for site in owned]

    def serve(self) -> None:
        """Connect, serve until `stop` is set, then disconnect cleanly."""
        for topic, qos in self.subscriptions():
            self.mqtt.subscribe(topic, qos=qos)
        self._take_epoch()
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
        """Handle the events waiting (at most MAX_EVENTS), then the heartbeats and the detector when due."""
        now = self.clock()
        timeout = min(MAX_IDLE_WAIT_S, self._next_poll - now)
        try:
            event: MqttEvent | None = self.inbox.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            event = None
        handled = 0
        while event is not None:
            self.handle(event)
            handled += 1
            try:
                event = self.inbox.get_nowait() if handled < MAX_EVENTS else None
            except queue.Empty:
                event = None
        now = self.clock()
        if now >= self._next_poll:
            self._next_poll = now + self.settings.poll_s
            self._take_beats()
            self.poll(now)
        if now >= self._next_stats:
            self._next_stats = now + self.settings.stats_s
            self._write_stats()
            self._drops.flush()
            self._errors.flush()

    def handle(self, event: MqttEvent) -> None:
        match event:
            case Message():
                self._on_message(event)
            case Connected():
                self._connects += 1
                if self._connects > 1:
                    self._resync()
                    self._hold_verdicts(self.clock(), "reconnected")
            case Disconnected():
                log.warning("worker %s: disconnected (reason %d)", self.settings.worker_id, event.reason_code)
                self._judge_from = math.inf  # judge nobody while cut off: our silence, not theirs
                if self._held_offline:
                    self.counters.incr("statuses_dropped.broker_going_away", len(self._held_offline))
                    self._held_offline.clear()

    # ------------------------------------------------------------------ heartbeats

    def _hold_verdicts(self, now: float, why: str) -> None:
        """Judge nobody until the sites had time to come back (they reconnect too), then start afresh."""
        self._judge_from = now + self._grace_s
        self.counters.incr(f"resyncs.{why}")
        log.warning("worker %s: %s: no verdict for %.1f s", self.settings.worker_id, why, self._grace_s)

    # ------------------------------------------------------------------ input

    def _drop(self, reason: str, topic: str, detail: str) -> None:
        self.counters.incr(f"in_dropped.{reason}")
        self._drops.drop(reason, topic, detail)

    def _real_session(self, site: str, session: int) -> bool:
        """False (counted) for a session above the site's counter in Redis: one it was never given."""
        if self._sessions.plausible(site, session):
            return True
        self.counters.incr("in_ignored.unknown_session")
        return False

    def _on_message(self, message: Message, *, held: bool = False) -> None:
        try:
            parsed = topics.parse_topic(message.topic)
        except TopicError as exc:
            self._drop("topic", message.topic, str(exc))
            return
        limit = self.settings.max_message_bytes
        now = message.received_at or self.clock()  # arrival, stamped on the network thread
        if parsed.kind == "heartbeat":
            try:
                beat = decode_msgpack(Heartbeat, message.payload, max_bytes=limit)
            except DecodeError as exc:
                self._drop("heartbeat_decode", message.topic, str(exc))
                return
            if not self._owned(parsed.id) or not self._real_session(parsed.id, beat.session):
                return
            self.counters.incr("in_heartbeats")
            verdicts = self.detector.heartbeat(parsed.id, beat.session, now)
        elif parsed.kind == "status":
            try:
                status = decode_json(SiteStatus, message.payload, max_bytes=limit)
            except DecodeError as exc:
                self._drop("status_decode", message.topic, str(exc))
                return
            if not self._owned(parsed.id) or not self._real_session(parsed.id, status.session):
                return
            self.counters.incr("in_statuses")
            if status.state == "offline" and not held:
                # A broker shutting down publishes every client's will: an offline that is followed by our
                # own disconnect is that, not a failure. Judge it only if we are still connected shortly.
                self._held_offline.append((self.clock() + OFFLINE_HOLD_S, message))
                return
            verdicts = self.detector.status(parsed.id, status.state, status.session, now)
        elif parsed.kind == "prediction":
            try:
                prediction = decode_json(Prediction, message.payload, max_bytes=limit)
            except DecodeError as exc:
                self._drop("prediction_decode", message.topic, str(exc))
                return
            if prediction.site != parsed.id:
                self._drop("prediction_site", message.topic, f"a prediction of {prediction.site}")
                return
            # a retained copy predates this connection: the worker's next publish replaces it anyway
            if not message.retain and self.shard.owns(parsed.id):
                self._on_foreign_prediction(parsed.id, prediction)
            return
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
        """Down verdicts of silent sites (unless this worker was cut off or stalled: then it resyncs
        first), closed windows, retries of unstored changes, answers to foreign predictions."""
        last, self._last_poll = self._last_poll, now
        if last is not None and now - last > self._stall_s and self._judge_from is None:
            # the loop was late; if heartbeats kept arriving meanwhile (the network thread stamped them),
            # the stamps are true and the verdicts sound; if every arrival stopped too, we were stopped
            points = [last, *self._arrivals, now]
            silence = max(b - a for a, b in itertools.pairwise(points))  # of every site at once
            if silence > self._stall_s:
                self._hold_verdicts(now, "stalled")
        if self._judge_from is not None and now >= self._judge_from:
            self._judge_from = None
            self.detector.resync(now)
        while self._held_offline and self._held_offline[0][0] <= now and self.mqtt.connected.is_set():
            self._on_message(self._held_offline.pop(0)[1], held=True)
        if self._judge_from is None:
            for verdict in self.detector.poll(now):
                self._on_verdict(verdict)
        self._repair(now)
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
            self._errors.log(logging.WARNING, "counters", "worker: cannot write counters: %s", exc)

    def _shutdown(self) -> None:
        self.ops.stopping()
        self._write_stats()
        self._drops.flush(force=True)
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
    sites = [sid for i, sid in enumerate(scenario.site_ids) if i != scenario.mobile_index]
    if settings.sites_file is not None:
        try:
            lines = settings.sites_file.read_text(encoding="utf-8").split()
        except OSError as exc:
            raise ScenarioError(f"cannot read the sites file {settings.sites_file}: {exc}") from None
        try:
            sites += [topics.validate_id(line, what="site id") for line in lines if line not in sites]
        except TopicError as exc:
            raise ScenarioError(f"sites file {settings.sites_file}: {exc}") from None
    return PredictionWorker(
        settings=settings,
        detector=build_detector(settings, heartbeat_s, missed),
        store=PredictionStore.from_settings(settings.redis),
        stop=stop,
        seeds=seeds,
        sites=sites,
        window=AvailabilityWindow.of(scenario.simulation, settings.time_compression),
        stall_s=heartbeat_s * missed / 2,  # half the detection time
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
