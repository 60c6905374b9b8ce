"""The mobile agent daemon: runs applications over the live sites and explains its decisions.

    settings -> scenario, engine, planner -> MQTT client -> wait for the sites -> run applications
             -> write the results -> shut down (SIGTERM/SIGINT: after the current task)

One thread (the caller of :meth:`MobileAgent.run`) owns all state. paho's callbacks only put events on the
inbox (edgeoff.wire.mqtt); every wait of the agent (emulated transfers, local computation, a remote result)
drains the inbox while it waits, so statuses, predictions and results are handled at once and the policy is
recomputed and published (retained JSON on `agents/{agent}/policy`) whenever a prediction or a status
changes.

Operations (edgeoff.ops, as the site daemon and the prediction worker): `--log-format`, `--metrics-port` and
`--health-file` (`EDGEOFF_AGENT_METRICS_PORT`, ...). Every wait of the agent ticks the operations, so the
health file and the systemd watchdog stay fresh during long waits for a result. Besides the MQTT counters
it counts `policy_recomputations` and `fallbacks.<reason>` (offline, detector_down, deadline, site_error,
not_connected) and observes `edgeoff_task_round_trip_seconds{site,ok}` (request sent to result received).

A remote attempt (mobile_agent.remote): emulated upload (the cost model's transfer time x `time_scale`),
a TaskRequest at QoS 1 to the site's tasks topic, then a wait for its TaskResult until the deadline, the
site going offline, or the detector's `detector:down` prediction; then the engine's next action at once
(Algorithm 2, mobile_agent.tasks), recorded with its reason; on success the emulated download. Local tasks
are emulated on the phone (MI / MIPS x `time_scale`). Events: mobile_agent.events; the retained policy:
mobile_agent.policy; the results record: mobile_agent.record.
"""

from __future__ import annotations

import argparse
import functools
import logging
import secrets
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeoff.cost import CostModel
from edgeoff.engines import get_engine
from edgeoff.errors import EdgeoffError
from edgeoff.files import check_output
from edgeoff.knowledge import chain_means
from edgeoff.ops import (
    EXIT_CONFIG,
    Operations,
    run_daemon,
    settings_from_args,
    settings_parser,
)
from edgeoff.ops.logs import DropLog, RateLimitedLog
from edgeoff.scenario import Scenario, load_scenario
from edgeoff.traces import load_node_table
from edgeoff.wire import topics
from edgeoff.wire.messages import TaskResult
from edgeoff.wire.mqtt import Inbox, MqttClient, MqttEvent
from edgeoff.wire.sessions import SessionBound
from edgeoff.wire.store import TaskStore, redis_client
from mobile_agent.avoidance import AvoidingView
from mobile_agent.dag_plan import DagApplication, start_application
from mobile_agent.events import EventPump
from mobile_agent.meter import TaskMeter, summarise_run
from mobile_agent.planner import (
    Planner,
    PlannerSettings,
    sample_app_run,
)
from mobile_agent.policy import PolicyPublishing
from mobile_agent.record import RunRecord, write_results
from mobile_agent.remote import RemoteAttempts
from mobile_agent.settings import AgentSettings
from mobile_agent.tasks import TaskExecution
from mobile_agent.twin_record import RunRecorder

__all__ = [
    "EXIT_CONFIG",
    "EXIT_NOT_CONNECTED",
    "AgentService",
    "AgentSettings",
    "MobileAgent",
    "NotConnectedError",
    "main",
    "write_results",
]

log = logging.getLogger("edgeoff.agent")

EXIT_NOT_CONNECTED = 1  # the run could not start: no broker, or the broker refused the account


class NotConnectedError(EdgeoffError):
    """The agent never connected to the broker within wait_sites_s, or the broker refused its account."""


STORE_TIMEOUT_S = 0.3  # the agent's Redis calls: a read-back, a fence or a session check, never a wait
# wall seconds from a task request to its result: milliseconds (a cloud site) to minutes (a slow ED)
ROUND_TRIP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class MobileAgent(TaskExecution, RemoteAttempts, EventPump, PolicyPublishing):
    """Runs application runs until done or `stop` is set; `run()` returns the results record."""

    def __init__(
        self,
        *,
        settings: AgentSettings,
        scenario: Scenario,
        planner: Planner,
        stop: threading.Event,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_policy: Callable[[dict[str, Any]], None] | None = None,
        store: TaskStore | None = None,
        ops: Operations | None = None,
        sessions: SessionBound | None = None,
    ) -> None:
        self.settings = settings
        self.scenario = scenario
        self.planner = planner
        self.stop = stop
        self.clock = clock
        self.wall_clock = wall_clock
        self.on_policy = on_policy  # in-process hook (benchmarks): called with each published policy
        # statuses of sessions above a site's counter in Redis are forged: ignored (None: no check)
        self.sessions = sessions
        self._drops = DropLog(log, f"agent {settings.agent}", clock=clock)
        self._quiet = RateLimitedLog(log, clock=clock)
        self.view = AvoidingView(scenario, prior_availability=settings.prior_availability)
        self.store = store
        self._store_down_since: float | None = None
        self.site_ids = scenario.site_ids
        self.mobile = scenario.mobile_index
        self.inbox: Inbox[MqttEvent] = Inbox()
        self.mqtt = MqttClient(
            settings=settings.broker,
            client_id=f"edgeoff-agent-{settings.agent}",
            inbox=self.inbox,
            max_message_bytes=settings.max_message_bytes,
            session_expiry_s=settings.session_expiry_s,  # results sent while we reconnect wait for us
        )
        self.counters = self.mqtt.counters  # the agent counts on the MQTT client's counters
        self.ops = ops if ops is not None else Operations(name=f"agent={settings.agent}")
        self.ops.watch(self.counters)
        self._round_trip = self.ops.metrics.histogram(
            "task_round_trip_seconds",
            "Wall seconds from a task request sent to its result received, by site and outcome.",
            ROUND_TRIP_BUCKETS,
            ["site", "ok"],
        )
        self.rng = np.random.default_rng(settings.seed)
        self._results_topic = topics.agent_results(settings.agent)
        self._policy_topic = topics.agent_policy(settings.agent)
        self._nonce = secrets.token_hex(4)  # task ids unique across runs sharing one Redis
        self._task_seq = 0
        self._sent: dict[tuple[str, int], int] = {}  # attempts awaited -> the site they were sent to
        self._results: dict[tuple[str, int], TaskResult] = {}
        self._accepted_tasks: dict[str, None] = {}
        self._policy_version = 0
        self._policy_dirty = True
        self._policy_body: dict[str, Any] | None = None
        self._last_fallback: dict[str, Any] | None = None
        self._refused: int | None = None
        self._application: DagApplication | None = None
        self.record = RunRecord(meter=TaskMeter(CostModel.from_scenario(scenario), scenario.site_types))
        # what `edgeoff twin` needs to replay a run (mobile_agent.twin_record): opt-in, bounded
        self.recorder = RunRecorder(enabled=settings.record_twin, max_entries=settings.twin_max_entries)

    # ------------------------------------------------------------------ the run

    def run(self) -> dict[str, Any]:
        """Connect, wait for the sites, run the applications, publish the final policy; the results."""
        for topic in (
            topics.all_sites("status"),
            topics.all_sites("profile"),
            f"{topics.PREFIX}/predictions/+",
        ):
            self.mqtt.subscribe(topic, qos=topics.QOS_AT_LEAST_ONCE)
        self.mqtt.subscribe(self._results_topic, qos=topics.QOS_AT_LEAST_ONCE)
        self.mqtt.start()
        log.info(
            "agent %s: engine %s, waiting for the broker and the sites",
            self.settings.agent,
            self.planner.engine.name,
        )
        try:
            started = self.clock()
            self._pump(
                started + self._connect_wait_s(),
                lambda: self.mqtt.connected.is_set() or self._refused is not None,
                interruptible=True,
            )
            if not self.mqtt.connected.is_set() and not self.stop.is_set():
                raise NotConnectedError(self._not_connected())
            self._pump(started + self.settings.wait_sites_s, self._all_sites_online, interruptible=True)
            log.info(
                "agent %s: sites online: %s",
                self.settings.agent,
                ", ".join(self.view.online_sites()) or "none",
            )
            started = self.clock()  # the applications' clock
            while not self.stop.is_set() and self._more_apps(started):
                self._run_app(self.record.apps_started)
            self._publish_policy()
        finally:
            self._shutdown()
        return self.results()

    def _connect_wait_s(self) -> float:
        """How long to wait for the broker at start: the sites' wait, and at least one connect timeout."""
        return max(self.settings.wait_sites_s, self.settings.broker.connect_timeout_s)

    def _not_connected(self) -> str:
        broker = self.settings.broker
        where = f"the broker at {broker.host}:{broker.port}"
        if self._refused is not None:
            account = broker.username or "(anonymous)"
            return f"{where} refused the account {account} (reason code {self._refused})"
        return f"could not connect to {where} in {self._connect_wait_s():g} s"

    def _all_sites_online(self) -> bool:
        return len(self.view.online_sites()) == len(self.site_ids) - 1

    def _more_apps(self, started: float) -> bool:
        s = self.settings
        if s.apps is not None and self.record.apps_started >= s.apps:
            return False
        if s.duration_s is not None and self.clock() - started >= s.duration_s:
            return False
        return s.apps is not None or s.duration_s is not None or not self.stop.is_set()

    def _run_app(self, run: int) -> None:
        self.record.apps_started += 1
        specs = sample_app_run(self.scenario, self.rng)
        self.recorder.app_run(run, self.wall_clock(), specs)
        self._application = start_application(self.planner, specs, self.view)
        site_of: list[int] = []
        for spec in specs:
            if self.stop.is_set():  # SIGTERM: stop after the current task
                return
            measurement = self._run_task(run, spec, site_of)
            self.record.meter.add(measurement)
            self.recorder.task(self.wall_clock(), measurement, self.site_ids)
            if not measurement.completed:
                log.error("agent: app run %d abandoned after task %s could not run", run, spec.name)
                return
            assert measurement.site is not None
            site_of.append(measurement.site)
        self.record.apps_done += 1
        self._publish_policy(progress_only=True)

    # ------------------------------------------------------------------ results and shutdown

    def results(self) -> dict[str, Any]:
        """The results record (mobile_agent.meter) plus the agent's own details."""
        r = self.record
        n = max(r.decisions, 1)
        S = len(self.site_ids)
        usable = r.usable_sum / n if r.usable_sum is not None else np.ones(S)
        believed = r.availability_sum / n if r.availability_sum is not None else np.ones(S)
        record = summarise_run(
            self.scenario,
            self.settings.dataset,
            self.planner.engine.name,
            r.meter,
            site_usable_share=usable,
            believed_availability=believed,
        )
        record.update(
            agent=self.settings.agent,
            apps_started=r.apps_started,
            apps_completed=r.apps_done,
            fallbacks=r.fallback_count,
            fallback_log=r.fallbacks,
            detections=[{"site": d.site, "ts": d.ts, "how": d.how} for d in r.detections],  # the first ones
            detections_count=r.detection_count,
            policy_versions=self._policy_version,
            time_scale=self.settings.time_scale,
            counters=self.counters.snapshot(),
            twin=self.recorder.to_json(),  # None: not recorded (record_twin off)
        )
        return record

    def _shutdown(self) -> None:
        self.ops.stopping()
        self._drops.flush(force=True)
        self.mqtt.stop(with_will=False)
        if self.store is not None:
            self.store.close()
        log.info("agent %s: stopped; counters %s", self.settings.agent, self.counters.snapshot())


# ---------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    return settings_parser(
        AgentSettings,
        prog="edgeoff-agent",
        description="Run the edgeoff mobile agent: applications offloaded to the live sites (MQTT + Redis).",
    )


def build_agent(settings: AgentSettings, stop: threading.Event, ops: Operations | None = None) -> MobileAgent:
    """The agent for `settings`: scenario (an unknown dataset is a configuration error), engine, planner."""
    scenario = load_scenario(settings.scenario)
    scenario.dataset(settings.dataset)
    table = load_node_table()
    mean_up, mean_down = chain_means(
        scenario, settings.dataset, {n: (t.mttf_h, t.mttr_h) for n, t in table.items()}
    )
    planner = Planner(
        scenario,
        get_engine(settings.engine),
        PlannerSettings(
            deadline_factor=settings.deadline_factor,
            deadline_margin_s=settings.deadline_margin_s,
            prior_availability=settings.prior_availability,
            mean_up_h=mean_up,
            mean_down_h=mean_down,
            time_compression=settings.time_compression or scenario.simulation.time_compression,
            time_scale=settings.time_scale,
        ),
    )
    # fail fast (no retries): the agent reads back, fences off and checks a new session in passing, and an
    # unreachable Redis must never stall its event pump (a status it cannot verify waits for the next read)
    fast = settings.redis.model_copy(update={"retries": 0, "socket_timeout_s": STORE_TIMEOUT_S})
    store = TaskStore(redis_client(fast), retention_s=settings.redis.retention_s)
    sessions = SessionBound(store.session)
    return MobileAgent(
        settings=settings,
        scenario=scenario,
        planner=planner,
        stop=stop,
        ops=ops,
        store=store if settings.use_store else None,
        sessions=sessions,
    )


@dataclass
class AgentService:
    """The agent as a daemon for `run_daemon`: `serve()` runs it, then writes the results (if `out`)."""

    agent: MobileAgent
    out: Path | None

    def serve(self) -> dict[str, Any]:
        record = self.agent.run()
        if self.out is not None:
            write_results(self.out, record)
            log.info("agent %s: results written to %s", self.agent.settings.agent, self.out)
        return record


def build_service(settings: AgentSettings, stop: threading.Event, ops: Operations) -> AgentService:
    if settings.out is not None:
        check_output(settings.out, folder=False)  # before the run: a bad --out must not lose its results
    return AgentService(build_agent(settings, stop, ops), settings.out)


def main(argv: Sequence[str] | None = None) -> int:
    """`edgeoff-agent`: settings, logging, build, run until done or SIGTERM/SIGINT (after the current
    task), write the results, exit 0 (2: bad settings, scenario or --out; 1: never connected to the
    broker, or it refused the account: nothing was run)."""
    try:
        return run_daemon(
            prog="edgeoff-agent",
            argv=argv,
            parser=build_parser(),
            settings_from_args=functools.partial(settings_from_args, AgentSettings),
            build=build_service,
            label=lambda settings: {"agent": settings.agent},
            check_redis=False,  # Redis is used in passing (read-back, fences, sessions): ready = connected
        )
    except NotConnectedError as exc:
        print(f"edgeoff-agent: error: {exc}", file=sys.stderr)
        return EXIT_NOT_CONNECTED
