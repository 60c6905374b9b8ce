"""The agent's view of the sites with its own, local reasons to avoid some of them (issue 10).

Besides what statuses and predictions say (:class:`~mobile_agent.planner.AgentView`), the agent avoids:

* a site that missed a deadline, until it hears from that site again (any status, profile, prediction or
  result of it): a hung site keeps its retained status and prediction for the detection time, longer than
  a task's deadline, and must not get a new task every deadline until then;
* every remote site for a short while after a site answered "store unavailable" and the agent cannot
  reach Redis either: the sites share Redis, so the next one would answer the same, and the task goes to
  the phone at once. When the agent does reach Redis, only that site is avoided (until heard from), as
  after a missed deadline: a site cut off from Redis, or one that lies (issue 14), stops only itself.
"""

from __future__ import annotations

import numpy as np

from edgeoff.scenario import Scenario
from mobile_agent.planner import AgentView

__all__ = ["AvoidingView"]


class AvoidingView(AgentView):
    """An AgentView whose `usable()` also leaves out the avoided sites (so `known_down()`, and with it the
    availability every engine decides on, edgeoff.knowledge, gives them 0)."""

    def __init__(self, scenario: Scenario, *, prior_availability: float = 1.0) -> None:
        super().__init__(scenario, prior_availability=prior_availability)
        self._index = {sid: i for i, sid in enumerate(scenario.site_ids)}
        self._avoided: set[int] = set()
        self._all_remote_avoided = False

    def avoid(self, site: str) -> None:
        """`site` missed a deadline: leave it out until :meth:`heard_from` it."""
        self._avoided.add(self._index[site])

    def heard_from(self, site: str) -> bool:
        """A message of `site` arrived; True when that ends avoiding it."""
        index = self._index.get(site)
        if index is None or index not in self._avoided:
            return False
        self._avoided.discard(index)
        return True

    def avoid_all_remote(self, avoided: bool) -> None:
        """Leave out (True) or take back (False) every remote site (the store is unavailable)."""
        self._all_remote_avoided = avoided

    def avoided(self) -> np.ndarray:
        """(S,) bool: the sites left out for the agent's own reasons; never the phone."""
        out = np.zeros(len(self.site_ids), dtype=bool)
        if self._all_remote_avoided:
            out[:] = True
        for index in self._avoided:
            out[index] = True
        out[self.mobile] = False
        return out

    def usable(self) -> np.ndarray:
        usable: np.ndarray = super().usable() & ~self.avoided()
        return usable
