"""The DAG-aware engines (`dag-<source>`) in the lockstep loop: one plan per application run, vectorised.

The rule is the live agent's (edgeoff.dag.execute): when a repetition starts an application run, the run
is planned once (:func:`edgeoff.dag.plan_application`) from what the simulated agent knows at that moment:
the detector view, and the engine's availability input for each task seen from the phone (forecast, chain
belief, MTBF, true state: :func:`edgeoff.knowledge.engine_input`, the same call as the per-task MDP of the
same source makes, with each task's expected time at risk in trace hours), combined by
:func:`edgeoff.knowledge.usable_availability`. Each attempt of a task then takes the plan's best action in
the task's state: where the earlier tasks ran, and the sites known down (failed during this run, or known
down to the detector at the attempt); a failure adds the site and the next attempt follows the plan's
fallback chain. The failure and detection semantics of an attempt are the loop's
(edgeoff.evaluation.lockstep).

Runs of the same application shape that start at the same step are planned in one batch. A repetition's
current plan is kept by reference (plan id, row in it) until its next application run starts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeoff import knowledge
from edgeoff.cost import CostModel
from edgeoff.dag import ApplicationPlan, DagStructure, plan_application
from edgeoff.dag.execute import application_costs, application_feasible, attempt_ranking
from edgeoff.evaluation.workload import Workload
from edgeoff.scenario import Decision

__all__ = ["DagRuns"]


@dataclass(frozen=True)
class _Shapes:
    """Where each repetition's application runs start and which shape (``App.sources``) each has."""

    start: np.ndarray  # (R, T) the step at which the task's application run started
    shape_id: np.ndarray  # (R, T) index into `sources` at a run's first step, -1 elsewhere
    sources: tuple[tuple[int, ...], ...]


def _shapes(work: Workload) -> _Shapes:
    R, T = work.valid.shape
    first = work.first & work.valid
    steps = np.broadcast_to(np.arange(T), (R, T))
    start = np.maximum.accumulate(np.where(first, steps, 0), axis=1)
    local = np.where(work.source >= 0, work.source - start, -1)
    rows, cols = np.nonzero(first)
    shape_id = np.full((R, T), -1, dtype=np.int64)
    if rows.size == 0:
        return _Shapes(start, shape_id, ())
    run = np.cumsum(first, axis=1) - 1  # (R, T) the run's number within its repetition
    key = np.where(work.valid, np.arange(R)[:, None] * (T + 1) + run, -1)
    length = np.bincount(key[work.valid], minlength=R * (T + 1))[rows * (T + 1) + run[rows, cols]]
    longest = int(length.max())
    offset = np.arange(longest)
    at = np.minimum(cols[:, None] + offset, T - 1)
    windows = np.where(offset < length[:, None], local[rows[:, None], at], -2)  # -2: past the run's end
    unique, inverse = np.unique(windows, axis=0, return_inverse=True)
    shape_id[rows, cols] = inverse.ravel()
    sources = tuple(tuple(int(s) for s in u if s > -2) for u in unique)
    return _Shapes(start, shape_id, sources)


class DagRuns:
    """The plans of R repetitions' current application runs, and what each learnt during its run.

    Args:
        model: the cost model; decision: the weights of time and energy (the plan is undiscounted).
        source: the engine's availability source (``Engine.availability``).
        work: the workload (R, T); site_memory_gb (S,): each site's memory.
        mean_up_h, mean_down_h: (R, S) MTTF and MTTR of each repetition's sites (trace hours).
        trace_h_per_s: (R,) trace hours per model second.
    """

    def __init__(
        self,
        model: CostModel,
        decision: Decision,
        source: str,
        work: Workload,
        site_memory_gb: np.ndarray,
        mean_up_h: np.ndarray,
        mean_down_h: np.ndarray,
        trace_h_per_s: np.ndarray,
    ) -> None:
        self.model, self.decision, self.source, self.work = model, decision, source, work
        self.site_memory_gb, self.mean_up_h, self.mean_down_h = site_memory_gb, mean_up_h, mean_down_h
        self.trace_h_per_s = trace_h_per_s
        self.shapes = _shapes(work)
        R, S = work.valid.shape[0], model.n_sites
        self.masks = DagStructure.of((-1,), S, model.mobile)  # knowledge masks: the same for every shape
        self.plans: dict[int, ApplicationPlan] = {}
        self.plan_id = np.full(R, -1, dtype=np.int64)
        self.row_in_plan = np.zeros(R, dtype=np.int64)
        self.failed = np.zeros((R, S), dtype=bool)  # sites that failed during the current run
        self.task_cost = np.full((R, 1 << (S - 1), S), np.inf)  # this task's plan costs by knowledge mask
        self._next_id = 0

    def start(
        self,
        t: int,
        new_app: np.ndarray,
        known_down: np.ndarray,
        up_now: np.ndarray,
        forecast: np.ndarray | None,
    ) -> None:
        """Plan the application runs that start at step t (`new_app` (R,) bool), with the inputs at each
        row's clock: the detector view `known_down` (R, S), the true state `up_now` (R, S) (the oracle's
        input) and the window forecasts (R, S) of forecasting sources."""
        rows = np.flatnonzero(new_app)
        if rows.size == 0:
            return
        m, w = self.model.mobile, self.work
        ids = self.shapes.shape_id[rows, t]
        for shape in np.unique(ids):
            g = rows[ids == shape]
            sources = self.shapes.sources[shape]
            cols = t + np.arange(len(sources))
            mi, in_kb, out_kb = (x[g[:, None], cols] for x in (w.mi, w.input_kb, w.output_kb))
            n, T = mi.shape
            phases = self.model.phases(mi.ravel(), in_kb.ravel(), out_kb.ravel(), np.full(n * T, m))
            duration = phases.at_risk_s.reshape(n, T, -1) * self.trace_h_per_s[g, None, None]
            engine_p = knowledge.engine_input(
                self.source,
                duration=duration,
                mean_up=self.mean_up_h[g, None, :],
                mean_down=self.mean_down_h[g, None, :],
                forecast=None if forecast is None else forecast[g, None, :],
                up_now=up_now[g, None, :],
            )
            availability = knowledge.usable_availability(engine_p, known_down[g, None, :])
            feasible = application_feasible(
                self.model,
                self.site_memory_gb,
                w.memory_gb[g[:, None], cols],
                w.offloadable[g[:, None], cols],
                ~known_down[g],
            )
            costs = application_costs(self.model, mi, in_kb, out_kb)
            plan = plan_application(sources, costs, availability, feasible, self.model, self.decision)
            self.plans[self._next_id] = plan
            self.plan_id[g], self.row_in_plan[g] = self._next_id, np.arange(g.size)
            self._next_id += 1
        self.failed[rows] = False
        alive = set(np.unique(self.plan_id).tolist())
        for pid in [p for p in self.plans if p not in alive]:
            del self.plans[pid]

    def begin_task(self, t: int, active: np.ndarray, site_of: np.ndarray) -> None:
        """Look up the plan's costs of step t's task for the `active` rows (R,) bool, in the placement of
        the results of their run's earlier tasks (`site_of` (R, T): where each task ran)."""
        rows = np.flatnonzero(active)
        ids = self.plan_id[rows]
        for pid in np.unique(ids):
            rr = rows[ids == pid]
            plan = self.plans[int(pid)]
            first = self.shapes.start[rr, t]
            local = int(t - first[0])  # rows sharing a plan started their run at the same step
            placed = site_of[rr[:, None], first[:, None] + np.arange(local)]
            placement = plan.structure.placement_of(local, placed)
            self.task_cost[rr] = plan.q[local][self.row_in_plan[rr], placement]

    def ranking(self, rows: np.ndarray, known_down: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Algorithm 2's values and exclusions (n, S) for the next attempt of `rows` (n,), the detector
        knowing `known_down` (n, S) now (edgeoff.dag.execute.attempt_ranking)."""
        known = self.failed[rows] | known_down
        mask = self.masks.mask_of(known)
        return attempt_ranking(self.task_cost[rows, mask], known)

    def attempt_failed(self, rows: np.ndarray, sites: np.ndarray) -> None:
        """Sites (n,) failed under `rows` (n,): known down for the rest of the run."""
        self.failed[rows, sites] |= sites != self.model.mobile
