"""One task of the agent (Algorithm 2): plan, run locally or remotely, and on a failure the next-best action
at once, recorded with its reason."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edgeoff.errors import NoFeasibleSolutionError
from mobile_agent.dag_plan import DagApplication
from mobile_agent.meter import Attempt, Phase, TaskMeasurement
from mobile_agent.planner import TaskPlan, TaskSpec
from mobile_agent.record import MAX_RECORDED_FALLBACKS
from mobile_agent.remote import Failure
from mobile_agent.state import AgentState

__all__ = ["TaskExecution"]

log = logging.getLogger("edgeoff.agent")


class TaskExecution(AgentState):
    """Task execution of `MobileAgent` (a mixin over `AgentState`)."""

    _nonce: str
    _task_seq: int
    _policy_dirty: bool
    _last_fallback: dict[str, Any] | None
    _application: DagApplication | None  # the run's plan for a dag-* engine (mobile_agent.dag_plan)

    if TYPE_CHECKING:  # provided by another part of the class; declared for the type checker

        def _pump(
            self, until: float, done: Callable[[], bool], *, interruptible: bool = False
        ) -> None: ...  # EventPump's

        def _publish_policy(self, *, progress_only: bool = False) -> None: ...  # PolicyPublishing's

        def _check_store(self) -> None: ...  # RemoteAttempts'

        def _run_remotely(
            self, task_id: str, attempt: int, spec: TaskSpec, state: int, site: int, phases: list[Phase]
        ) -> Failure | None: ...  # RemoteAttempts'

    def _task_id(self) -> str:
        self._task_seq += 1
        return f"t{self._nonce}-{self._task_seq}"

    def _run_task(self, run: int, spec: TaskSpec, site_of: list[int]) -> TaskMeasurement:
        state = self.mobile if spec.source < 0 else site_of[spec.source]
        task_id = self._task_id()
        phases: list[Phase] = []
        attempts: list[Attempt] = []
        self._check_store()  # the back-off after "store unavailable" may have passed: sites usable again
        self._sample_decision(spec, state)
        try:
            plan: TaskPlan
            if self._application is not None:
                plan = self._application.task_plan(spec, state, site_of, self.view)
            else:
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
            if failure is not None:
                self.record.remote_failures += 1
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
