"""The mobile agent's pure core: its view of the sites, and the task-by-task plan of one application run.

No clocks, no sockets: the daemon feeds decoded messages in and asks for decisions.

- :class:`AgentView` holds what the agent knows of each site: its status (online/offline with the session
  rule: an offline older than the current online session is stale), its profile, and its latest prediction
  (a prediction with model ``detector:down`` marks the site as suspected by the failure detector).
- :class:`Planner` turns a task and the view into a :class:`TaskPlan`: the ranking of every action in the
  task's state (the site of its source predecessor), with the engine's ranking (MDP Q-values from
  Algorithm 1 with N = 1, or the KubeHybrid score), the excluded actions (sites offline or suspected,
  memory, non-offloadable tasks) and the engine's recovery (Algorithm 2's next best action, local
  re-execution, or resume on the next-best site from a checkpoint).
- :meth:`Planner.policy` recomputes the policy the agent publishes: per state the action, Q-values (or
  scores) and the availability vector used, for the workload's reference task (see :func:`reference_task`).

The availability an engine decides on is the offline simulator's (edgeoff.knowledge, one implementation):
its input for the task at hand (:func:`edgeoff.knowledge.engine_input`: the worker's window forecast, a site
without one getting `prior_availability`, mapped through the site's chain to the probability of staying up
for this task; efpo's e^{-t/MTBF}; KubeHybrid's steady state; 1 for mdp-reactive), then 0 for every site the
agent knows is down, offline or `detector:down` (:func:`edgeoff.knowledge.usable_availability`). The
sites' chains (MTTF, MTTR in trace hours) and the time compression come with the settings; without them a
site never fails in the engines' eyes (the forecast is used as it is).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgeoff import knowledge
from edgeoff.baselines import KubeHybridSettings, kubehybrid_scores
from edgeoff.cost import CostModel, TaskCosts
from edgeoff.decision import ResultDeadline, is_feasible_value, next_action, solve
from edgeoff.engines import Engine
from edgeoff.errors import EvaluationError, NoFeasibleSolutionError
from edgeoff.knowledge import chain_means
from edgeoff.scenario import Decision, Scenario
from mobile_agent.view import AgentView, Change

__all__ = [
    "LIVE_ENGINES",
    "AgentView",
    "Change",
    "Fallback",
    "Planner",
    "PlannerSettings",
    "PolicySnapshot",
    "TaskPlan",
    "TaskSpec",
    "chain_means",
    "expected_phases",
    "reference_task",
    "sample_app_run",
]

# mdp-oracle: offline only; dag-*: planned per application run (mobile_agent.dag_plan)
LIVE_ENGINES = (
    "mdp-svr",
    "mdp-selected",
    "efpo",
    "kubehybrid",
    "mdp-reactive",
    "dag-svr",
    "dag-selected",
    "dag-reactive",
)


@dataclass(frozen=True)
class PlannerSettings:
    """How the planner turns the cost model into decisions and deadlines."""

    # A remote attempt's result is awaited for factor x the expected time of the attempt, plus the margin.
    deadline_factor: float = 3.0
    deadline_margin_s: float = 0.5  # wall seconds: broker and Redis round trips on a slow link
    prior_availability: float = 1.0  # a site without a prediction yet (no worker running): assumed up
    kubehybrid: KubeHybridSettings = field(default_factory=KubeHybridSettings)
    # The sites' chains, (S,) trace hours (the phone: inf and 0); None: no site ever fails.
    mean_up_h: tuple[float, ...] | None = None
    mean_down_h: tuple[float, ...] | None = None
    time_compression: float = 3600.0  # trace seconds per wall second (the scenario's)
    time_scale: float = 1.0  # wall seconds per model second

    @property
    def deadline(self) -> ResultDeadline:
        return ResultDeadline(self.deadline_factor, self.deadline_margin_s)


@dataclass(frozen=True)
class TaskSpec:
    """One task of one application run, its sizes sampled from its class."""

    app: str
    name: str
    index: int  # position in the app's topological order
    level: int  # DAG level (App.levels)
    source: int  # index of the predecessor holding the input, -1: the phone (App.sources)
    mi: float
    input_kb: float
    output_kb: float
    memory_gb: float
    offloadable: bool


def sample_app_run(scenario: Scenario, rng: np.random.Generator) -> tuple[TaskSpec, ...]:
    """Draw an application from the scenario's mix and sample its tasks' sizes (as the simulator does)."""
    probs = np.array([a.probability for a in scenario.apps])
    app = scenario.apps[int(rng.choice(len(scenario.apps), p=probs / probs.sum()))]
    out = []
    for i, task in enumerate(app.tasks):
        cls = scenario.task_classes[task.class_]
        mi, input_kb, output_kb = (
            lo + rng.random() * (hi - lo) for lo, hi in (cls.mi, cls.input_kb, cls.output_kb)
        )
        out.append(
            TaskSpec(
                app=app.name,
                name=task.name,
                index=i,
                level=app.levels[i],
                source=app.sources[i],
                mi=float(mi),
                input_kb=float(input_kb),
                output_kb=float(output_kb),
                memory_gb=task.memory_gb,
                offloadable=task.offloadable,
            )
        )
    return tuple(out)


def reference_task(scenario: Scenario) -> TaskSpec:
    """The workload's mean offloadable task: class mid-points weighted by app probability and task count.

    The published policy is the policy for this task; each real task is decided with its own sizes.
    """
    weights, sizes = [], []
    for app in scenario.apps:
        for task in app.tasks:
            if task.offloadable:
                cls = scenario.task_classes[task.class_]
                weights.append(app.probability)
                sizes.append([sum(cls.mi) / 2, sum(cls.input_kb) / 2, sum(cls.output_kb) / 2])
    mi, input_kb, output_kb = np.average(np.array(sizes), axis=0, weights=np.array(weights))
    return TaskSpec(
        "reference", "reference", 0, 0, -1, float(mi), float(input_kb), float(output_kb), 0.0, True
    )


def expected_phases(model: CostModel, task: TaskSpec, src: int, dst: int) -> tuple[float, float, float]:
    """Expected (upload, execute, download) seconds of `task` run on site `dst` with its input on `src`
    (edgeoff.cost's rules: the same numbers the simulator uses)."""
    ph = model.phases(
        np.array([task.mi]), np.array([task.input_kb]), np.array([task.output_kb]), np.array([src])
    )
    return float(ph.upload_s[0, dst]), float(ph.execute_s[0, dst]), float(ph.download_s[0, dst])


# ------------------------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Fallback:
    """Algorithm 2 took another action after `from_site` failed (to_site None: nothing was left)."""

    from_site: int
    to_site: int | None
    reason: str


class TaskPlan:
    """Algorithm 2 over one task: ranking values (A,) in its state, excluded actions, the current action.

    `values` are Q-values (MDP engines) or scores (KubeHybrid); higher is better. Excluding (s, a) after a
    failure and taking the next best is :func:`edgeoff.decision.next_action`; with `recovery == "local"`
    (efpo) a failure sends the task to the phone at once.
    """

    def __init__(self, *, state: int, values: np.ndarray, excluded: np.ndarray, recovery: str, mobile: int):
        self.state = state
        self.values = values
        self.excluded = excluded.copy()
        self.recovery = recovery
        self.mobile = mobile
        self.fallbacks: list[Fallback] = []
        self.action = next_action(values, self.excluded)  # NoFeasibleSolutionError when nothing is feasible

    def fail(self, reason: str, *, unusable: np.ndarray | None = None) -> int:
        """The current action failed: exclude it (and any site now unusable), return the next action.

        Raises NoFeasibleSolutionError (after recording the fallback) when no action is left.
        """
        failed = self.action
        self.excluded[failed] = True
        if unusable is not None:
            self.excluded |= unusable
        try:
            if self.recovery == "local" and not self.excluded[self.mobile]:
                nxt = self.mobile
            else:
                nxt = next_action(self.values, self.excluded)
        except NoFeasibleSolutionError:
            self.fallbacks.append(Fallback(failed, None, reason))
            raise
        self.fallbacks.append(Fallback(failed, nxt, reason))
        self.action = nxt
        return nxt


@dataclass(frozen=True)
class PolicySnapshot:
    """The policy in effect for the reference task: action per state, values (S, A), availability (S,)."""

    policy: np.ndarray
    values: np.ndarray
    availability: np.ndarray
    usable: np.ndarray

    def to_json(self, site_ids: tuple[str, ...]) -> dict[str, object]:
        """JSON-ready maps keyed by site id; infeasible values are null."""
        return {
            "policy": {site_ids[s]: site_ids[int(a)] for s, a in enumerate(self.policy)},
            "q": {
                site_ids[s]: {
                    site_ids[a]: (round(float(v), 6) if is_feasible_value(v) else None)
                    for a, v in enumerate(row)
                }
                for s, row in enumerate(self.values)
            },
            "availability": {
                sid: round(float(p), 6) for sid, p in zip(site_ids, self.availability, strict=True)
            },
            "usable": {sid: bool(u) for sid, u in zip(site_ids, self.usable, strict=True)},
        }


class Planner:
    """Engine-specific decisions over the view; pure (the daemon owns time and the network)."""

    def __init__(self, scenario: Scenario, engine: Engine, settings: PlannerSettings | None = None) -> None:
        if engine.name not in LIVE_ENGINES:
            raise EvaluationError(
                f"engine {engine.name!r} cannot run live (live engines: {', '.join(LIVE_ENGINES)})"
            )
        self.scenario = scenario
        self.engine = engine
        self.settings = settings or PlannerSettings()
        self.model = CostModel.from_scenario(scenario)
        self.mobile = self.model.mobile
        self.decision: Decision = scenario.decision
        if engine.discount is not None:
            self.decision = self.decision.model_copy(update={"discount": engine.discount})
        self.reference = reference_task(scenario)

    def _chain(self) -> tuple[np.ndarray, np.ndarray]:
        S = self.model.n_sites
        # no chain given: unknown (NaN), the forecast is then used as it is (edgeoff.knowledge.engine_input)
        up = np.full(S, np.nan) if self.settings.mean_up_h is None else np.array(self.settings.mean_up_h)
        down = (
            np.full(S, np.nan) if self.settings.mean_down_h is None else np.array(self.settings.mean_down_h)
        )
        up[self.mobile], down[self.mobile] = np.inf, 0.0
        return up, down

    def availability(self, task: TaskSpec, state: int, view: AgentView) -> np.ndarray:
        """(S,) the availability the engine decides on for `task` from `state` (edgeoff.knowledge)."""
        ph = self.model.phases(
            np.array([task.mi]), np.array([task.input_kb]), np.array([task.output_kb]), np.array([state])
        )
        up, down = self._chain()
        trace_h_per_s = self.settings.time_compression * self.settings.time_scale / 3600.0
        engine_p = knowledge.engine_input(
            self.engine.availability,
            duration=ph.at_risk_s * trace_h_per_s,
            mean_up=up,
            mean_down=down,
            forecast=view.forecasts()[None, :],
        )
        out: np.ndarray = knowledge.usable_availability(engine_p, view.known_down()[None, :])[0]
        return out

    def costs(self, task: TaskSpec) -> TaskCosts:
        """Expected costs of `task` on every (from, to) pair: shape (1, S, S)."""
        return self.model.tasks(np.array([task.mi]), np.array([task.input_kb]), np.array([task.output_kb]))

    def _values(self, task: TaskSpec, availability: np.ndarray, feasible: np.ndarray) -> np.ndarray:
        """Ranking values (S, A) of every state for `task`: Q (MDP) or scores (KubeHybrid)."""
        costs = self.costs(task)
        if self.engine.ranking in ("mdp", "dag"):  # dag: the published policy is the per-task MDP's
            solved = solve(
                costs, availability[None, :], self.model, self.decision, feasible[None, :], validate=False
            )
            q: np.ndarray = solved.q[0]
            return q
        S = self.model.n_sites
        per_state = TaskCosts(costs.time_s[0], costs.energy_j[0])  # states as the batch axis: (S, A)
        feasible_sa = np.broadcast_to(feasible, (S, S))
        scores: np.ndarray = kubehybrid_scores(
            per_state, self.model.mips, availability, feasible_sa, self.settings.kubehybrid
        )
        return scores

    def feasible(self, task: TaskSpec, view: AgentView) -> np.ndarray:
        """(S,) bool: enough memory, usable, and the phone only for a non-offloadable task."""
        ok: np.ndarray = (view.memory_gb() >= task.memory_gb) & view.usable()
        if not task.offloadable:
            ok &= np.arange(self.model.n_sites) == self.mobile
        return ok

    def plan(self, task: TaskSpec, state: int, view: AgentView) -> TaskPlan:
        """Rank the actions of `task` in `state` (Algorithm 1 with N = 1); raises NoFeasibleSolutionError."""
        feasible = self.feasible(task, view)
        if task.offloadable and feasible.any():
            values = self._values(task, self.availability(task, state, view), feasible)[state]
        else:
            values = np.where(feasible, 0.0, -np.inf)
        return TaskPlan(
            state=state, values=values, excluded=~feasible, recovery=self.engine.recovery, mobile=self.mobile
        )

    def policy(self, view: AgentView) -> PolicySnapshot:
        """The policy in effect for the reference task (recomputed on every prediction or status change)."""
        availability = self.availability(self.reference, self.mobile, view)
        usable = view.usable()
        values = self._values(self.reference, availability, usable)
        policy = np.argmax(np.where(usable[None, :], values, -np.inf), axis=1)
        return PolicySnapshot(policy=policy, values=values, availability=availability, usable=usable)

    def expected_phases(self, task: TaskSpec, src: int, dst: int) -> tuple[float, float, float]:
        return expected_phases(self.model, task, src, dst)

    def result_deadline_s(self, task: TaskSpec, src: int, dst: int, time_scale: float) -> float:
        """Wall seconds to wait for the result of a remote attempt after publishing it.

        factor x the attempt's expected time (cost model, scaled to wall time) + the margin.
        """
        expected = sum(self.expected_phases(task, src, dst))
        return float(self.settings.deadline.wall_s(expected, time_scale))

    def checkpoint_s(self, task: TaskSpec, site: int) -> float:
        """KubeHybrid's checkpoint-writing overhead of a remote execution (0 for other engines, the phone)."""
        if self.engine.recovery != "checkpoint" or site == self.mobile:
            return 0.0
        return float(self.settings.kubehybrid.checkpoint_overhead * task.mi / self.model.mips[site])

    def restore_s(self) -> float:
        """KubeHybrid's restore of the last checkpoint after a failure (0 for other engines)."""
        return self.settings.kubehybrid.restore_s if self.engine.recovery == "checkpoint" else 0.0
