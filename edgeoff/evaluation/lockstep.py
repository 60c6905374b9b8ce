"""The simulator's engine loop: every repetition's k-th task at once, in continuous trace time.

Per step (one task of every repetition, arrays (R,)):

1. The phone's clock (trace hours) is each repetition's own: it advances by each task's phases (model
   seconds x the time compression), plus the think time before each new application run.
2. What the engine knows at the clock: the detector view of every site (edgeoff.knowledge), the engine's
   availability input for this task (forecast, MTBF, true state: edgeoff.knowledge.engine_input), and
   the two combined by edgeoff.knowledge.usable_availability, the function the live planner calls.
3. The engine ranks the actions (MDP Q-values of the task's state, KubeHybrid's scores, or for `dag-*` the
   expected costs to the end of the run of the plan made at the run's start, ranked anew after each
   failure: edgeoff.evaluation.dag_runs) and Algorithm 2 runs them in order
   (edgeoff.decision.next_actions): an attempt on a remote site succeeds when the site is up from the
   start of the upload to the end of the execution. Otherwise the site fails while it
   holds the task (or was down already, unknown to the detector) and the attempt fails when the detector
   would notice: `detection` after the failure began, not before the upload ends; a failure shorter than
   the detector's delay is never noticed, and the agent gives up at the result deadline. The next action
   is taken from there; sites the detector declared down meanwhile are excluded too (as live). efpo
   re-executes locally; KubeHybrid restores its last checkpoint (checkpoints every
   `checkpoint_interval_s` of execution) and resumes on the next-best site with the remaining work.
4. Time and energy follow edgeoff.cost (data moves once; idle energy once per DAG level), plus the sampled
   latency jitter of the final attempt's two transfers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edgeoff import knowledge
from edgeoff.baselines import KubeHybridSettings, kubehybrid_scores
from edgeoff.cost import CostModel, TaskCosts
from edgeoff.decision import ResultDeadline, next_actions, solve
from edgeoff.engines import Engine
from edgeoff.evaluation.dag_runs import DagRuns
from edgeoff.evaluation.failures import ChangePath, SiteState
from edgeoff.evaluation.forecasts import Forecast
from edgeoff.evaluation.workload import Workload
from edgeoff.scenario import Scenario

__all__ = ["DelayDetector", "DetectorView", "Inputs", "Totals", "run_lockstep"]


class DetectorView(Protocol):
    """What the agent learns from the failure detector."""

    def known_down(self, now: np.ndarray, state: SiteState) -> np.ndarray:
        """Sites known down (R, S) bool at each row's time `now` (R,), given the true state then."""
        ...

    def notices(
        self, rows: np.ndarray, sites: np.ndarray, fail_start: np.ndarray, outage_end: np.ndarray
    ) -> np.ndarray:
        """When the failure of `sites` (n,) in `rows` (n,) that began at `fail_start` and ends at
        `outage_end` (n,) becomes known; +inf when it never does (heartbeats resume first)."""
        ...


@dataclass(frozen=True)
class DelayDetector:
    """The heartbeat detector: a failure is known `delay_h` trace hours after it starts; one delay per row
    (R,), or one for all."""

    delay_h: float | np.ndarray

    def known_down(self, now: np.ndarray, state: SiteState) -> np.ndarray:
        delay = np.broadcast_to(np.asarray(self.delay_h, dtype=float), now.shape)[:, None]
        return knowledge.detector_known_down(state.up, state.since, now[:, None], delay)

    def notices(
        self, rows: np.ndarray, sites: np.ndarray, fail_start: np.ndarray, outage_end: np.ndarray
    ) -> np.ndarray:
        delay = np.asarray(self.delay_h, dtype=float)
        verdict = fail_start + (delay[rows] if delay.ndim else delay)
        out: np.ndarray = np.where(outage_end > verdict, verdict, np.inf)
        return out


@dataclass
class Inputs:
    """What the loop needs besides the workload: rows (R) x sites (S)."""

    path: ChangePath
    detector: DetectorView
    mean_up_h: np.ndarray  # (R, S) MTTF of each row's sites; inf for sites that never fail
    mean_down_h: np.ndarray  # (R, S) MTTR
    forecast: Forecast | None = None
    jitter: Callable[[], np.ndarray] | None = None  # standard normals (2, R) per step; None: none
    start_h: np.ndarray | None = None  # (R,) the clock at the start; None: 0
    app_start_h: np.ndarray | None = None  # (R, apps) clock at each app's start (a replayed run)
    trace_h_per_s: np.ndarray | None = None  # (R,) trace hours per model second; None: the scenario's


@dataclass(frozen=True)
class Totals:
    """Per-row results; arrays (R,) unless said otherwise."""

    rt_s: np.ndarray
    energy_j: np.ndarray
    offload_attempts: np.ndarray
    failures: np.ndarray
    infeasible: np.ndarray
    placements: np.ndarray  # (R, S)
    believed: np.ndarray  # (R, S) mean availability used per decision
    up_share: np.ndarray  # (R, S) share of decisions at which each site was up
    site_of: np.ndarray  # (R, T) where each task finally ran
    task_time_s: np.ndarray  # (R, T)
    task_failures: np.ndarray  # (R, T)


def run_lockstep(
    scenario: Scenario,
    engine: Engine,
    work: Workload,
    inputs: Inputs,
    kube: KubeHybridSettings,
    deadline: ResultDeadline | None = None,
) -> Totals:
    model = CostModel.from_scenario(scenario)
    deadline = deadline or ResultDeadline()
    S, m = model.n_sites, model.mobile
    R, T = work.valid.shape
    # trace hours per model second, per row (groups of rows may run at different time compressions)
    k_h = (
        np.full(R, scenario.simulation.trace_h_per_s)
        if inputs.trace_h_per_s is None
        else inputs.trace_h_per_s
    )
    think_h = scenario.simulation.think_s * k_h
    decision = scenario.decision
    if engine.discount is not None:
        decision = decision.model_copy(update={"discount": engine.discount})
    net, memory = scenario.network, scenario.memory_gb
    r_idx, sites = np.arange(R), np.arange(S)
    clock = np.zeros(R) if inputs.start_h is None else inputs.start_h.astype(float).copy()
    site_of = np.full((R, T), m, dtype=np.int64)
    task_time, task_fail = np.zeros((R, T)), np.zeros((R, T), dtype=np.int64)
    active_s = np.zeros((R, T))
    attempts, failures, infeasible = (np.zeros(R, dtype=np.int64) for _ in range(3))
    energy = np.zeros(R)  # active energy, added step by step (the same sums whatever the padding)
    placements = np.zeros((R, S), dtype=np.int64)
    believed_sum, up_sum, decisions = np.zeros((R, S)), np.zeros((R, S)), np.zeros(R)
    idle_w = model.idle_power_w
    upload_idle, exec_idle = model.upload_idle, sites != m
    fail_idle = sites != m
    dag = (
        DagRuns(model, decision, engine.availability, work, memory, inputs.mean_up_h, inputs.mean_down_h, k_h)
        if engine.ranking == "dag"
        else None
    )

    for t in range(T):
        active = work.valid[:, t]
        new_app = active & work.first[:, t]
        if inputs.app_start_h is not None:
            clock = np.where(new_app, inputs.app_start_h[r_idx, work.app[:, t]], clock)
        elif scenario.simulation.think_s > 0:
            clock = np.where(new_app & (work.app[:, t] > 0), clock + think_h, clock)
        src = work.source[:, t]
        state = np.where(src >= 0, site_of[r_idx, np.maximum(src, 0)], m)
        mi, in_kb, out_kb = work.mi[:, t], work.input_kb[:, t], work.output_kb[:, t]
        offloadable = work.offloadable[:, t]
        feasible = (memory[None, :] >= work.memory_gb[:, t, None]) & (offloadable[:, None] | (sites == m))

        now_state = inputs.path.state_at(clock)
        known_down = inputs.detector.known_down(clock, now_state)
        phases = model.phases(mi, in_kb, out_kb, state)
        forecast = inputs.forecast.at(clock) if inputs.forecast is not None else None
        engine_p = knowledge.engine_input(
            engine.availability,
            duration=phases.at_risk_s * k_h[:, None],
            mean_up=inputs.mean_up_h,
            mean_down=inputs.mean_down_h,
            forecast=forecast,
            up_now=now_state.up,
        )
        p = knowledge.usable_availability(engine_p, known_down)
        believed_sum += np.where(active[:, None], p, 0.0)
        up_sum += np.where(active[:, None], now_state.up, 0.0)
        decisions += active

        view = known_down.copy()  # the detector's view at the current attempt
        if dag is not None:  # the run's plan (made at its start), in this task's state
            dag.start(t, new_app, known_down, now_state.up, forecast)
            dag.begin_task(t, active, site_of)
            q = np.zeros((R, S))
        elif engine.ranking == "mdp":
            q = np.where(sites == m, 0.0, -np.inf) * np.ones((R, 1))
            rows = np.flatnonzero(active & offloadable)
            if rows.size:
                expected = model.tasks(mi[rows], in_kb[rows], out_kb[rows])
                solved = solve(expected, p[rows], model, decision, feasible[rows], validate=False)
                q[rows] = solved.q[np.arange(rows.size), state[rows]]
        else:
            time_here = phases.time_s
            energy_here = (
                phases.upload_s * model.upload_power_w[state]
                + phases.execute_s * model.execute_power_w
                + phases.download_s * model.download_power_w
            )
            q = kubehybrid_scores(TaskCosts(time_here, energy_here), model.mips, p, feasible, kube)

        excluded = ~feasible | known_down
        pending = active.copy()
        tau = clock.copy()  # start of the current attempt (trace hours)
        spent_s, act_s, act_j = np.zeros(R), np.zeros(R), np.zeros(R)
        n_failed = np.zeros(R, dtype=np.int64)
        saved_mi = np.zeros(R)
        force_local = np.zeros(R, dtype=bool)
        chosen = np.full(R, m)
        probe = clock.copy()  # the failure path is queried at non-decreasing times per row
        for _ in range(S + 1):
            rows = np.flatnonzero(pending)
            if rows.size == 0:
                break
            if dag is None:
                a = next_actions(q[rows], excluded[rows])
            else:
                values, barred = dag.ranking(rows, view[rows])
                a = next_actions(values, excluded[rows] | barred)
            a = np.where(force_local[rows], m, a)
            none = a < 0
            infeasible[rows[none]] += 1
            a = np.where(none, m, a)
            st = state[rows]
            up_s = phases.upload_s[rows, a]
            left_mi = mi[rows] - np.where(a != m, saved_mi[rows], 0.0)
            ex_s = left_mi / model.mips[a]
            down_s = phases.download_s[rows, a]
            remote = a != m
            probe[rows] = tau[rows]
            path = inputs.path.state_at(probe)
            site_up, since = path.up[rows, a], path.since[rows, a]
            until, after = path.until[rows, a], path.after[rows, a]
            kr = k_h[rows]
            at_risk_h = (up_s + ex_s) * kr
            ok = ~remote | (site_up & (until >= tau[rows] + at_risk_h))
            # a failed attempt: the failure's start, and whether the detector notices it before it ends
            fail_start = np.where(site_up, until, since)
            outage_end = np.where(site_up, after, until)
            noticed = inputs.detector.notices(rows, a, fail_start, outage_end)
            exec_start = tau[rows] + up_s * kr
            timeout_h = exec_start + deadline.model_s(up_s + ex_s + down_s) * kr
            fail_at = np.maximum(np.where(np.isfinite(noticed), noticed, timeout_h), exec_start)
            wait_s = np.where(ok, 0.0, (fail_at - tau[rows]) / kr - up_s)
            # costs of this attempt (rule 4 and 5 of edgeoff.cost): active and idle phases
            up_active = ~upload_idle[st, a]
            ex_active = ~exec_idle[a]
            fail_active = ~fail_idle[st]
            ck = np.where(
                remote & ok & (engine.recovery == "checkpoint"), kube.checkpoint_overhead * ex_s, 0.0
            )
            dur = np.where(ok, up_s + ex_s + ck + down_s, up_s + wait_s)
            a_s = up_s * up_active + np.where(
                ok, ex_s * ex_active + down_s, np.where(fail_active, wait_s, 0.0)
            )
            a_j = up_s * up_active * model.upload_power_w[st, a] + np.where(
                ok,
                ex_s * ex_active * model.execute_power_w[a] + down_s * model.download_power_w,
                np.where(fail_active, wait_s * model.failure_power_w[st], 0.0),
            )
            spent_s[rows] += dur
            act_s[rows] += a_s
            act_j[rows] += a_j
            attempts[rows] += remote & active[rows]
            done_rows, fail_rows = rows[ok], rows[~ok]
            chosen[done_rows] = a[ok]
            pending[done_rows] = False
            if fail_rows.size:
                af = a[~ok]
                n_failed[fail_rows] += 1
                excluded[fail_rows, af] = True
                tau[fail_rows] = fail_at[~ok]
                probe[fail_rows] = tau[fail_rows]
                later = inputs.path.state_at(probe)
                view[fail_rows] = inputs.detector.known_down(probe, later)[fail_rows]
                excluded[fail_rows] |= view[fail_rows]
                if dag is not None:
                    dag.attempt_failed(fail_rows, af)
                if engine.recovery == "local":
                    force_local[fail_rows] = True
                elif engine.recovery == "checkpoint":
                    # execution done before the failure, in model seconds; saved up to the last checkpoint
                    progress = np.clip((fail_start[~ok] - exec_start[~ok]) / kr[~ok], 0.0, ex_s[~ok])
                    step = kube.checkpoint_interval_s
                    saved = np.floor(progress / step) * step if step > 0 else np.zeros_like(progress)
                    saved_mi[fail_rows] += saved * model.mips[af]
                    spent_s[fail_rows] += kube.restore_s
                    tau[fail_rows] += kube.restore_s * kr[~ok]

        if inputs.jitter is not None:  # the final attempt's transfers take their sampled latency
            z = inputs.jitter()
            links = ((state, chosen), (chosen, np.full(R, m)))
            extra = [
                np.maximum(0.0, net.jitter_mean_s[lk] + net.jitter_std_s[lk] * z[i]) - net.jitter_mean_s[lk]
                for i, lk in enumerate(links)
            ]
            moved_up = (state != chosen) & (chosen != m)  # rule 1: nothing moves to the phone
            up_x, down_x = np.where(moved_up, extra[0], 0.0), np.where(chosen != m, extra[1], 0.0)
            spent_s += up_x + down_x
            up_on = ~upload_idle[state, chosen]
            act_s += up_x * up_on + down_x
            act_j += up_x * up_on * model.upload_power_w[state, chosen] + down_x * model.download_power_w
        failures += np.where(active, n_failed, 0)
        task_fail[:, t] = np.where(active, n_failed, 0)
        site_of[:, t] = chosen
        task_time[:, t] = np.where(active, spent_s, 0.0)
        active_s[:, t] = np.where(active, act_s, 0.0)
        energy += np.where(active, act_j, 0.0)
        clock = clock + task_time[:, t] * k_h
        placed = active & offloadable
        np.add.at(placements, (r_idx[placed], chosen[placed]), 1)

    slots = int(work.app.max()) + 1 if work.app.size else 1
    slots *= work.levels
    keys = (r_idx[:, None] * slots + work.key).ravel()
    level_max = np.zeros(R * slots)
    np.maximum.at(level_max, keys, task_time.ravel())
    level_active = np.bincount(keys, weights=active_s.ravel(), minlength=R * slots)
    idle = np.maximum(0.0, level_max - level_active).reshape(R, slots).sum(axis=1)
    n = np.maximum(decisions, 1)[:, None]
    return Totals(
        rt_s=level_max.reshape(R, slots).sum(axis=1),
        energy_j=energy + idle_w * idle,
        offload_attempts=attempts,
        failures=failures,
        infeasible=infeasible,
        placements=placements,
        believed=believed_sum / n,
        up_share=up_sum / n,
        site_of=site_of,
        task_time_s=task_time,
        task_failures=task_fail,
    )
