"""The decision engines, as data: where availability comes from, how sites are ranked, how failures recover.

Every engine sees the failure detector's view (a site known down is never chosen; edgeoff.knowledge) and
adds its own availability input, at the time scale of the task it decides (edgeoff.knowledge.engine_input):

- `mdp-svr` (proposed): the SVR's window forecast, mapped through the site's chain to the probability of
  staying up for this task; MDP policy iteration; on a failure the next-best action of Q (Algorithm 2).
- `efpo` (the prototype's comparison engine): failure probability 1 - exp(-t/MTBF) with t the task's time
  at risk; local re-execution after a failure; the scenario's tuned discount (benchmarks/tune.py).
- `kubehybrid` (the paper's baseline): greedy weighted score with MTBF steady-state availability, plus the
  detector (a Kubernetes scheduler sees NotReady nodes); reactive recovery by check-pointing (resume on the
  next-best site from the last checkpoint) and local re-computation.
- `mdp-selected`: the MDP fed by the forecaster selected per site on its training backtest (never one that
  lost to a naive forecaster; see edgeoff.forecasting.select_forecaster).
- `mdp-reactive` (no prediction): the MDP on the detector alone: every site not known down is assumed up.
- `mdp-oracle` (upper bound): the MDP knowing each site's true state at decision time (not the future).
- `mdp-belief`: the same MDP fed by the probability that each site stays up for the task given the detector's
  last observation and the time since, from its two-state chain (edgeoff.forecasting.belief).
- `dag-<source>` (`dag-svr`, `dag-selected`, `dag-belief`, `dag-reactive`, `dag-oracle`): the DAG-aware
  MDP over an application's tasks (edgeoff.dag), planned once per application with the availability
  source of `mdp-<source>`; Algorithm 2 follows its fallback chain.

`mdp-belief` runs offline (in `ENGINES`, what `--engines all` runs). The DAG-aware engines (`dag-*`) are
in ISSUE_9_ENGINES: `get_engine` knows them, the offline simulator runs them when named (`edgeoff evaluate
--engines dag-belief,...`; edgeoff.evaluation.dag_runs: one plan per application run from the inputs the
per-task MDP of the same source has at the run's start) and the live agent runs `dag-svr`, `dag-selected`
and `dag-reactive` (mobile_agent.dag_plan); both follow edgeoff.dag.execute.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from edgeoff.errors import EvaluationError

__all__ = ["DAG_SOURCES", "ENGINES", "ISSUE_9_ENGINES", "PAPER_ENGINES", "Engine", "get_engine"]

AvailabilitySource = Literal[
    "svr", "selected", "mtbf-reliability", "mtbf-steady-state", "detector", "oracle", "belief"
]
Ranking = Literal["mdp", "score", "dag"]
Recovery = Literal["next-best", "local", "checkpoint"]


@dataclass(frozen=True)
class Engine:
    name: str
    availability: AvailabilitySource
    ranking: Ranking
    recovery: Recovery
    discount: float | None = None  # None: the scenario's decision.discount
    description: str = ""


ENGINES: dict[str, Engine] = {
    e.name: e
    for e in (
        Engine(
            "mdp-svr", "svr", "mdp", "next-best", description="MDP on SVR availability forecasts (proposed)"
        ),
        Engine(
            "kubehybrid", "mtbf-steady-state", "score", "checkpoint", description="greedy K8s-style baseline"
        ),
        Engine("efpo", "mtbf-reliability", "mdp", "local", description="MTBF-driven MDP (prototype's)"),
        Engine(
            "mdp-selected",
            "selected",
            "mdp",
            "next-best",
            description="MDP on the per-site selected forecaster",
        ),
        Engine("mdp-reactive", "detector", "mdp", "next-best", description="MDP without prediction (bound)"),
        Engine("mdp-oracle", "oracle", "mdp", "next-best", description="MDP knowing the true state (bound)"),
        Engine(
            "mdp-belief",
            "belief",
            "mdp",
            "next-best",
            description="MDP on the chain's belief given the detector",
        ),
    )
}


PAPER_ENGINES = ("mdp-svr", "kubehybrid", "efpo")  # the paper's comparison; the bounds are opt-in

_BELIEF = ENGINES["mdp-belief"]
DAG_SOURCES = ("svr", "selected", "belief", "reactive", "oracle")  # dag-<source> runs mdp-<source>'s input


def _dag(source: str) -> Engine:
    base = ENGINES[f"mdp-{source}"]
    return replace(
        base,
        name=f"dag-{source}",
        ranking="dag",
        description=f"DAG-aware MDP over the application's tasks on {base.name}'s availability",
    )


ISSUE_9_ENGINES: dict[str, Engine] = {f"dag-{s}": _dag(s) for s in DAG_SOURCES}


def get_engine(name: str) -> Engine:
    engine = ENGINES.get(name) or ISSUE_9_ENGINES.get(name)
    if engine is not None:
        return engine
    if name.startswith("dag-"):
        source, known_sources = name.removeprefix("dag-"), ", ".join(DAG_SOURCES)
        raise EvaluationError(f"unknown engine source {source!r} in {name!r} (known: {known_sources})")
    known = ", ".join([*ENGINES, *ISSUE_9_ENGINES])
    raise EvaluationError(f"unknown engine {name!r} (known: {known})")
