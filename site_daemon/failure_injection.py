"""Failure injection: a site follows a LANL node's two-state Markov chain, time-compressed.

The chain alternates up and down periods with exponential durations of means MTTF and MTTR (hours, from
the node's trace). A compression factor of `c` trace seconds per wall second turns an hour of the trace
into 3600 / c wall seconds (3600: one trace hour per second). The core is pure: a seeded numpy Generator
in, a sequence of up and down periods out; the daemon consumes the periods against its own clock.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgeoff.errors import TraceError
from edgeoff.scenario import DEFAULT_TIME_COMPRESSION, Scenario
from edgeoff.traces import NodeTrace

__all__ = ["DEFAULT_TIME_COMPRESSION", "FailureModel", "Period", "failure_model_for_site", "periods"]

# one trace hour per wall second: the scenario's [simulation] time_compression, shared with the simulator
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class FailureModel:
    """Two-state chain of one site: means in trace hours, and trace seconds per wall second."""

    mttf_h: float
    mttr_h: float
    time_compression: float = DEFAULT_TIME_COMPRESSION

    def __post_init__(self) -> None:
        if not (np.isfinite(self.mttf_h) and self.mttf_h > 0):
            raise ValueError(f"MTTF must be a positive number of hours, got {self.mttf_h}")
        if not (np.isfinite(self.mttr_h) and self.mttr_h >= 0):
            raise ValueError(f"MTTR must be a non-negative number of hours, got {self.mttr_h}")
        if not (np.isfinite(self.time_compression) and self.time_compression > 0):
            raise ValueError(f"time compression must be positive, got {self.time_compression}")

    @property
    def mean_up_s(self) -> float:
        """Mean wall seconds between a recovery and the next failure."""
        return self.mttf_h * SECONDS_PER_HOUR / self.time_compression

    @property
    def mean_down_s(self) -> float:
        """Mean wall seconds a failure lasts."""
        return self.mttr_h * SECONDS_PER_HOUR / self.time_compression


@dataclass(frozen=True)
class Period:
    """One period of the chain: the site is up (or down) for `duration_s` wall seconds."""

    state: Literal["up", "down"]
    duration_s: float


def periods(model: FailureModel, rng: np.random.Generator) -> Iterator[Period]:
    """Endless alternation up, down, up, ... with exponential durations (wall seconds); starts up."""
    while True:
        yield Period("up", float(rng.exponential(model.mean_up_s)))
        down = float(rng.exponential(model.mean_down_s)) if model.mean_down_s > 0 else 0.0
        yield Period("down", down)


def failure_model_for_site(
    scenario: Scenario,
    dataset: str,
    site: str,
    nodes: Mapping[str, NodeTrace],
    time_compression: float = DEFAULT_TIME_COMPRESSION,
) -> FailureModel | None:
    """The chain of `site` in a dataset configuration; None when the dataset does not map the site.

    Raises ScenarioError for an unknown dataset and TraceError for a node without MTTF (one outage).
    """
    node = scenario.dataset(dataset).get(site)
    if node is None:
        return None
    if node not in nodes:
        raise TraceError(
            f"{scenario.source}: datasets.{dataset}.{site}: unknown node {node!r} (not in the node table)"
        )
    trace = nodes[node]
    return FailureModel(mttf_h=trace.mttf_h, mttr_h=trace.mttr_h, time_compression=time_compression)
