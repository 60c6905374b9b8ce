"""The decision engines, as data: where availability comes from, how sites are ranked, how failures recover.

- `mdp-svr` (proposed): availability forecast by SVR from past windows; MDP policy iteration; on a failure the
  next-best action of Q (Algorithm 2).
- `efpo` (the prototype's comparison engine): failure probability 1 - exp(-t/MTBF) with t the trace time of an
  application run, MDP with discount 0.96, local re-execution after a failure.
- `kubehybrid` (the paper's baseline): greedy weighted score with MTBF availability; reactive recovery by
  check-pointing (resume on the next-best site) and local re-computation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgeoff.errors import EvaluationError

__all__ = ["ENGINES", "Engine", "get_engine"]

AvailabilitySource = Literal["svr", "mtbf-reliability", "mtbf-steady-state"]
Ranking = Literal["mdp", "score"]
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
        Engine("efpo", "mtbf-reliability", "mdp", "local", 0.96, description="MTBF-driven MDP (prototype's)"),
    )
}


def get_engine(name: str) -> Engine:
    try:
        return ENGINES[name]
    except KeyError:
        raise EvaluationError(f"unknown engine {name!r} (known: {', '.join(ENGINES)})") from None
