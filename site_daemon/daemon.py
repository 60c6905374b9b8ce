"""The site daemon: one edge or cloud site on the live system.

    settings -> scenario and site -> Redis store -> MQTT client -> serve -> shut down on SIGTERM/SIGINT

One thread (the caller of :meth:`SiteDaemon.serve`) owns all state and drives the MQTT connection itself
(`MqttClient` in inline mode: it waits in `poll`, which reads the socket, runs paho's callbacks and
reconnects with backoff; no network thread, so no thread hand-off per message). paho's callbacks and the
task worker threads only put events on its inbox (a worker also wakes `poll`); it publishes heartbeats on
schedule, claims and dispatches tasks,
publishes results, and, with failure injection, crashes and recovers the site on the Markov chain's
schedule. Every connection gets a new session number from Redis (INCR), carried by its online status and
by its Last Will, so a late will of an old session cannot be mistaken for the current one.

The task path is built for throughput: the loop takes every event waiting in the inbox (up to MAX_BATCH),
claims the task requests among them in one Redis round trip, and runs a task whose outcome needs no time
(a zero-cost emulated task, one the site has no memory for) on its own thread, claimed and completed in
the same atomic Redis step, instead of handing it to a worker thread and back. It does so only while no
task is in the worker pool, so tasks still run in the order they arrived.
"""

from __future__ import annotations

import argparse
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from edgeoff.cost import CostModel
from edgeoff.errors import ScenarioError
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
from edgeoff.scenario import Scenario, Site, load_scenario
from edgeoff.traces import load_node_table
from edgeoff.wire import topics
from edgeoff.wire.codec import decode_json, decode_msgpack, encode_json, encode_msgpack
from edgeoff.wire.errors import DecodeError, StoreError, TopicError
from edgeoff.wire.messages import Heartbeat, SiteProfile, SiteStatus, TaskRequest, TaskResult
from edgeoff.wire.mqtt import Connected, Disconnected, Message, MqttClient, MqttEvent, Will
from edgeoff.wire.settings import DaemonSettings
from edgeoff.wire.store import Claim, TaskStore
from site_daemon.execution import (
    DEFAULT_HANDLERS,
    HandlerRegistry,
    Outcome,
    execute,
    execution_time_s,
    instant_outcome,
)
from site_daemon.failure_injection import Period, failure_model_for_site, periods

__all__ = ["EXIT_CONFIG", "SiteDaemon", "SiteSettings", "TaskFinished", "main"]

log = logging.getLogger("edgeoff.site")

# task execution times range from milliseconds (small MI on a cloud site) to minutes (large MI on an ED)
TASK_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
KEEPALIVE_GRACE = 1.5  # Mosquitto drops a client after 1.5 x its keepalive without a packet
MAX_BATCH = 64  # events taken from the inbox per pass; their task requests are claimed in one round trip


class SiteSettings(DaemonSettings, OpsSettings):
    """Settings of one site daemon: environment `EDGEOFF_SITE_*` (nested: `EDGEOFF_SITE_BROKER__HOST`)."""

    model_config = SettingsConfigDict(env_prefix="EDGEOFF_SITE_")

    site: Id
    scenario: Path | None = None  # None: the paper's scenario
    dataset: str | None = None  # dataset configuration mapping sites to LANL nodes (failure injection)
    inject_failures: bool = False
    # trace seconds per wall second; None: the scenario's [simulation] time_compression (3600 by default)
    time_compression: Annotated[float, Field(gt=0)] | None = None
    # How an injected failure looks from outside. "hang" (a node that lost power): silence (no heartbeats,
    # tasks swallowed) while the link seems alive; after 1.5 x keepalive, when Mosquitto would give up on a
    # silent client, the link drops and the will fires. The heartbeat detector has to notice first. "crash"
    # (a killed process on a live host): the link drops and the will fires at once.
    failure_mode: Literal["hang", "crash"] = "hang"
    seed: int | None = None  # failure injection RNG; None: fresh entropy
    execution_scale: Annotated[float, Field(ge=0)] = 1.0  # wall seconds per emulated second of computation
    max_concurrent_tasks: Annotated[int, Field(ge=1)] = 1  # a site computes one task at a time by default
    claim_margin_s: Annotated[float, Field(ge=0)] = 5.0  # lease = expected run time + deadline + this margin
    publish_timeout_s: Annotated[float, Field(gt=0)] = 2.0  # wait for the offline status before disconnecting


@dataclass(frozen=True)
class TaskFinished:
    """A worker thread finished (or abandoned: outcome None) a task claimed in `session`/`generation`."""

    request: TaskRequest
    session: int
    generation: int
    outcome: Outcome | None


SiteEvent = MqttEvent | TaskFinished


@dataclass(frozen=True)
class _Accepted:
    """A decoded task request for this site, waiting to be claimed with the others of its batch."""

    request: TaskRequest
    emulated_s: float
    lease_ms: int
    session: int


class SiteDaemon:
    """Serves one site until `stop` is set."""

    def __init__(
        self,
        *,
        settings: SiteSettings,
        site: Site,
        heartbeat_s: float,
        compute_s: Callable[[float], float],
        store: TaskStore,
        stop: threading.Event,
        failures: Iterator[Period] | None = None,
        handlers: HandlerRegistry = DEFAULT_HANDLERS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        ops: Operations | None = None,
    ) -> None:
        self.settings = settings
        self.site = site
        self.heartbeat_s = heartbeat_s
        self.compute_s = compute_s  # MI -> emulated seconds on this site
        self.store = store
        self.stop = stop
        self.failures = failures
        self.handlers = handlers
        self.clock = clock
        self.wall_clock = wall_clock
        self.inbox: queue.Queue[SiteEvent] = queue.Queue()
        self.mqtt = MqttClient(
            settings=settings.broker,
            client_id=f"edgeoff-site-{site.id}",
            inbox=self.inbox,
            will_factory=self._make_will,
            max_message_bytes=settings.max_message_bytes,
            inline_loop=True,  # this thread drives the network: see _step
        )
        self.counters = self.mqtt.counters
        self.ops = ops if ops is not None else Operations(name=f"site={site.id}")
        self.ops.watch(self.counters)
        self._task_seconds = self.ops.metrics.histogram(
            "task_seconds", "Execution time of the tasks this site ran.", TASK_SECONDS_BUCKETS, ["ok"]
        )
        self._task_seconds_by_ok = {
            ok: self._task_seconds.labels(ok="true" if ok else "false") for ok in (True, False)
        }
        self._tasks_topic = topics.site_topic(site.id, "tasks")
        self._status_topic = topics.site_topic(site.id, "status")
        self._pool = ThreadPoolExecutor(settings.max_concurrent_tasks, thread_name_prefix=f"task-{site.id}")
        self._in_pool = 0  # tasks handed to the pool whose TaskFinished is not handled yet
        self._session: int | None = None  # session of the live connection; None while disconnected
        self._up = True  # False while an injected failure lasts
        self._generation = 0  # grows with every injected crash: results of older generations are abandoned
        self._abort = threading.Event()  # set to interrupt the running tasks of the current generation
        self._seq = 0
        self._next_heartbeat = 0.0
        self._next_phase_at: float | None = None
        self._link_expires_at: float | None = None  # a hung node's link: when the broker's keepalive runs out
        # results finished while disconnected, with their agent: published on the next connection
        self._unsent: list[tuple[str, TaskResult]] = []

    # ------------------------------------------------------------------ the loop

    def serve(self) -> None:
        """Connect, serve until `stop` is set, then shut down cleanly (offline status, disconnect)."""
        self.mqtt.subscribe(self._tasks_topic, qos=topics.QOS_AT_LEAST_ONCE)
        self.mqtt.subscribe(
            self._status_topic, qos=topics.QOS_AT_LEAST_ONCE
        )  # to repair a stale retained status
        if self.failures is not None:
            self._next_phase_at = self.clock() + next(self.failures).duration_s  # the chain starts up
        self.mqtt.start()
        log.info("site %s (%s, %g MIPS) serving", self.site.id, self.site.type, self.site.mips)
        try:
            while not self.stop.is_set():
                self._step()
                self.ops.tick(connected=self._session is not None)
        finally:
            self._shutdown()

    def _step(self) -> None:
        now = self.clock()
        deadlines = [
            d for d in (self._heartbeat_due(), self._next_phase_at, self._link_expires_at) if d is not None
        ]
        timeout = min([MAX_IDLE_WAIT_S, *(d - now for d in deadlines)])
        # network traffic and paho's callbacks (which fill the inbox) happen in poll, on this thread
        self.mqtt.poll(0.0 if self.inbox.qsize() else max(timeout, 0.0))
        try:
            event = self.inbox.get_nowait()
        except queue.Empty:
            event = None
        if event is not None:
            self._handle_batch(self._drain(event))
        now = self.clock()
        if self._heartbeat_due() is not None and now >= self._next_heartbeat:
            self._publish_heartbeat(now)
        if self._next_phase_at is not None and now >= self._next_phase_at:
            self._next_phase()
        if self._link_expires_at is not None and now >= self._link_expires_at:
            self._link_expires_at = None
            self.mqtt.pause(with_will=True)  # the broker gives up on the silent link and fires the will

    def _drain(self, first: SiteEvent) -> list[SiteEvent]:
        """`first` and whatever else is waiting in the inbox now (at most MAX_BATCH events)."""
        events = [first]
        while len(events) < MAX_BATCH:
            try:
                events.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        return events

    def _handle_batch(self, events: Sequence[SiteEvent]) -> None:
        """Handle events in their order; consecutive task requests are claimed together."""
        accepted: list[_Accepted] = []
        for event in events:
            if isinstance(event, Message):
                task = self._on_message(event)
                if task is not None:
                    accepted.append(task)
                continue
            self._claim_and_dispatch(accepted)  # before any other event: it may change the session
            accepted = []
            self._handle(event)
        self._claim_and_dispatch(accepted)

    def _heartbeat_due(self) -> float | None:
        return self._next_heartbeat if (self._up and self._session is not None) else None

    def _handle(self, event: SiteEvent) -> None:
        match event:
            case Message():
                self._claim_and_dispatch([task] if (task := self._on_message(event)) is not None else [])
            case TaskFinished():
                self._on_task_finished(event)
            case Connected():
                self._on_connected(event)
            case Disconnected():
                if self._session is not None:
                    log.warning(
                        "site %s: disconnected from the broker (reason %d)", self.site.id, event.reason_code
                    )
                self._session = None

    # ------------------------------------------------------------------ connection and status

    def _status(self, state: Literal["online", "offline"], session: int) -> bytes:
        return encode_json(SiteStatus(state=state, session=session, ts=self.wall_clock()))

    def _make_will(self) -> Will:
        """Runs (in the daemon's thread, from `poll`) before every connection: a new session and its will."""
        session = self.store.next_session(self.site.id)
        return Will(topic=self._status_topic, payload=self._status("offline", session), qos=1, retain=True)

    def _on_connected(self, event: Connected) -> None:
        if event.will is None or not self._up:  # a connection made just before an injected crash
            return
        session = decode_json(SiteStatus, event.will.payload).session
        self._session = session
        self._seq = 0
        self._next_heartbeat = self.clock()
        profile = SiteProfile(
            site=self.site.id,
            type=self.site.type,
            mips=self.site.mips,
            memory_gb=self.site.memory_gb,
            storage_gb=self.site.storage_gb,
        )
        self.mqtt.publish(
            self._status_topic, self._status("online", session), qos=topics.QOS_AT_LEAST_ONCE, retain=True
        )
        self.mqtt.publish(
            topics.site_topic(self.site.id, "profile"),
            encode_json(profile),
            qos=topics.QOS_AT_LEAST_ONCE,
            retain=True,
        )
        log.info("site %s: online, session %d", self.site.id, session)
        unsent, self._unsent = self._unsent, []
        for agent, result in unsent:
            self._publish_result(agent, result)

    def _on_own_status(self, message: Message) -> None:
        """Repair the retained status when a late will of an older session overwrote the current online.

        A message flagged retained is the value the broker held when we subscribed, which predates our
        online publish (sent after the SUBSCRIBE on the same connection): our online replaces it anyway.
        A live (non-retained) delivery of an offline with an older session is a late will: repair it.
        """
        if message.retain:
            return
        try:
            status = decode_json(SiteStatus, message.payload, max_bytes=self.settings.max_message_bytes)
        except DecodeError as exc:
            status = None
            log.warning("site %s: unreadable status on its own topic: %s", self.site.id, exc)
        session = self._session
        if session is None or not self._up or (status is not None and status.state == "online"):
            return
        if status is not None and status.session == session:
            return  # our own offline (shutdown) or our own will: nothing to repair
        self.counters.incr("status_repaired")
        log.warning(
            "site %s: stale status %s on its topic; re-publishing online (session %d)",
            self.site.id,
            status,
            session,
        )
        self.mqtt.publish(
            self._status_topic, self._status("online", session), qos=topics.QOS_AT_LEAST_ONCE, retain=True
        )

    def _publish_heartbeat(self, now: float) -> None:
        assert self._session is not None
        beat = Heartbeat(session=self._session, seq=self._seq, mono_ts=now)
        self.mqtt.publish(
            topics.site_topic(self.site.id, "heartbeat"), encode_msgpack(beat), qos=topics.QOS_AT_MOST_ONCE
        )
        self.counters.incr("heartbeats_sent")
        self._seq += 1
        self._next_heartbeat += self.heartbeat_s
        if self._next_heartbeat < now:  # fell behind (a long stall): keep the cadence, do not burst
            self._next_heartbeat = now + self.heartbeat_s

    # ------------------------------------------------------------------ tasks

    def _drop(self, reason: str, detail: str) -> None:
        self.counters.incr(f"tasks_dropped.{reason}")
        log.warning("site %s: dropped a task message (%s): %s", self.site.id, reason, detail)

    def _on_message(self, message: Message) -> _Accepted | None:
        """A task request to claim, or None (our own status, or dropped)."""
        if message.topic != self._tasks_topic:  # the tasks topic is valid: no need to parse it every time
            try:
                parsed = topics.parse_topic(message.topic)
            except TopicError as exc:
                self._drop("topic", str(exc))
                return None
            if parsed.kind == "status" and parsed.id == self.site.id:
                self._on_own_status(message)
                return None
            self._drop("topic", f"unexpected topic {message.topic[:80]!r}")
            return None
        session = self._session
        if not self._up or session is None:
            self._drop("not_serving", "the site is down or disconnected")
            return None
        try:
            request = decode_msgpack(TaskRequest, message.payload, max_bytes=self.settings.max_message_bytes)
        except DecodeError as exc:
            self._drop("decode", str(exc))
            return None
        emulated_s = self.compute_s(request.mi) * self.settings.execution_scale
        lease_ms = max(1, int((emulated_s + request.deadline_s + self.settings.claim_margin_s) * 1000))
        return _Accepted(request=request, emulated_s=emulated_s, lease_ms=lease_ms, session=session)

    def _claim_and_dispatch(self, accepted: Sequence[_Accepted]) -> None:
        """Claim `accepted` in one Redis round trip; run the instant ones here, hand the others to the pool.

        A task runs here only while the pool is empty and no earlier task of the batch went to it (tasks
        run in arrival order, one at a time by default); its claim and its result are one atomic step.
        """
        if not accepted:
            return
        claims: list[Claim] = []
        instant: list[tuple[TaskResult, bytes] | None] = []
        pool_busy = self._in_pool > 0
        for task in accepted:
            request = task.request
            outcome = None
            if not pool_busy:
                outcome = instant_outcome(request, emulated_s=task.emulated_s, memory_gb=self.site.memory_gb)
            if outcome is None:
                pool_busy = True
                claims.append(Claim(request.task_id, request.attempt, task.lease_ms))
                instant.append(None)
                continue
            result = self._result(request, task.session, outcome)
            payload = encode_msgpack(result)
            claims.append(Claim(request.task_id, request.attempt, task.lease_ms, result=payload))
            instant.append((result, payload))
        try:
            claimed = self.store.claim_tasks(self.site.id, claims)
        except StoreError as exc:
            self.counters.incr("tasks_dropped.store", len(accepted))
            log.warning("site %s: dropped %d task message(s) (store): %s", self.site.id, len(accepted), exc)
            return
        for task, done, ok in zip(accepted, instant, claimed, strict=True):
            request = task.request
            if not ok:
                self.counters.incr("tasks_duplicate")
                log.info(
                    "site %s: task %s attempt %d already claimed or done: skipped",
                    self.site.id,
                    request.task_id,
                    request.attempt,
                )
                continue
            self.counters.incr("tasks_claimed")
            if done is None:
                self._in_pool += 1
                self._pool.submit(
                    self._run, request, task.emulated_s, task.session, self._generation, self._abort
                )
                continue
            result, payload = done
            self._finished(request.agent, result, payload)

    def _run(
        self, request: TaskRequest, emulated_s: float, session: int, generation: int, abort: threading.Event
    ) -> None:
        """Worker thread: run the task and hand the outcome back to the daemon's thread."""
        try:
            outcome = execute(
                request,
                emulated_s=emulated_s,
                memory_gb=self.site.memory_gb,
                handlers=self.handlers,
                wait=abort.wait,
                clock=self.clock,
            )
        except Exception as exc:  # a handler bug fails its task, never the daemon
            log.exception("site %s: task %s crashed its handler", self.site.id, request.task_id)
            outcome = Outcome(ok=False, exec_s=0.0, error=f"handler crashed: {type(exc).__name__}")
        self.inbox.put_nowait(
            TaskFinished(request=request, session=session, generation=generation, outcome=outcome)
        )
        self.mqtt.wake()  # the daemon's thread may be waiting in poll()

    def _result(self, request: TaskRequest, session: int, outcome: Outcome) -> TaskResult:
        return TaskResult(
            task_id=request.task_id,
            attempt=request.attempt,
            site=self.site.id,
            session=session,
            ok=outcome.ok,
            exec_s=outcome.exec_s,
            error=outcome.error,
            output=outcome.output,
        )

    def _on_task_finished(self, event: TaskFinished) -> None:
        self._in_pool -= 1
        if event.outcome is None or event.generation != self._generation or not self._up:
            self.counters.incr("tasks_abandoned")
            return
        result = self._result(event.request, event.session, event.outcome)
        try:
            self.store.complete_task(result)
        except StoreError as exc:  # the published result still reaches the agent
            self.counters.incr("results_not_stored")
            log.error("site %s: cannot store result of %s: %s", self.site.id, result.task_id, exc)
        self._finished(event.request.agent, result, None)

    def _finished(self, agent: str, result: TaskResult, payload: bytes | None) -> None:
        self.counters.incr("tasks_done")
        self._task_seconds_by_ok[result.ok].observe(result.exec_s)
        self._publish_result(agent, result, payload)

    def _publish_result(self, agent: str, result: TaskResult, payload: bytes | None = None) -> None:
        if self._session is None:
            self._unsent.append((agent, result))
            return
        data = encode_msgpack(result) if payload is None else payload
        if self.mqtt.publish(topics.results(agent), data, qos=topics.QOS_AT_LEAST_ONCE) is None:
            self._unsent.append((agent, result))

    # ------------------------------------------------------------------ failure injection

    def _next_phase(self) -> None:
        assert self.failures is not None
        assert self._next_phase_at is not None
        phase = next(self.failures)
        self._next_phase_at += phase.duration_s
        if phase.state == "down":
            self._crash(phase.duration_s)
        else:
            self._recover()

    def _crash(self, duration_s: float) -> None:
        """Behave like a failed node: silence, tasks abandoned; the will fires when the link is given up
        (at once for `crash`, after 1.5 x keepalive for `hang`)."""
        self.counters.incr("failures_injected")
        log.warning(
            "site %s: injected failure for %.3f s (session %s)", self.site.id, duration_s, self._session
        )
        self._up = False
        self._generation += 1
        self._abort.set()
        self._abort = threading.Event()
        self._session = None
        self._unsent.clear()
        if self.settings.failure_mode == "crash":
            self.mqtt.pause(with_will=True)
        else:
            self._link_expires_at = self.clock() + KEEPALIVE_GRACE * self.settings.broker.keepalive_s

    def _recover(self) -> None:
        log.warning("site %s: recovering from the injected failure", self.site.id)
        self._up = True
        if self._link_expires_at is not None:
            # Back before the broker noticed: a rebooted node's old link is simply gone (no will: the new
            # session's online status follows at once), then it connects again with a new session.
            self._link_expires_at = None
            self.mqtt.pause(with_will=False)
        self.mqtt.resume()

    # ------------------------------------------------------------------ shutdown

    def _shutdown(self) -> None:
        self.ops.stopping()
        self._abort.set()
        session = self._session
        if session is not None and self._up:
            info = self.mqtt.publish(self._status_topic, self._status("offline", session), qos=1, retain=True)
            if not self.mqtt.wait_published(info, self.settings.publish_timeout_s):
                log.warning(
                    "site %s: the offline status was not acknowledged; the will covers it", self.site.id
                )
        self.mqtt.stop(with_will=False)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.store.close()
        log.info("site %s: stopped; counters %s", self.site.id, self.counters.snapshot())


# ---------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeoff-site",
        description="Run one edgeoff site: status, profile, heartbeats, task execution (MQTT + Redis).",
        epilog="Every option can also come from the environment (EDGEOFF_SITE_SITE, "
        "EDGEOFF_SITE_BROKER__HOST, EDGEOFF_SITE_REDIS__URL, ...) or a settings file of KEY=value lines; "
        "options on the command line win.",
    )
    parser.add_argument("--site", help="site id in the scenario")
    parser.add_argument("--scenario", type=Path, help="scenario TOML (default: the paper's)")
    parser.add_argument("--dataset", help="dataset configuration for failure injection, e.g. DS1")
    parser.add_argument(
        "--inject-failures", action="store_true", default=None, help="follow the node's Markov chain"
    )
    parser.add_argument("--time-compression", type=float, help="trace seconds per wall second (default 3600)")
    parser.add_argument(
        "--failure-mode",
        choices=("hang", "crash"),
        help="injected failures go silent until the broker's keepalive expires (hang, default) "
        "or drop the link at once (crash)",
    )
    parser.add_argument("--seed", type=int, help="seed of the failure injection RNG")
    add_ops_arguments(parser)
    return parser


def _failures(settings: SiteSettings, scenario: Scenario) -> Iterator[Period] | None:
    if not settings.inject_failures:
        return None
    if settings.dataset is None:
        raise ScenarioError("--inject-failures needs --dataset (the dataset maps sites to LANL nodes)")
    compression = settings.time_compression or scenario.simulation.time_compression
    model = failure_model_for_site(scenario, settings.dataset, settings.site, load_node_table(), compression)
    if model is None:
        raise ScenarioError(f"dataset {settings.dataset} does not map site {settings.site!r} to a LANL node")
    log.info(
        "site %s: failure injection: mean up %.2f s, mean down %.2f s (compression %g)",
        settings.site,
        model.mean_up_s,
        model.mean_down_s,
        compression,
    )
    return periods(model, np.random.default_rng(settings.seed))


def build_daemon(settings: SiteSettings, stop: threading.Event, ops: Operations | None = None) -> SiteDaemon:
    """The daemon for `settings`: scenario, site, cost model, failure chain and Redis store."""
    scenario = load_scenario(settings.scenario)
    if settings.site not in scenario.site_ids:
        raise ScenarioError(
            f"scenario {scenario.name!r} has no site {settings.site!r} (has: {', '.join(scenario.site_ids)})"
        )
    index = scenario.site_ids.index(settings.site)
    model = CostModel.from_scenario(scenario)
    return SiteDaemon(
        settings=settings,
        site=scenario.sites[index],
        heartbeat_s=scenario.detection.heartbeat_ms / 1000.0,
        compute_s=lambda mi: execution_time_s(model, index, mi),
        store=TaskStore.from_settings(settings.redis),
        stop=stop,
        failures=_failures(settings, scenario),
        ops=ops,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`edgeoff-site`: settings, logging, build, serve until SIGTERM/SIGINT, exit 0 (2: bad settings)."""
    return run_daemon(
        prog="edgeoff-site",
        argv=argv,
        parser=build_parser(),
        settings_from_args=functools.partial(settings_from_args, SiteSettings),
        build=build_daemon,
        label=lambda settings: {"site": settings.site},
    )
