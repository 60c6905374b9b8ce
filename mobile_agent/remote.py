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

from edgeoff.ops.logs import RateLimitedLog, excerpt
from edgeoff.wire import topics
from edgeoff.wire.codec import encode_msgpack
from edgeoff.wire.errors import StoreError
from edgeoff.wire.messages import ERROR_BUSY, ERROR_STORE, MAX_WALL_TS, TaskRequest, TaskResult
from edgeoff.wire.store import TaskStore
from mobile_agent.meter import Phase
from mobile_agent.planner import TaskSpec
from mobile_agent.state import AgentState

__all__ = ["Failure", "RemoteAttempts"]

log = logging.getLogger("edgeoff.agent")

ACCEPTED_MEMORY = 10_000  # task ids remembered to count a second accepted result (bounded memory)


@dataclass(frozen=True)
class Failure:
    """Why a remote attempt failed: `kind` labels the fallback metric, `detail` is logged and recorded."""

    kind: str  # offline, detector_down, deadline, site_error, not_connected
    detail: str


class RemoteAttempts(AgentState):
    """Remote attempts of `MobileAgent` (a mixin over `AgentState`)."""

    store: TaskStore | None
    _store_down_since: float | None
    _sent: dict[tuple[str, int], int]
    _accepted_tasks: dict[str, None]  # the task ids whose result was accepted lately, oldest first
    _results: dict[tuple[str, int], TaskResult]
    _round_trip: Any
    _quiet: RateLimitedLog

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
            expires_at=min(self.wall_clock() + deadline_s, MAX_WALL_TS),  # never started after we gave up
        )
        key = (task_id, attempt)
        if attempt > 0:
            self._fence(task_id, attempt)  # no older attempt of this task starts once this one is out
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
                if self._store_reachable():
                    # we reach Redis ourselves: the answer is about that site alone (cut off from Redis, or a
                    # compromised site lying to stop all offloading): avoid it, not every site
                    self.counters.incr("store_unavailable_one_site")
                    self.view.avoid(site_id)
                else:
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
        """The attempt's result from Redis, if the site it was sent to stored it (fail-fast: a missing
        store costs ms). Only that site may write its result keys (brokers/redis/users.acl), so the key
        vouches for the sender as the results topic does."""
        site = self._sent.get(key)
        if self.store is None or site is None:
            return
        site_id = self.site_ids[site]
        try:
            stored = self.store.get_result(site_id, *key)
        except StoreError as exc:
            self._store_error("read back", key, exc)
            return
        if stored is not None:
            self.counters.incr("results_read_back")
            self._on_result(site_id, stored)

    def _fence(self, task_id: str, attempt: int) -> None:
        """Raise the task's fence to `attempt` before sending it: an older attempt never starts after."""
        if self.store is None:
            return
        try:
            self.store.fence(task_id, attempt, agent=self.settings.agent)
        except StoreError as exc:
            self._store_error("fence", (task_id, attempt), exc)

    def _cancel(self, key: tuple[str, int]) -> None:
        """Fence the attempt off (edgeoff.wire.store): it never starts after we gave up on it, and a site
        running it stops at its next lease renewal."""
        if self.store is None:
            return
        try:
            self.store.cancel(*key, agent=self.settings.agent)
            self.counters.incr("attempts_cancelled")
        except StoreError as exc:
            self._store_error("cancel", key, exc)

    def _store_error(self, what: str, key: tuple[str, int], exc: StoreError) -> None:
        self.counters.incr("store_errors")
        self._quiet.log(logging.INFO, f"store:{what}", "agent: cannot %s %s attempt %d: %s", what, *key, exc)

    def _store_reachable(self) -> bool:
        """True when the agent reaches Redis itself (a fail-fast PING: ms when Redis is down or refuses)."""
        return self.store is not None and self.store.ping()

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

    def _on_result(self, sender: str, result: TaskResult) -> None:
        """A result from `sender` (the site its topic names, which the broker's ACL vouches for): kept
        only when it is for an attempt awaited from that very site."""
        key = (result.task_id, result.attempt)
        if key in self._results:
            self.counters.incr("results_duplicate")
            return
        site = self._sent.get(key)
        if site is None:
            self.counters.incr("results_late")  # an attempt given up on, or a duplicate after completion
            return
        self.view.heard_from(sender)
        if sender != self.site_ids[site] or result.site != sender:
            self.counters.incr("results_wrong_site")
            self._quiet.log(
                logging.WARNING,
                f"wrong_site:{sender}",
                "agent: result of %s attempt %d from %s (sent to %s): ignored",
                excerpt(key[0]),
                key[1],
                sender,
                self.site_ids[site],
            )
            return
        self._results[key] = result
        if result.task_id in self._accepted_tasks:  # structurally impossible; measured by benchmarks/chaos
            self.counters.incr("results_accepted_twice")
        self._accepted_tasks[result.task_id] = None
        if len(self._accepted_tasks) > ACCEPTED_MEMORY:
            self._accepted_tasks.pop(next(iter(self._accepted_tasks)))
