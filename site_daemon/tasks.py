"""The site's task path: decode a request, claim it in Redis (batched), run it, store and publish its result.

A task whose outcome needs no time (a zero-cost emulated task, one the site has no memory for) runs on the
daemon's own thread, claimed and completed in the same atomic Redis step; the others go to the worker pool
and come back as :class:`TaskFinished` events. Results finished while disconnected wait in `_unsent`.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgeoff.scenario import Site
from edgeoff.wire import topics
from edgeoff.wire.codec import decode_msgpack, encode_msgpack
from edgeoff.wire.errors import DecodeError, StoreError, TopicError
from edgeoff.wire.messages import TaskRequest, TaskResult
from edgeoff.wire.mqtt import Counters, Message, MqttClient, MqttEvent
from edgeoff.wire.store import Claim, TaskStore
from site_daemon.execution import HandlerRegistry, Outcome, execute, instant_outcome
from site_daemon.settings import SiteSettings

__all__ = ["SiteEvent", "TaskClaims", "TaskFinished"]

log = logging.getLogger("edgeoff.site")


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


class TaskClaims:
    """The task path of `SiteDaemon` (a mixin: the state is the daemon's, set in its `__init__`)."""

    settings: SiteSettings
    site: Site
    store: TaskStore
    mqtt: MqttClient
    counters: Counters
    clock: Callable[[], float]
    wall_clock: Callable[[], float]
    inbox: queue.Queue[SiteEvent]
    compute_s: Callable[[float], float]
    handlers: HandlerRegistry
    _tasks_topic: str
    _pool: ThreadPoolExecutor
    _in_pool: int
    _session: int | None
    _up: bool
    _generation: int
    _abort: threading.Event
    _unsent: list[tuple[str, TaskResult]]
    _task_seconds_by_ok: dict[bool, Any]

    if TYPE_CHECKING:  # provided by another part of the class; declared for the type checker

        def _on_own_status(self, message: Message) -> None: ...  # StatusKeeping's

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
