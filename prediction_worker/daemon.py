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
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from edgeoff.ids import Id
from edgeoff.ops import (
    EXIT_CONFIG,
    MAX_IDLE_WAIT_S,
    Operations,
    OpsSettings,
    add_ops_arguments,
    run_daemon,
    settings_from_args,
)
from edgeoff.scenario import load_scenario
from edgeoff.traces import NodeTrace, load_node_table
from edgeoff.wire import topics
from edgeoff.wire.codec import decode_json, decode_msgpack, encode_json
from edgeoff.wire.errors import DecodeError, StoreError, TopicError
from edgeoff.wire.messages import DOWN_MODEL, Heartbeat, Prediction, SiteStatus
from edgeoff.wire.mqtt import Connected, Disconnected, Message, MqttClient, MqttEvent
from edgeoff.wire.settings import DaemonSettings
from prediction_worker.availability_trace import (
    DEFAULT_MAX_WINDOWS,
    DEFAULT_MIN_WINDOWS,
    DEFAULT_REFIT_EVERY,
    DEFAULT_TASK_S,
    DEFAULT_WINDOW_S,
    SitePredictor,
    SiteTrace,
    seed_model,
    seed_windows,
)
from prediction_worker.detector import (
    DEFAULT_PHI_MIN_STD_S,
    DEFAULT_PHI_PAUSE_S,
    DEFAULT_PHI_THRESHOLD,
    DEFAULT_PHI_WINDOW,
    Detector,
    FixedTimeoutDetector,
    PhiAccrualDetector,
    Shard,
    Verdict,
)
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


class WorkerSettings(DaemonSettings, OpsSettings):
    """Settings of a prediction worker: environment `EDGEOFF_WORKER_*` (`EDGEOFF_WORKER_BROKER__HOST`)."""

    model_config = SettingsConfigDict(env_prefix="EDGEOFF_WORKER_")

    worker_id: Id = "worker-0"
    detector: Literal["fixed", "phi"] = "fixed"
    heartbeat_s: Annotated[float, Field(gt=0)] | None = None  # None: the scenario's heartbeat interval
    missed_heartbeats: Annotated[int, Field(ge=1)] | None = None  # None: the scenario's (10)
    phi_threshold: Annotated[float, Field(gt=0)] = DEFAULT_PHI_THRESHOLD
    phi_window: Annotated[int, Field(ge=2)] = DEFAULT_PHI_WINDOW
    phi_min_std_s: Annotated[float, Field(gt=0)] = DEFAULT_PHI_MIN_STD_S
    phi_pause_s: Annotated[float, Field(ge=0)] = DEFAULT_PHI_PAUSE_S
    poll_s: Annotated[float, Field(gt=0)] = 0.025  # detector polling: adds at most this to detection time
    window_s: Annotated[float, Field(gt=0)] = DEFAULT_WINDOW_S
    window_trace_h: Annotated[float, Field(gt=0)] = 24.0  # trace hours one window stands for (mttf model)
    max_windows: Annotated[int, Field(ge=2)] = DEFAULT_MAX_WINDOWS
    min_windows: Annotated[int, Field(ge=2)] = DEFAULT_MIN_WINDOWS
    refit_every: Annotated[int, Field(ge=1)] = DEFAULT_REFIT_EVERY
    belief_task_s: Annotated[float, Field(ge=0)] = DEFAULT_TASK_S  # horizon of the belief forecaster
    epsilon: Annotated[float, Field(ge=0, lt=1)] = 0.01  # smaller forecast moves are not published
    max_verdicts: Annotated[int, Field(ge=1)] = 1000  # verdicts kept per site in Redis
    shard: str = "0/1"
    shared: bool = False
    share_group: Id = "workers"
    scenario: Path | None = None  # None: the paper's scenario
    dataset: str | None = None  # seed each site's history from its LANL node in this dataset
    stats_s: Annotated[float, Field(gt=0)] = 2.0  # how often counters are written to Redis

    @field_validator("shard")
    @classmethod
    def _shard_valid(cls, value: str) -> str:
        return str(Shard.parse(value))

    @property
    def shard_spec(self) -> Shard:
        return Shard.parse(self.shard)


# ---------------------------------------------------------------------- the worker


@dataclass(frozen=True)
class Seed:
    """A site's LANL node: its daily history seeds the availability series."""

    node: str
    trace: NodeTrace


@dataclass
class _SiteView:
    trace: SiteTrace
    predictor: SitePredictor
    published: Prediction | None = None
    dirty: bool = False  # a change could not be stored: retried at the next poll


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


class PredictionWorker:
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

    def _view(self, site: str) -> _SiteView:
        view = self._views.get(site)
        if view is not None:
            return view
        seed = self.seeds.get(site)
        history: list[float] = [] if seed is None else [float(v) for v in seed_windows(seed.trace)]
        try:
            history += self.store.windows(site, self.settings.max_windows)
        except StoreError as exc:
            log.warning("worker: cannot restore the windows of %s: %s", site, exc)
        view = _SiteView(
            trace=SiteTrace(
                window_s=self.settings.window_s, max_windows=self.settings.max_windows, history=history
            ),
            predictor=SitePredictor(
                seed_node=seed.node if seed is not None else None,
                seed=seed_model(seed.trace) if seed is not None else None,
                window_h=self.settings.window_trace_h,
                min_windows=self.settings.min_windows,
                refit_every=self.settings.refit_every,
                task_windows=self.settings.belief_task_s / self.settings.window_s,
            ),
        )
        self._views[site] = view
        return view

    def _on_verdict(self, verdict: Verdict) -> None:
        view = self._view(verdict.site)
        closed = view.trace.record(verdict.up, verdict.at)
        if closed:
            self._windows_closed(verdict.site, view, closed)
        self.counters.incr(f"verdicts.{'up' if verdict.up else 'down'}")
        log.info(
            "worker: site %s %s (session %d, %s)",
            verdict.site,
            "up" if verdict.up else "DOWN",
            verdict.session,
            verdict.reason,
        )
        record = {
            "up": verdict.up,
            "session": verdict.session,
            "reason": verdict.reason,
            "ts": self.wall_clock() - (self.clock() - verdict.at),
            "worker": self.settings.worker_id,
        }
        try:
            self.store.append_verdict(verdict.site, record, self.settings.max_verdicts)
        except StoreError as exc:
            self.counters.incr("store_errors")
            log.error("worker: cannot store a verdict of %s: %s", verdict.site, exc)
        self._update(verdict.site, view)

    def _windows_closed(self, site: str, view: _SiteView, closed: int) -> None:
        forecast = view.published  # the forecast of the next window, made before these windows closed
        windows = view.trace.windows
        if forecast is not None and forecast.model != DOWN_MODEL and len(windows) >= closed:
            actual = windows[len(windows) - closed]  # the first window closed: the one that was forecast
            self._prediction_error.labels(site=site).observe(abs(forecast.availability - actual))
        view.predictor.windows_closed(closed)
        for value in list(view.trace.windows)[-min(closed, len(view.trace.windows)) :]:
            try:
                self.store.append_window(site, value, self.settings.max_windows)
            except StoreError as exc:
                self.counters.incr("store_errors")
                log.error("worker: cannot store a window of %s: %s", site, exc)
                return

    def _update(self, site: str, view: _SiteView) -> None:
        """Publish the site's prediction when it changed (verdict, or forecast by more than epsilon)."""
        up = view.trace.up
        if up is None:
            return
        error_mae: float | None = None
        if up:
            forecast = view.predictor.forecast(view.trace.series())
            availability, model, error_mae = forecast.availability, forecast.model, forecast.error_mae
        else:
            availability, model = 0.0, DOWN_MODEL
        last = view.published
        changed = (
            last is None
            or (last.model == DOWN_MODEL) != (model == DOWN_MODEL)
            or abs(last.availability - availability) > self.settings.epsilon
        )
        if not (changed or view.dirty):
            return
        ts = self.wall_clock()
        try:
            version = self.store.write_prediction(
                site, availability, model, ts, self.settings.worker_id, error_mae
            )
        except StoreError as exc:
            view.dirty = True
            self.counters.incr("store_errors")
            log.error("worker: cannot store the prediction of %s (retried): %s", site, exc)
            return
        view.dirty = False
        prediction = Prediction(
            site=site, availability=availability, version=version, model=model, ts=ts, error_mae=error_mae
        )
        view.published = prediction
        self._publish(prediction)

    def _publish(self, prediction: Prediction) -> None:
        info = self.mqtt.publish(
            topics.prediction(prediction.site),
            encode_json(prediction),
            qos=topics.QOS_AT_LEAST_ONCE,
            retain=True,
        )
        if info is None:
            self.counters.incr("predictions.not_published")  # re-published from Redis on reconnect
            return
        self.counters.incr("predictions.published")
        self._availability.labels(site=prediction.site).set(prediction.availability)
        log.info(
            "worker: prediction %s = %.4f (%s, v%d)",
            prediction.site,
            prediction.availability,
            prediction.model,
            prediction.version,
        )

    def _resync(self) -> None:
        """After a reconnect: each site's value of record from Redis, re-published retained."""
        for site, view in self._views.items():
            try:
                record = self.store.read_prediction(site)
            except StoreError as exc:
                self.counters.incr("store_errors")
                log.error("worker: cannot re-read the prediction of %s: %s", site, exc)
                continue
            if record is None:
                view.dirty = True
                continue
            view.published = record
            self._publish(record)
        self.counters.incr("resyncs")

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
    parser = argparse.ArgumentParser(
        prog="edgeoff-worker",
        description="Run an edgeoff prediction worker: failure detector, availability trace and forecast "
        "per site (MQTT + Redis).",
        epilog="Every option can also come from the environment (EDGEOFF_WORKER_DETECTOR, "
        "EDGEOFF_WORKER_BROKER__HOST, EDGEOFF_WORKER_REDIS__URL, ...) or a settings file of KEY=value lines; "
        "options on the command line win.",
    )
    parser.add_argument("--worker-id", help="id of this worker (default worker-0)")
    parser.add_argument("--detector", choices=("fixed", "phi"), help="failure detector (default fixed)")
    parser.add_argument("--shard", help="i/n: handle the sites whose stable hash mod n is i (default 0/1)")
    parser.add_argument(
        "--shared", action="store_true", default=None, help="subscribe through $share/{group}/..."
    )
    parser.add_argument("--window-s", type=float, help="availability window, wall seconds (default 60)")
    parser.add_argument("--scenario", type=Path, help="scenario TOML (default: the paper's)")
    parser.add_argument("--dataset", help="seed each site's history from its LANL node, e.g. DS1")
    add_ops_arguments(parser)
    return parser


def build_worker(
    settings: WorkerSettings, stop: threading.Event, ops: Operations | None = None
) -> PredictionWorker:
    """The worker for `settings`: scenario (heartbeat interval, dataset seeds), detector and Redis store."""
    scenario = load_scenario(settings.scenario)
    heartbeat_s = settings.heartbeat_s or scenario.detection.heartbeat_ms / 1000.0
    missed = settings.missed_heartbeats or scenario.detection.missed_heartbeats
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
