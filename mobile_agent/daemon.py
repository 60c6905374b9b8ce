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

A remote attempt: emulated upload (the cost model's transfer time x `time_scale`), a TaskRequest at QoS 1
to the site's tasks topic (a new task id per task, attempt 0, 1, ... per retry), then a wait for its
TaskResult (idempotent by (task id, attempt): duplicates are counted and ignored) until the deadline, the
site going offline, or the detector's `detector:down` prediction; then the engine's next action at once
(Algorithm 2), recorded with its reason; on success the emulated download. Local tasks are emulated on the
phone (MI / MIPS x `time_scale`).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from edgeoff.engines import get_engine
from edgeoff.errors import NoFeasibleSolutionError
from edgeoff.files import atomic_write
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
from edgeoff.scenario import Scenario, load_scenario
from edgeoff.traces import load_node_table
from edgeoff.wire import topics
from edgeoff.wire.codec import decode_json, decode_msgpack, encode_msgpack
from edgeoff.wire.errors import DecodeError, TopicError
from edgeoff.wire.messages import Prediction, SiteProfile, SiteStatus, TaskRequest, TaskResult
from edgeoff.wire.mqtt import Connected, Disconnected, Message, MqttClient, MqttEvent
from edgeoff.wire.settings import DaemonSettings
from mobile_agent.meter import Attempt, Detection, Phase, TaskMeasurement, summarise_run
from mobile_agent.planner import (
    AgentView,
    Change,
    Planner,
    PlannerSettings,
    TaskPlan,
    TaskSpec,
    chain_means,
    sample_app_run,
)
from mobile_agent.record import RunRecorder

__all__ = ["EXIT_CONFIG", "AgentService", "AgentSettings", "MobileAgent", "main"]

log = logging.getLogger("edgeoff.agent")

MAX_RECORDED_FALLBACKS = 1000  # the results file keeps the first fallbacks in full, counts all
# wall seconds from a task request to its result: milliseconds (a cloud site) to minutes (a slow ED)
ROUND_TRIP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class AgentSettings(DaemonSettings, OpsSettings):
    """Settings of one mobile agent: environment `EDGEOFF_AGENT_*` (nested: `EDGEOFF_AGENT_BROKER__HOST`)."""

    model_config = SettingsConfigDict(env_prefix="EDGEOFF_AGENT_")

    agent: Id = "agent-1"
    engine: str = "mdp-svr"
    scenario: Path | None = None  # None: the paper's scenario
    dataset: str = "DS1"  # recorded in the results (the sites' failure behaviour is theirs)
    apps: Annotated[int, Field(ge=1)] | None = None  # application runs; None: until `duration_s` or a signal
    duration_s: Annotated[float, Field(gt=0)] | None = None  # start no new application run after this
    seed: int | None = None  # workload RNG; None: fresh entropy
    time_scale: Annotated[float, Field(gt=0)] = 1.0  # wall seconds per model second of emulated work
    # trace seconds per wall second of the sites' failures; None: the scenario's [simulation] setting
    time_compression: Annotated[float, Field(gt=0)] | None = None
    deadline_factor: Annotated[float, Field(gt=0)] = 3.0  # result deadline: factor x expected time + margin
    deadline_margin_s: Annotated[float, Field(ge=0)] = 0.5
    prior_availability: Annotated[float, Field(ge=0, le=1)] = 1.0  # a site without a prediction yet
    wait_sites_s: Annotated[float, Field(ge=0)] = 10.0  # wait this long for every site to be online first
    out: Path | None = None  # results JSON, written when done
    publish_timeout_s: Annotated[float, Field(gt=0)] = 2.0


@dataclass(frozen=True)
class Failure:
    """Why a remote attempt failed: `kind` labels the fallback metric, `detail` is logged and recorded."""

    kind: str  # offline, detector_down, deadline, site_error, not_connected
    detail: str


@dataclass
class _Run:
    """What the agent measured so far."""

    tasks: list[TaskMeasurement] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    fallbacks: list[dict[str, Any]] = field(default_factory=list)
    fallback_count: int = 0
    usable_sum: np.ndarray | None = None
    availability_sum: np.ndarray | None = None
    decisions: int = 0
    apps_started: int = 0
    apps_done: int = 0


class MobileAgent:
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
        ops: Operations | None = None,
    ) -> None:
        self.settings = settings
        self.scenario = scenario
        self.planner = planner
        self.stop = stop
        self.clock = clock
        self.wall_clock = wall_clock
        self.on_policy = on_policy  # in-process hook (benchmarks): called with each published policy
        self.view = AgentView(scenario, prior_availability=settings.prior_availability)
        self.site_ids = scenario.site_ids
        self.mobile = scenario.mobile_index
        self.inbox: queue.Queue[MqttEvent] = queue.Queue()
        self.mqtt = MqttClient(
            settings=settings.broker,
            client_id=f"edgeoff-agent-{settings.agent}",
            inbox=self.inbox,
            max_message_bytes=settings.max_message_bytes,
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
        self._results_topic = topics.results(settings.agent)
        self._policy_topic = topics.agent_policy(settings.agent)
        self._nonce = secrets.token_hex(4)  # task ids unique across runs sharing one Redis
        self._task_seq = 0
        self._sent: dict[tuple[str, int], int] = {}  # attempts awaited -> the site they were sent to
        self._results: dict[tuple[str, int], TaskResult] = {}
        self._policy_version = 0
        self._policy_dirty = True
        self._policy_body: dict[str, Any] | None = None
        self._last_fallback: dict[str, Any] | None = None
        self.record = _Run()
        self.recorder = RunRecorder()  # what `edgeoff twin` needs to replay the run (mobile_agent.record)

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
            self._pump(self.clock() + self.settings.wait_sites_s, self._all_sites_online, interruptible=True)
            log.info(
                "agent %s: sites online: %s",
                self.settings.agent,
                ", ".join(self.view.online_sites()) or "none",
            )
            started = self.clock()
            while not self.stop.is_set() and self._more_apps(started):
                self._run_app(self.record.apps_started)
            self._publish_policy()
        finally:
            self._shutdown()
        return self.results()

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
        site_of: list[int] = []
        for spec in specs:
            if self.stop.is_set():  # SIGTERM: stop after the current task
                return
            measurement = self._run_task(run, spec, site_of)
            self.record.tasks.append(measurement)
            if not measurement.completed:
                log.error("agent: app run %d abandoned after task %s could not run", run, spec.name)
                return
            assert measurement.site is not None
            site_of.append(measurement.site)
        self.record.apps_done += 1
        self._publish_policy(progress_only=True)

    # ------------------------------------------------------------------ one task (Algorithm 2)

    def _task_id(self) -> str:
        self._task_seq += 1
        return f"t{self._nonce}-{self._task_seq}"

    def _run_task(self, run: int, spec: TaskSpec, site_of: list[int]) -> TaskMeasurement:
        state = self.mobile if spec.source < 0 else site_of[spec.source]
        task_id = self._task_id()
        phases: list[Phase] = []
        attempts: list[Attempt] = []
        self._sample_decision(spec, state)
        try:
            plan = self.planner.plan(spec, state, self.view)
        except NoFeasibleSolutionError as exc:
            log.error("agent: task %s (%s.%s): %s", task_id, spec.app, spec.name, exc)
            return TaskMeasurement(run, spec.level, spec.offloadable, False, None, (), (), infeasible=True)
        attempt = 0
        while True:
            action = plan.action
            if action == self.mobile:
                self._run_locally(spec, state, phases)
                attempts.append(Attempt(site=action, ok=True, remote=False))
                return TaskMeasurement(
                    run, spec.level, spec.offloadable, True, action, tuple(phases), tuple(attempts)
                )
            failure = self._run_remotely(task_id, attempt, spec, state, action, phases)
            attempts.append(
                Attempt(
                    site=action,
                    ok=failure is None,
                    remote=True,
                    reason=None if failure is None else failure.detail,
                )
            )
            if failure is None:
                return TaskMeasurement(
                    run, spec.level, spec.offloadable, True, action, tuple(phases), tuple(attempts)
                )
            attempt += 1
            if not self._fall_back(plan, task_id, failure, spec, state, phases):
                return TaskMeasurement(
                    run,
                    spec.level,
                    spec.offloadable,
                    False,
                    None,
                    tuple(phases),
                    tuple(attempts),
                    infeasible=True,
                )

    def _fall_back(
        self,
        plan: TaskPlan,
        task_id: str,
        failure: Failure,
        spec: TaskSpec,
        state: int,
        phases: list[Phase],
    ) -> bool:
        """Algorithm 2: exclude the failed action, take the next best; False when nothing is left."""
        failed = plan.action
        reason = failure.detail
        try:
            nxt: int | None = plan.fail(reason, unusable=~self.view.usable())
        except NoFeasibleSolutionError:
            nxt = None
        self.record.fallback_count += 1
        self.counters.incr(f"fallbacks.{failure.kind}")
        entry = {
            "task_id": task_id,
            "from": self.site_ids[failed],
            "to": None if nxt is None else self.site_ids[nxt],
            "reason": reason,
            "ts": self.wall_clock(),
        }
        if len(self.record.fallbacks) < MAX_RECORDED_FALLBACKS:
            self.record.fallbacks.append(entry)
        self._last_fallback = entry
        log.warning(
            "agent: task %s (%s.%s) failed on %s (%s): next %s",
            task_id,
            spec.app,
            spec.name,
            entry["from"],
            reason,
            entry["to"],
        )
        self._policy_dirty = True
        self._publish_policy()
        restore = self.planner.restore_s()
        if nxt is not None and restore > 0:
            phases.append(Phase("restore", self._wait_model(restore), state, nxt))
        return nxt is not None

    def _run_locally(self, spec: TaskSpec, state: int, phases: list[Phase]) -> None:
        upload, execute, _ = self.planner.expected_phases(spec, state, self.mobile)
        if upload > 0:  # the input sits on a remote site: it comes back to the phone first
            phases.append(Phase("upload", self._wait_model(upload), state, self.mobile))
        phases.append(Phase("execute", self._wait_model(execute), state, self.mobile))

    def _run_remotely(
        self, task_id: str, attempt: int, spec: TaskSpec, state: int, site: int, phases: list[Phase]
    ) -> Failure | None:
        """One remote attempt; None on success, else why it failed."""
        site_id = self.site_ids[site]
        upload, _, download = self.planner.expected_phases(spec, state, site)
        if upload > 0:
            phases.append(Phase("upload", self._wait_model(upload), state, site))
        if not self.view.usable()[site]:
            phases.append(Phase("detect", 0.0, state, site))
            return self._unusable_reason(site_id)
        deadline_s = self.planner.result_deadline_s(spec, state, site, self.settings.time_scale)
        request = TaskRequest(
            task_id=task_id,
            attempt=attempt,
            agent=self.settings.agent,
            app=spec.app,
            task=spec.name,
            mi=spec.mi,
            input_kb=spec.input_kb,
            output_kb=spec.output_kb,
            memory_gb=spec.memory_gb,
            deadline_s=deadline_s,
        )
        key = (task_id, attempt)
        self._sent[key] = site
        sent_at = self.clock()
        info = self.mqtt.publish(
            topics.site_topic(site_id, "tasks"), encode_msgpack(request), qos=topics.QOS_AT_LEAST_ONCE
        )
        if info is None:
            self._sent.pop(key, None)
            phases.append(Phase("detect", 0.0, state, site))
            return Failure("not_connected", "not connected to the broker")
        self.counters.incr("tasks_sent")
        usable = self.view.usable

        def settled() -> bool:
            return key in self._results or not usable()[site]

        self._pump(sent_at + deadline_s, settled)
        elapsed = self.clock() - sent_at
        waited = elapsed / self.settings.time_scale
        self._sent.pop(key, None)
        result = self._results.pop(key, None)
        if result is not None:
            self._round_trip.labels(site=site_id, ok="true" if result.ok else "false").observe(elapsed)
        if result is not None and result.ok:
            phases.append(Phase("execute", waited, state, site))
            checkpoint = self.planner.checkpoint_s(spec, site)
            if checkpoint > 0:
                phases.append(Phase("checkpoint", self._wait_model(checkpoint), state, site))
            phases.append(Phase("download", self._wait_model(download), site, self.mobile))
            return None
        phases.append(Phase("detect", waited, state, site))
        if result is not None:
            return Failure("site_error", f"site error: {result.error or 'failed'}")
        if not self.view.usable()[site]:
            return self._unusable_reason(site_id)
        self.counters.incr("deadlines_missed")
        return Failure("deadline", f"deadline {deadline_s:.3f} s passed")

    def _unusable_reason(self, site_id: str) -> Failure:
        if site_id in self.view.online_sites():
            return Failure("detector_down", "site suspected by the detector (detector:down)")
        return Failure("offline", "site offline")

    def _wait_model(self, model_s: float) -> float:
        """Emulate `model_s` seconds of work (scaled to wall time), handling events; the model seconds."""
        start = self.clock()
        self._pump(start + model_s * self.settings.time_scale, lambda: False)
        return (self.clock() - start) / self.settings.time_scale

    def _sample_decision(self, spec: TaskSpec, state: int) -> None:
        usable = self.view.usable().astype(float)
        availability = self.planner.availability(spec, state, self.view)
        r = self.record
        r.usable_sum = usable if r.usable_sum is None else r.usable_sum + usable
        r.availability_sum = availability if r.availability_sum is None else r.availability_sum + availability
        r.decisions += 1

    # ------------------------------------------------------------------ events

    def _pump(self, until: float, done: Callable[[], bool], *, interruptible: bool = False) -> None:
        """Handle events until `done()`, the time `until` (clock), or (interruptible) a stop request."""
        while not done():
            self.ops.tick(connected=self.mqtt.connected.is_set())
            if interruptible and self.stop.is_set():
                return
            remaining = until - self.clock()
            if remaining <= 0:
                return
            try:
                event = self.inbox.get(timeout=min(remaining, MAX_IDLE_WAIT_S))
            except queue.Empty:
                continue
            self._handle(event)
            if self._policy_dirty:
                self._publish_policy()

    def _handle(self, event: MqttEvent) -> None:
        match event:
            case Message():
                try:
                    self._on_message(event)
                except (DecodeError, TopicError) as exc:
                    self.counters.incr("in_dropped.invalid")
                    log.warning("agent: dropped a message on %.80s: %s", event.topic, exc)
            case Connected():
                log.info("agent %s: connected", self.settings.agent)
                self._policy_dirty = True
            case Disconnected():
                log.warning("agent %s: disconnected (reason %d)", self.settings.agent, event.reason_code)

    def _on_message(self, message: Message) -> None:
        parsed = topics.parse_topic(message.topic)
        limit = self.settings.max_message_bytes
        change: Change
        match parsed.kind:
            case "status":
                change = self.view.apply_status(
                    parsed.id, decode_json(SiteStatus, message.payload, max_bytes=limit)
                )
                self._on_change(parsed.id, change, "offline status")
            case "profile":
                change = self.view.apply_profile(
                    parsed.id, decode_json(SiteProfile, message.payload, max_bytes=limit)
                )
                self._count_ignored(change, message.topic)
            case "prediction":
                prediction = decode_json(Prediction, message.payload, max_bytes=limit)
                change = self.view.apply_prediction(parsed.id, prediction)
                self._on_change(parsed.id, change, "detector:down prediction")
            case "results" if parsed.id == self.settings.agent:
                self._on_result(decode_msgpack(TaskResult, message.payload, max_bytes=limit))
            case _:
                raise TopicError(f"unexpected topic {message.topic[:80]!r}")

    def _count_ignored(self, change: Change, topic: str) -> None:
        if change == "ignored":
            self.counters.incr("in_ignored")
            log.info("agent: ignored a stale or unknown message on %.80s", topic)

    def _on_change(self, site: str, change: Change, how: str) -> None:
        self._count_ignored(change, site)
        if change in ("changed", "down", "up"):
            self._policy_dirty = True
            i = self.site_ids.index(site)
            self.recorder.site_view(
                self.wall_clock(),
                site,
                known_down=bool(self.view.known_down()[i]),
                forecast=float(self.view.forecasts()[i]),
            )
        if change == "down":
            self.record.detections.append(Detection(site=site, ts=self.wall_clock(), how=how))
            log.warning("agent: site %s is down (%s)", site, how)
        elif change == "up":
            log.info("agent: site %s is up", site)

    def _on_result(self, result: TaskResult) -> None:
        key = (result.task_id, result.attempt)
        if key in self._results:
            self.counters.incr("results_duplicate")
            return
        site = self._sent.get(key)
        if site is None:
            self.counters.incr("results_late")  # an attempt given up on, or a duplicate after completion
            return
        if result.site != self.site_ids[site]:
            self.counters.incr("results_wrong_site")
            log.warning("agent: result of %s attempt %d from unexpected site %s", *key, result.site)
            return
        self._results[key] = result

    # ------------------------------------------------------------------ policy

    def _publish_policy(self, *, progress_only: bool = False) -> None:
        """Publish the retained policy; recompute it (new version) unless only the progress changed."""
        if self._policy_body is None or not progress_only:
            snapshot = self.planner.policy(self.view)
            self._policy_version += 1
            self.counters.incr("policy_recomputations")
            self._policy_body = {
                "agent": self.settings.agent,
                "engine": self.planner.engine.name,
                **snapshot.to_json(self.site_ids),
                "prediction_versions": self.view.prediction_versions(),
                "version": self._policy_version,
            }
        r = self.record
        body: dict[str, Any] = {
            **self._policy_body,
            "last_fallback": self._last_fallback,
            "progress": {
                "apps_started": r.apps_started,
                "apps_done": r.apps_done,
                "failures": sum(1 for t in r.tasks for a in t.attempts if a.remote and not a.ok),
                "fallbacks": r.fallback_count,
            },
            "ts": self.wall_clock(),
        }
        payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
        if (
            self.mqtt.publish(self._policy_topic, payload, qos=topics.QOS_AT_LEAST_ONCE, retain=True)
            is not None
        ):
            self._policy_dirty = False
        if self.on_policy is not None:
            self.on_policy(body)

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
            r.tasks,
            site_usable_share=usable,
            believed_availability=believed,
        )
        record.update(
            agent=self.settings.agent,
            apps_started=r.apps_started,
            apps_completed=r.apps_done,
            fallbacks=r.fallback_count,
            fallback_log=r.fallbacks,
            detections=[{"site": d.site, "ts": d.ts, "how": d.how} for d in r.detections],
            policy_versions=self._policy_version,
            time_scale=self.settings.time_scale,
            counters=self.counters.snapshot(),
            twin=self.recorder.to_json(r.tasks, self.site_ids),
        )
        return record

    def _shutdown(self) -> None:
        self.ops.stopping()
        self.mqtt.stop(with_will=False)
        log.info("agent %s: stopped; counters %s", self.settings.agent, self.counters.snapshot())


# ---------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeoff-agent",
        description="Run the edgeoff mobile agent: applications offloaded to the live sites (MQTT + Redis).",
        epilog="Every option can also come from the environment (EDGEOFF_AGENT_ENGINE, "
        "EDGEOFF_AGENT_BROKER__HOST, EDGEOFF_AGENT_REDIS__URL, ...) or a settings file of KEY=value lines; "
        "options on the command line win.",
    )
    parser.add_argument("--agent", help="agent id (default agent-1)")
    parser.add_argument("--engine", help="mdp-svr (default), mdp-selected, efpo, kubehybrid, mdp-reactive")
    parser.add_argument("--scenario", type=Path, help="scenario TOML (default: the paper's)")
    parser.add_argument("--dataset", help="dataset configuration recorded in the results (default DS1)")
    parser.add_argument("--apps", type=int, help="number of application runs")
    parser.add_argument(
        "--duration-s", type=float, help="start no new application run after this many seconds"
    )
    parser.add_argument("--seed", type=int, help="seed of the workload")
    parser.add_argument("--time-scale", type=float, help="wall seconds per model second of emulated work")
    parser.add_argument("--deadline-factor", type=float, help="result deadline: factor x expected time")
    parser.add_argument("--out", type=Path, help="write the results JSON here when done")
    add_ops_arguments(parser)
    return parser


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
    return MobileAgent(settings=settings, scenario=scenario, planner=planner, stop=stop, ops=ops)


def write_results(path: Path, record: dict[str, Any]) -> None:
    """Write atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(record, indent=2) + "\n")


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
    return AgentService(build_agent(settings, stop, ops), settings.out)


def main(argv: Sequence[str] | None = None) -> int:
    """`edgeoff-agent`: settings, logging, build, run until done or SIGTERM/SIGINT (after the current
    task), write the results, exit 0 (2: bad settings or scenario)."""
    return run_daemon(
        prog="edgeoff-agent",
        argv=argv,
        parser=build_parser(),
        settings_from_args=functools.partial(settings_from_args, AgentSettings),
        build=build_service,
        label=lambda settings: {"agent": settings.agent},
        check_redis=False,  # the agent does not use Redis: ready = connected to the broker
    )
