"""The site's task path: decode a request, check its expiry, queue it (bounded), claim it in Redis when it
starts, run it while renewing its lease, store and publish its result.

A task whose outcome needs no time (a zero-cost emulated task, one the site has no memory for) runs on the
daemon's own thread while nothing is queued or running, claimed and completed in the same atomic Redis step
(batched); the others wait in a bounded queue and run on the worker pool. A full queue answers at once
with a `busy` result, and a claim that cannot reach Redis with `store unavailable`, so the agent falls back
at once instead of waiting for its deadline. A worker claims its task when it starts (the lease runs from
execution start), and never starts an expired request or an attempt the agent cancelled or superseded
(the task's fence, edgeoff.wire.store); while an emulated task runs it renews the lease, which also tells
it when the agent gave up on the attempt (then it stops). Redis calls of the pool's tasks run on the
worker threads; heartbeats have their own thread (site_daemon.heartbeats). Results finished while
disconnected wait in `_unsent`.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgeoff.ops.logs import DropLog, RateLimitedLog
from edgeoff.wire import topics
from edgeoff.wire.codec import decode_msgpack, encode_msgpack
from edgeoff.wire.errors import DecodeError, StoreError, TopicError
from edgeoff.wire.messages import ERROR_BUSY, ERROR_STORE, TaskRequest, TaskResult
from edgeoff.wire.mqtt import Message, MqttEvent
from edgeoff.wire.store import MAX_LEASE_MS, Claim, TaskStore
from site_daemon.execution import HandlerRegistry, Outcome, execute, instant_outcome
from site_daemon.state import SiteState

__all__ = ["SiteEvent", "TaskClaims", "TaskFinished", "lease_ms"]

log = logging.getLogger("edgeoff.site")


def lease_ms(emulated_s: float, deadline_s: float, margin_s: float) -> int:
    """The claim lease of a task from its execution start, ms: its run time (at most its deadline: a longer
    emulated task fails at once) and the margin, in [1, MAX_LEASE_MS] whatever the numbers (no overflow, no
    NaN). A running task renews it every margin / 2."""
    seconds = min(emulated_s, deadline_s) + margin_s
    if not seconds > 0:  # NaN, or all zero
        return 1
    return int(min(seconds * 1000.0, MAX_LEASE_MS))


# a claim not made: its counter and the reason logged (ClaimOutcome of edgeoff.wire.store)
_SKIPPED = {
    "taken": ("tasks_duplicate", "already claimed or done"),
    "fenced": ("tasks_fenced", "cancelled or superseded by its agent"),
    "refused": ("tasks_refused", "Redis refused its claim"),
}


@dataclass(frozen=True)
class TaskFinished:
    """A worker thread is done with a request of `session`/`generation`: `result` to publish, or None
    (not run: `skipped` says why, or abandoned by an injected crash)."""

    request: TaskRequest
    session: int
    generation: int
    result: TaskResult | None
    skipped: str | None = None


SiteEvent = MqttEvent | TaskFinished


@dataclass(frozen=True)
class _Accepted:
    """A decoded task request for this site, waiting to be claimed (instant) or to start (queued)."""

    request: TaskRequest
    emulated_s: float
    lease_ms: int
    session: int


class TaskClaims(SiteState):
    """The task path of `SiteDaemon` (a mixin over `SiteState`)."""

    store: TaskStore
    inbox: queue.Queue[SiteEvent]
    compute_s: Callable[[float], float]
    handlers: HandlerRegistry
    _tasks_topic: str
    _pool: ThreadPoolExecutor
    _in_pool: int
    _queue: deque[_Accepted]
    _generation: int
    _abort: threading.Event
    _task_seconds_by_ok: dict[bool, Any]
    _drops: DropLog
    _quiet: RateLimitedLog

    if TYPE_CHECKING:  # provided by another part of the class; declared for the type checker

        def _on_own_status(self, message: Message) -> None: ...  # StatusKeeping's

    def _drop(self, reason: str, detail: str, topic: str | None = None) -> None:
        self.counters.incr(f"tasks_dropped.{reason}")
        self._drops.drop(reason, topic or self._tasks_topic, detail)

    def _on_message(self, message: Message) -> _Accepted | None:
        """A task request to claim, or None (our own status, or dropped)."""
        if message.topic != self._tasks_topic:  # the tasks topic is valid: no need to parse it every time
            try:
                parsed = topics.parse_topic(message.topic)
            except TopicError as exc:
                self._drop("topic", str(exc), message.topic)
                return None
            if parsed.kind == "status" and parsed.id == self.site.id:
                self._on_own_status(message)
                return None
            self._drop("topic", "not a topic this site reads", message.topic)
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
        if self._expired(request):  # e.g. queued at the broker while this site hung or was cut off
            self.counters.incr("tasks_expired")
            return None
        emulated_s = self.compute_s(request.mi) * self.settings.execution_scale  # bounded: MAX_MI / MIPS
        lease = lease_ms(emulated_s, request.deadline_s, self.settings.claim_margin_s)  # from execution start
        return _Accepted(request=request, emulated_s=emulated_s, lease_ms=lease, session=session)

    def _expired(self, request: TaskRequest) -> bool:
        return request.expires_at is not None and self.wall_clock() >= request.expires_at

    def _claim_and_dispatch(self, accepted: Sequence[_Accepted]) -> None:
        """Run the instant tasks here (claimed and completed in one Redis round trip) while nothing is
        queued or running; queue the others (tasks run in arrival order, one at a time by default)."""
        if not accepted:
            return
        instant: list[tuple[_Accepted, TaskResult, bytes]] = []
        for task in accepted:
            request = task.request
            outcome = None
            if self._in_pool == 0 and not self._queue:
                outcome = instant_outcome(request, emulated_s=task.emulated_s, memory_gb=self.site.memory_gb)
            if outcome is None:
                self._enqueue(task)
                continue
            result = self._result(request, task.session, outcome)
            instant.append((task, result, encode_msgpack(result)))
        if instant:
            self._run_instant(instant)
        self._start_queued()

    def _run_instant(self, instant: Sequence[tuple[_Accepted, TaskResult, bytes]]) -> None:
        claims = [
            Claim(t.request.task_id, t.request.attempt, t.lease_ms, result=p, agent=t.request.agent)
            for t, _, p in instant
        ]
        try:
            outcomes = self.store.claim_outcomes(self.site.id, claims)
        except StoreError as exc:
            self._quiet.log(
                logging.WARNING,
                "store",
                "site %s: cannot claim %d task(s): %s",
                self.site.id,
                len(instant),
                exc,
            )
            for task, _, _ in instant:
                self._answer(task, ERROR_STORE, "tasks_store_unavailable")
            return
        for (task, result, payload), outcome in zip(instant, outcomes, strict=True):
            if outcome != "claimed":
                self._skipped(task.request, outcome)
                continue
            self.counters.incr("tasks_claimed")
            self._finished(task.request.agent, result, payload)

    def _skipped(self, request: TaskRequest, why: str) -> None:
        counter, reason = _SKIPPED.get(why, _SKIPPED["taken"])
        self.counters.incr(counter)
        self._quiet.log(
            logging.INFO,
            counter,
            "site %s: task %s attempt %d not run (%s)",
            self.site.id,
            request.task_id,
            request.attempt,
            reason,
        )

    def _answer(self, task: _Accepted, error: str, counter: str) -> None:
        """Answer a request at once without running it (busy, store unavailable): the agent falls back."""
        self.counters.incr(counter)
        outcome = Outcome(ok=False, exec_s=0.0, error=error)
        self._publish_result(task.request.agent, self._result(task.request, task.session, outcome))

    def _enqueue(self, task: _Accepted) -> None:
        if len(self._queue) >= self.settings.max_queued_tasks:
            self._answer(task, ERROR_BUSY, "tasks_busy")
            return
        self._queue.append(task)

    def _start_queued(self) -> None:
        while self._queue and self._in_pool < self.settings.max_concurrent_tasks:
            task = self._queue.popleft()
            if self._expired(task.request):
                self.counters.incr("tasks_expired")
                continue
            self._in_pool += 1
            self._pool.submit(self._run, task, self._generation, self._abort)

    def _run(self, task: _Accepted, generation: int, abort: threading.Event) -> None:
        """Worker thread: claim at start, run while renewing the lease, store; hand the result back."""
        request = task.request
        result: TaskResult | None = None
        skipped: str | None = None
        try:
            result, skipped = self._claim_and_run(task, abort)
        except Exception as exc:  # a handler or store bug fails its task, never the daemon
            log.exception("site %s: task %s crashed", self.site.id, request.task_id)
            outcome = Outcome(ok=False, exec_s=0.0, error=f"handler crashed: {type(exc).__name__}")
            result = self._result(request, task.session, outcome)
        self.inbox.put_nowait(
            TaskFinished(
                request=request, session=task.session, generation=generation, result=result, skipped=skipped
            )
        )
        self.mqtt.wake()  # the daemon's thread may be waiting in poll()

    def _claim_and_run(self, task: _Accepted, abort: threading.Event) -> tuple[TaskResult | None, str | None]:
        request = task.request
        if self._expired(request):
            return None, "expired"
        site = self.site.id
        try:
            claim = Claim(request.task_id, request.attempt, task.lease_ms, agent=request.agent)
            outcome = self.store.claim_outcomes(site, [claim])[0]
        except StoreError as exc:
            self._quiet.log(
                logging.WARNING, "store", "site %s: cannot claim task %s: %s", site, request.task_id, exc
            )
            return self._result(request, task.session, Outcome(ok=False, exec_s=0.0, error=ERROR_STORE)), None
        if outcome != "claimed":
            return None, outcome
        cancelled = threading.Event()
        renew_every = max(self.settings.claim_margin_s / 2, 0.05)

        def wait(seconds: float) -> bool:
            """Sleep `seconds`, renewing the lease; True when interrupted (crash, stop) or cancelled."""
            end = self.clock() + seconds
            while (remaining := end - self.clock()) > 0:
                if abort.wait(min(remaining, renew_every)):
                    return True
                if self.clock() >= end:
                    break
                try:
                    alive = self.store.renew(
                        request.task_id, request.attempt, site, task.lease_ms, agent=request.agent
                    )
                except StoreError:
                    alive = True  # Redis away: keep running; the result is published all the same
                if not alive:
                    cancelled.set()
                    return True
            return False

        done = execute(
            request,
            emulated_s=task.emulated_s,
            memory_gb=self.site.memory_gb,
            handlers=self.handlers,
            wait=wait,
            clock=self.clock,
        )
        if done is None:
            return None, "cancelled" if cancelled.is_set() else None
        result = self._result(request, task.session, done)
        try:
            stored = self.store.complete_task(result)
        except StoreError as exc:  # the published result still reaches the agent
            self.counters.incr("results_not_stored")
            self._quiet.log(
                logging.ERROR,
                "store_result",
                "site %s: cannot store result of %s: %s",
                site,
                result.task_id,
                exc,
            )
            return result, None
        if not stored:
            return None, "result_exists"
        return result, None

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
        if event.generation != self._generation or not self._up:
            self.counters.incr("tasks_abandoned")
        elif event.result is not None:
            if event.result.ok or event.result.error != ERROR_STORE:
                self.counters.incr("tasks_claimed")
            else:
                self.counters.incr("tasks_store_unavailable")
            self._finished(event.request.agent, event.result, None)
        elif event.skipped in _SKIPPED:
            self._skipped(event.request, event.skipped)
        else:
            self.counters.incr(f"tasks_{event.skipped or 'abandoned'}")
        self._start_queued()

    def _finished(self, agent: str, result: TaskResult, payload: bytes | None) -> None:
        self.counters.incr("tasks_done")
        self._task_seconds_by_ok[result.ok].observe(result.exec_s)
        self._publish_result(agent, result, payload)

    def _publish_result(self, agent: str, result: TaskResult, payload: bytes | None = None) -> None:
        if self._session is None:
            self._unsent.append((agent, result))
            return
        data = encode_msgpack(result) if payload is None else payload
        topic = topics.results(agent, self.site.id)
        if self.mqtt.publish(topic, data, qos=topics.QOS_AT_LEAST_ONCE) is None:
            self._unsent.append((agent, result))
