"""The state space of an application's finite-horizon MDP: where the inputs of the remaining tasks are, and
which sites the agent knows to be down.

Tasks run in the application's topological order t = 0 .. T-1; task t's input is the result of its source
predecessor ``sources[t]`` (``App.sources``; -1: the phone holds it). Before task t the results that matter
are those of the *live* tasks ``live[t] = {j < t : sources[k] == j for some k >= t}``, so the placement
part of the state is the site of each live task: ``S ** len(live[t])`` placements, encoded as an integer in
base S (the first live task is the least significant digit). The knowledge part is the set of remote sites
known down, a bit mask over the remote sites (bit ``rank`` of site ``a`` = its position among the sites
without the phone; the phone never fails and has no bit): ``2 ** (S - 1)`` masks.

:class:`DagStructure` precomputes, per task, the site holding its input in each placement and the
placement that follows when it runs on each site. It depends on the application's shape and the number
of sites only, so one is built per application template and reused (``DagStructure.of`` caches them).

This module is pure: numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from edgeoff.errors import DecisionError

__all__ = ["MAX_STATES_PER_TASK", "DagStructure", "TaskStates"]

IntArray = npt.NDArray[np.int64]

MAX_STATES_PER_TASK = 1 << 20
"""Most (placement, knowledge) states of one task: beyond it the tables would not fit in a phone's memory
nor in 2 ms (the paper's applications need S x 2^(S-1) = 80 with five sites)."""


@dataclass(frozen=True)
class TaskStates:
    """The states before one task.

    Attributes:
        live: the live tasks (indices), in the order of the placement's digits.
        input_site: site holding the task's input in each placement, shape (F,), F = S ** len(live).
        next_placement: placement after the task when it runs on site a, shape (F, S), indices into the next
            task's placements.
    """

    live: tuple[int, ...]
    input_site: IntArray
    next_placement: IntArray

    @property
    def placements(self) -> int:
        return int(self.input_site.shape[0])


@dataclass(frozen=True)
class DagStructure:
    """Per-task state tables of an application with ``len(sources)`` tasks on ``n_sites`` sites."""

    sources: tuple[int, ...]
    n_sites: int
    mobile: int
    tasks: tuple[TaskStates, ...]
    site_bit: IntArray
    """Knowledge bit of each site, shape (S,): ``1 << rank`` for a remote site, 0 for the phone."""

    @property
    def n_tasks(self) -> int:
        return len(self.sources)

    @property
    def n_masks(self) -> int:
        """Number of knowledge states: subsets of the remote sites."""
        return 1 << (self.n_sites - 1)

    @staticmethod
    def of(sources: Sequence[int], n_sites: int, mobile: int) -> DagStructure:
        """The (cached) structure of an application; DecisionError for a malformed one."""
        return _structure(tuple(int(s) for s in sources), int(n_sites), int(mobile))

    def mask_of(self, known_down: npt.ArrayLike) -> IntArray:
        """Knowledge masks (N,) from known-down flags (N, S) bool (the phone's flag is ignored)."""
        flags = np.asarray(known_down, dtype=bool)
        out: IntArray = (flags * self.site_bit).sum(axis=-1).astype(np.int64)
        return out

    def placement_of(self, t: int, sites: npt.ArrayLike) -> IntArray:
        """Placement indices (N,) before task t from the sites every earlier task ran on, (N, t) or (N, T)
        ints (only the live tasks' columns are read)."""
        placed = np.asarray(sites, dtype=np.int64)
        live = self.tasks[t].live
        weights = self.n_sites ** np.arange(len(live), dtype=np.int64)
        out: IntArray = (
            (placed[:, list(live)] * weights).sum(axis=1) if live else np.zeros(len(placed), np.int64)
        )
        return out


def _live(sources: tuple[int, ...], t: int) -> tuple[int, ...]:
    return tuple(sorted({sources[k] for k in range(t, len(sources)) if 0 <= sources[k] < t}))


@lru_cache(maxsize=64)
def _structure(sources: tuple[int, ...], n_sites: int, mobile: int) -> DagStructure:
    if n_sites < 1 or not 0 <= mobile < n_sites:
        raise DecisionError(f"need at least one site and the phone among them, got {n_sites}, phone {mobile}")
    if not sources:
        raise DecisionError("an application needs at least one task")
    for t, source in enumerate(sources):
        if not -1 <= source < t:
            raise DecisionError(f"task {t}: source {source} is not an earlier task or -1 (the phone)")
    ranks = np.cumsum(np.arange(n_sites) != mobile) - 1
    site_bit = np.where(np.arange(n_sites) == mobile, 0, 1 << np.maximum(ranks, 0)).astype(np.int64)
    tasks = []
    for t in range(len(sources)):
        live, after = _live(sources, t), _live(sources, t + 1)
        count = n_sites ** len(live)
        if count * (1 << (n_sites - 1)) > MAX_STATES_PER_TASK:
            raise DecisionError(
                f"task {t}: {len(live)} results held at once on {n_sites} sites make {count} placements: too"
                f" many states (at most {MAX_STATES_PER_TASK} per task)"
            )
        digits = np.zeros((count, len(live)), dtype=np.int64)  # (F, len(live)): site of each live task
        for position in range(len(live)):
            digits[:, position] = np.arange(count) // n_sites**position % n_sites
        source = sources[t]
        input_site = digits[:, live.index(source)] if source >= 0 else np.full(count, mobile, np.int64)
        next_placement = np.zeros((count, n_sites), dtype=np.int64)
        for position, task in enumerate(after):
            column = (
                np.broadcast_to(np.arange(n_sites), (count, n_sites))
                if task == t
                else np.broadcast_to(digits[:, live.index(task), None], (count, n_sites))
            )
            next_placement += column * n_sites**position
        for array in (input_site, next_placement):
            array.setflags(write=False)
        tasks.append(TaskStates(live=live, input_site=input_site, next_placement=next_placement))
    site_bit.setflags(write=False)
    return DagStructure(
        sources=sources, n_sites=n_sites, mobile=mobile, tasks=tuple(tasks), site_bit=site_bit
    )
