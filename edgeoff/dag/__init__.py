"""The DAG-aware engine's pure core: a finite-horizon MDP over an application's tasks, solved once per
application by backward induction; its policy drives Algorithm 2's fallback chain.

The state before a task is the task, the site holding each result a later task still needs (so the site
holding this task's input) and the sites the agent knows to be down (:mod:`edgeoff.dag.structure`); the
costs are the per-task MDP's (:mod:`edgeoff.cost`, :mod:`edgeoff.decision`'s weights and failure cost) and
so are the availability inputs: per site, the probability that it stays up for the task
(:mod:`edgeoff.dag.plan`).

The API, for the simulator (N applications of one shape at once, the lockstep batch) and the live agent
(N = 1)::

    plan = plan_application(app.sources, costs, availability, feasible, model, decision)
    # costs: TaskCosts (N, T, S, S); availability (N, T, S) or (N, 1, S), (T, S), (S,); feasible (N, T, S)
    plan.expected_cost                                   # (N,) from the start, nothing known down
    F = plan.structure.placement_of(t, sites_so_far)     # (N,) from the sites earlier tasks ran on (N, t)
    K = plan.structure.mask_of(known_down)               # (N,) from known-down flags (N, S)
    a = plan.actions(t, F, K)                            # (N,) the site to try first, -1: none left
    K = plan.after_failure(K, a)                         # it failed: Algorithm 2 asks plan.actions again
    plan.fallback_chain(t, F[0], K[0])                   # the whole chain for one application
    plan.action_values(t, F, K)                          # (N, S) expected costs to the end (+inf: barred)

Engines ``dag-<source>`` (edgeoff.engines) use it with the availability source of ``mdp-<source>``.
"""

from edgeoff.dag.plan import ApplicationPlan, plan_application
from edgeoff.dag.structure import MAX_STATES_PER_TASK, DagStructure, TaskStates

__all__ = ["MAX_STATES_PER_TASK", "ApplicationPlan", "DagStructure", "TaskStates", "plan_application"]
