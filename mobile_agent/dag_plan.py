"""The DAG-aware engines live (`dag-selected`, `dag-svr`, `dag-reactive`): one plan per application run.

The rule is edgeoff.dag.execute's, shared with the offline simulator (edgeoff/evaluation/dag_runs.py).
When an application run starts, :func:`start_application` solves the application's finite-horizon MDP
(:func:`edgeoff.dag.plan_application`) over the agent's view: the costs of every task
(:func:`edgeoff.dag.execute.application_costs`), the availability the planner's engine would use (the
worker's predictions, or 1 for `dag-reactive`) and the feasible sites (memory, the phone for a task that
cannot be offloaded, the sites usable at the start). Each task then gets a :class:`DagTaskPlan`: the
plan's action in the task's state (the sites earlier tasks ran on, and the sites known down: unusable in
the view, or failed during this run), and after a failure Algorithm 2's next action is the plan's action
once that site is known down too. The plan is not re-solved within the run (predictions that arrive
meanwhile count from the next run).

Pure, like the planner: no clock, no sockets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgeoff.dag import ApplicationPlan, plan_application
from edgeoff.dag.execute import application_costs, application_feasible, attempt_ranking
from edgeoff.decision import next_action
from edgeoff.errors import NoFeasibleSolutionError
from mobile_agent.planner import AgentView, Fallback, Planner, TaskPlan, TaskSpec

__all__ = ["DagApplication", "DagTaskPlan", "start_application"]


class DagApplication:
    """The solved plan of one application run and what the agent learnt during it.

    Args:
        planner: the agent's planner (a `dag-*` engine): cost model, decision weights, availability.
        specs: the run's tasks in topological order (``TaskSpec.index`` 0..T-1).
        view: the agent's view when the run starts.
    """

    def __init__(self, planner: Planner, specs: Sequence[TaskSpec], view: AgentView) -> None:
        sizes = [[[getattr(spec, name) for spec in specs]] for name in ("mi", "input_kb", "output_kb")]
        costs = application_costs(planner.model, *sizes)  # (1, T, S, S)
        # per task, what the planner's engine would use from the phone (edgeoff.knowledge): (T, S)
        availability = np.stack([planner.availability(spec, planner.mobile, view) for spec in specs])
        feasible = application_feasible(  # (1, T, S)
            planner.model,
            view.memory_gb(),
            [[spec.memory_gb for spec in specs]],
            [[spec.offloadable for spec in specs]],
            view.usable()[None, :],
        )
        self.mobile = planner.mobile
        self.plan: ApplicationPlan = plan_application(
            [spec.source for spec in specs],
            costs,
            availability[None],
            feasible,
            planner.model,
            planner.decision,
        )
        self.failed = np.zeros(planner.model.n_sites, dtype=bool)  # sites that failed during this run

    def known_down(self, view: AgentView) -> np.ndarray:
        """(S,) bool: unusable in the view now, or failed during this run."""
        out: np.ndarray = self.failed | ~view.usable()
        return out

    def task_plan(self, spec: TaskSpec, state: int, site_of: Sequence[int], view: AgentView) -> DagTaskPlan:
        """The plan of task ``spec`` whose input is on ``state``, earlier tasks having run on ``site_of``.

        Raises NoFeasibleSolutionError when no site is left for it.
        """
        placed = np.array([[*site_of, *[self.mobile] * (spec.index + 1 - len(site_of))]], dtype=np.int64)
        placement = int(self.plan.structure.placement_of(spec.index, placed)[0])
        return DagTaskPlan(application=self, task=spec.index, placement=placement, state=state, view=view)


class DagTaskPlan(TaskPlan):
    """Algorithm 2 over one task, driven by the application's plan.

    ``values`` (A,) are minus the plan's expected costs to the end of the run in the current knowledge
    state (higher is better, as for the per-task engines); a failure adds the failed site to the knowledge
    and takes the plan's action in the new state.
    """

    def __init__(
        self, *, application: DagApplication, task: int, placement: int, state: int, view: AgentView
    ) -> None:
        self.application = application
        self.task = task
        self.placement = placement
        known = application.known_down(view)
        values, excluded = self._ranking(known)
        super().__init__(
            state=state, values=values, excluded=excluded, recovery="next-best", mobile=application.mobile
        )

    def _ranking(self, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        plan = self.application.plan
        mask = plan.structure.mask_of(known[None, :])
        cost = plan.action_values(self.task, [self.placement], mask)  # (1, S), +inf: barred
        values, excluded = attempt_ranking(cost, known[None, :])
        return values[0], excluded[0]

    def fail(self, reason: str, *, unusable: np.ndarray | None = None) -> int:
        """The current action failed: it is known down for the rest of the run; the plan's next action.

        Raises NoFeasibleSolutionError (after recording the fallback) when no action is left.
        """
        failed = self.action
        application = self.application
        if failed != application.mobile:
            application.failed[failed] = True
        known = application.failed | (unusable if unusable is not None else False)
        self.values, excluded = self._ranking(known)
        self.excluded |= excluded
        try:
            nxt = next_action(self.values, self.excluded)
        except NoFeasibleSolutionError:
            self.fallbacks.append(Fallback(failed, None, reason))
            raise
        self.fallbacks.append(Fallback(failed, nxt, reason))
        self.action = nxt
        return nxt


def start_application(planner: Planner, specs: Sequence[TaskSpec], view: AgentView) -> DagApplication | None:
    """The plan of a new application run for a `dag-*` engine; None for the per-task engines."""
    if planner.engine.ranking != "dag":
        return None
    return DagApplication(planner, specs, view)
