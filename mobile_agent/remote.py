"""One remote attempt of the agent: the request, the wait for its result, and why it failed.

A TaskRequest at QoS 1 to the site's tasks topic (a new task id per task, attempt 0, 1, ... per retry), then
a wait for its TaskResult (idempotent by (task id, attempt): duplicates are counted and ignored) until the
deadline, the site going offline, or the detector's `detector:down` prediction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgeoff.scenario import Scenario
from edgeoff.wire import topics
from edgeoff.wire.codec import encode_msgpack
from edgeoff.wire.errors import StoreError
from edgeoff.wire.messages import ERROR_BUSY, ERROR_STORE, TaskRequest, TaskResult
from edgeoff.wire.mqtt import Counters, MqttClient
from edgeoff.wire.store import TaskStore
from mobile_agent.avoidance import AvoidingView
from mobile_agent.meter import Phase
from mobile_agent.planner import Planner, TaskSpec
from mobile_agent.record import RunRecord
from mobile_agent.settings import AgentSettings

__all__ = ["Failure", "RemoteAttempts"]

log = logging.getLogger("edgeoff.agent")

ACCEPTED_MEMORY = 10_000  # task ids remembered to count a second accepted result (bounded memory)


@dataclass(frozen=True)
class Failure:
    """Why a remote attempt failed: `kind` labels the fallback metric, `detail` is logged and recorded."""

    kind: str  # offline, detector_down, deadline, site_error, not_connected
    detail: str


class RemoteAttempts:
    """Remote attempts of `MobileAgent` (a mixin: the agent's state, set in its `__init__`)."""

    settings: AgentSettings
    scenario: Scenario
    planner: Planner
    site_ids: tuple[str, ...]
    mobile: int
    mqtt: MqttClient
    counters: Counters
    clock: Callable[[], float]
    wall_clock: Callable[[], float]
    record: RunRecord
    view: AvoidingView
    store: TaskStore | None
    _store_down_since: float | None
    _sent: dict[tuple[str, int], int]
    _accepted_tasks: dict[str, None]  # the task ids whose result was accepted lately, oldest first
    _results: dict[tuple[str, int], TaskResult]
    _round_trip: Any

    if TYPE_CHECKING:  # provided by another part of the class; declared for the type checker

        def _pump(
            self, until: float, done: Callable[[], bool], *, interruptible: bool = False
        ) -> None: ...  # MobileAgent's

        def _wait_model(self, model_s: float) -> float: ...  # MobileAgent's

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
        self._check_store()
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
            expires_at=self.wall_clock() + deadline_s,  # the site never starts it after we gave up
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
        if key not in self._results:
            self._read_back(key)  # stored by the site, its publish lost (a crash, a reconnect)
        elapsed = self.clock() - sent_at
        waited = elapsed / self.settings.time_scale
        self._sent.pop(key, None)
        result = self._results.pop(key, None)
        if result is None or not result.ok:
            self._cancel(key)  # we move on: the site never starts this attempt, or stops it
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
            if result.error == ERROR_BUSY:
                return Failure("busy", f"site busy: {site_id}")
            if result.error == ERROR_STORE:
                self._store_down_since = self.clock()
                self.view.avoid_all_remote(True)
                return Failure("store_unavailable", "site cannot reach the store")
            return Failure("site_error", f"site error: {result.error or 'failed'}")
        if not self.view.usable()[site]:
            return self._unusable_reason(site_id)
        self.counters.incr("deadlines_missed")
        self.view.avoid(site_id)  # until we hear from it again
        return Failure("deadline", f"deadline {deadline_s:.3f} s passed")

    # ------------------------------------------------------------------ the store of record

    def _read_back(self, key: tuple[str, int]) -> None:
        """The attempt's result from Redis, if a site stored it (fail-fast: a missing store costs ms)."""
        if self.store is None:
            return
        try:
            stored = self.store.get_result(*key)
        except StoreError as exc:
            self.counters.incr("store_errors")
            log.info("agent: cannot read back %s attempt %d: %s", *key, exc)
            return
        if stored is not None:
            self.counters.incr("results_read_back")
            self._on_result(stored)

    def _cancel(self, key: tuple[str, int]) -> None:
        """Fence the attempt off (edgeoff.wire.store): it never starts after we gave up on it."""
        if self.store is None:
            return
        try:
            self.store.cancel(*key)
            self.counters.incr("attempts_cancelled")
        except StoreError as exc:
            self.counters.incr("store_errors")
            log.info("agent: cannot cancel %s attempt %d: %s", *key, exc)

    def _check_store(self) -> None:
        """After a "store unavailable", try the sites again once the back-off has passed."""
        since = self._store_down_since
        if since is not None and self.clock() - since >= self.settings.store_backoff_s:
            self._store_down_since = None
            self.view.avoid_all_remote(False)

    def _unusable_reason(self, site_id: str) -> Failure:
        if site_id in self.view.online_sites():
            return Failure("detector_down", "site suspected by the detector (detector:down)")
        return Failure("offline", "site offline")

    def _on_result(self, result: TaskResult) -> None:
        key = (result.task_id, result.attempt)
        if key in self._results:
            self.counters.incr("results_duplicate")
            return
        site = self._sent.get(key)
        if site is None:
            self.counters.incr("results_late")  # an attempt given up on, or a duplicate after completion
            return
        self.view.heard_from(result.site)
        if result.site != self.site_ids[site]:
            self.counters.incr("results_wrong_site")
            log.warning("agent: result of %s attempt %d from unexpected site %s", *key, result.site)
            return
        self._results[key] = result
        if result.task_id in self._accepted_tasks:  # structurally impossible; measured by benchmarks/chaos
            self.counters.incr("results_accepted_twice")
        self._accepted_tasks[result.task_id] = None
        if len(self._accepted_tasks) > ACCEPTED_MEMORY:
            self._accepted_tasks.pop(next(iter(self._accepted_tasks)))
