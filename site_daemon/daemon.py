"""The site daemon: one edge or cloud site on the live system.

    settings -> scenario and site -> Redis store -> MQTT client -> serve -> shut down on SIGTERM/SIGINT

One thread (the caller of :meth:`SiteDaemon.serve`) owns all state and drives the MQTT connection itself
(`MqttClient` in inline mode: it waits in `poll`, which reads the socket, runs paho's callbacks and
reconnects with backoff; no network thread, so no thread hand-off per message). paho's callbacks and the
task worker threads only put events on its inbox (a worker also wakes `poll`). Heartbeats have a thread
of their own (site_daemon.heartbeats), so a stalled Redis never silences them. The loop claims and
dispatches tasks (site_daemon.tasks), publishes results, and, with failure injection, crashes and
recovers the site on the Markov chain's schedule. Every connection gets a new session number from Redis
(INCR), carried by its online status and by its Last Will, so a late will of an old session cannot be
mistaken for the current one.

The task path is built for throughput: the loop takes every event waiting in the inbox (up to MAX_BATCH),
claims the task requests among them in one Redis round trip, and runs a task whose outcome needs no time
(a zero-cost emulated task, one the site has no memory for) on its own thread, claimed and completed in
the same atomic Redis step, instead of handing it to a worker thread and back. It does so only while no
task is queued or in the worker pool, so tasks still run in the order they arrived.
"""

from __future__ import annotations

import argparse
import functools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from edgeoff.cost import CostModel
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
from edgeoff.scenario import Scenario, Site, load_scenario
from edgeoff.traces import load_node_table
from edgeoff.wire import topics
from edgeoff.wire.messages import TaskResult
from edgeoff.wire.mqtt import Connected, Disconnected, Inbox, Message, MqttClient
from edgeoff.wire.sessions import SessionBound
from edgeoff.wire.store import TaskStore
from site_daemon.execution import DEFAULT_HANDLERS, HandlerRegistry, execution_time_s
from site_daemon.failure_injection import Period, failure_model_for_site, periods
from site_daemon.heartbeats import HeartbeatSender
from site_daemon.outage import InjectedFailures
from site_daemon.settings import SiteSettings
from site_daemon.status import StatusKeeping
from site_daemon.tasks import SiteEvent, TaskClaims, TaskFinished, _Accepted

__all__ = ["EXIT_CONFIG", "SiteDaemon", "SiteSettings", "TaskFinished", "main"]

log = logging.getLogger("edgeoff.site")

# task execution times range from milliseconds (small MI on a cloud site) to minutes (large MI on an ED)
TASK_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
MAX_BATCH = 64  # events taken from the inbox per pass; their task requests are claimed in one round trip


class SiteDaemon(TaskClaims, StatusKeeping, InjectedFailures):
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
        self.inbox: Inbox[SiteEvent] = Inbox()  # bounded in messages and in payload bytes
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
        self._queue: deque[_Accepted] = deque()  # requests waiting for the pool (bounded: max_queued_tasks)
        self._heartbeats = HeartbeatSender(
            mqtt=self.mqtt, site=site.id, interval_s=heartbeat_s, counters=self.counters, clock=clock
        )
        self._next_phase_at: float | None = None
        self._link_expires_at: float | None = None  # a hung node's link: when the broker's keepalive runs out
        # results finished while disconnected, with their agent: published on the next connection
        self._unsent: list[tuple[str, TaskResult]] = []
        self._drops = DropLog(log, f"site {site.id}", clock=clock)  # dropped input: rate-limited summaries
        self._quiet = RateLimitedLog(log, clock=clock)  # any other line hostile input could repeat
        self._sessions = SessionBound(store.session, clock=clock)  # sessions Redis gave this site
        self._repair_due: float | None = None
        self._last_repair = -1e9

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
        self._heartbeats.start()
        log.info("site %s (%s, %g MIPS) serving", self.site.id, self.site.type, self.site.mips)
        try:
            while not self.stop.is_set():
                self._step()
                self.ops.tick(connected=self._session is not None)
                self._drops.flush()
        finally:
            self._shutdown()

    def _step(self) -> None:
        now = self.clock()
        deadlines = [
            d for d in (self._next_phase_at, self._link_expires_at, self._repair_due) if d is not None
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
        if self._repair_due is not None:
            self._repair_status()
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
                self._heartbeats.beat_for(None)

    # ------------------------------------------------------------------ shutdown

    def _shutdown(self) -> None:
        self.ops.stopping()
        self._drops.flush(force=True)
        self._abort.set()
        self._heartbeats.stop()
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
    return settings_parser(
        SiteSettings,
        prog="edgeoff-site",
        description="Run one edgeoff site: status, profile, heartbeats, task execution (MQTT + Redis).",
    )


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
