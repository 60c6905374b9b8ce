"""The agent's view of the sites (pure): statuses with the session rule, profiles, predictions.

An offline status older than the current online session is stale; a prediction with model
``detector:down`` marks the site as suspected by the failure detector. `known_down` (offline or
suspected) and `forecasts` are what edgeoff.knowledge combines into the availability an engine uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgeoff.scenario import Scenario
from edgeoff.wire.messages import DOWN_MODEL, Prediction, SiteProfile, SiteStatus

__all__ = ["AgentView", "Change"]

Change = Literal["ignored", "unchanged", "changed", "down", "up"]


@dataclass
class _SiteState:
    session: int = -1
    online: bool = False
    profile: SiteProfile | None = None
    prediction: Prediction | None = None

    @property
    def suspected(self) -> bool:
        return self.prediction is not None and self.prediction.model == DOWN_MODEL

    @property
    def usable(self) -> bool:
        return self.online and not self.suspected


class AgentView:
    """What the agent knows of every site of the scenario; the phone is always usable."""

    def __init__(self, scenario: Scenario, *, prior_availability: float = 1.0) -> None:
        self.site_ids = scenario.site_ids
        self.mobile = scenario.mobile_index
        self._scenario_memory = scenario.memory_gb
        self._prior = prior_availability
        self._sites = {sid: _SiteState() for i, sid in enumerate(self.site_ids) if i != self.mobile}

    def apply_status(self, site: str, status: SiteStatus) -> Change:
        """A retained or live status: `down`/`up` when the site's usability flips."""
        state = self._sites.get(site)
        if state is None or status.session < state.session:
            return "ignored"  # unknown site, or a late will of an older session (Sparkplug's bdSeq rule)
        before = state.usable
        state.session = status.session
        state.online = status.state == "online"
        return _flip(before, state.usable)

    def apply_profile(self, site: str, profile: SiteProfile) -> Change:
        state = self._sites.get(site)
        if state is None or profile.site != site:
            return "ignored"
        changed = state.profile != profile
        state.profile = profile
        return "changed" if changed else "unchanged"

    def apply_prediction(self, site: str, prediction: Prediction) -> Change:
        """A prediction: `down`/`up` when the detector's verdict flips usability, `changed` when the value
        the engines use changes; an older version of the same worker epoch than the one held is ignored
        (one of another epoch is news: a forged version cannot hide the worker's next epoch)."""
        state = self._sites.get(site)
        if state is None or prediction.site != site:
            return "ignored"
        old = state.prediction
        if old is not None and prediction.epoch == old.epoch and prediction.version < old.version:
            return "ignored"
        before = state.usable
        state.prediction = prediction
        flip = _flip(before, state.usable)
        if flip != "unchanged":
            return flip
        same = old is not None and (old.availability, old.model) == (
            prediction.availability,
            prediction.model,
        )
        return "unchanged" if same else "changed"

    def usable(self) -> np.ndarray:
        """(S,) bool: online and not suspected by the detector; the phone always."""
        return np.array(
            [i == self.mobile or self._sites[sid].usable for i, sid in enumerate(self.site_ids)], dtype=bool
        )

    def forecasts(self) -> np.ndarray:
        """(S,) the latest window forecast per site (the prior without one; 1 for the phone)."""
        out = np.ones(len(self.site_ids))
        for i, sid in enumerate(self.site_ids):
            if i == self.mobile:
                continue
            prediction = self._sites[sid].prediction
            out[i] = prediction.availability if prediction is not None else self._prior
        return out

    def known_down(self) -> np.ndarray:
        """(S,) bool: the sites the agent knows are down (offline, or suspected by the detector)."""
        return ~self.usable()

    def memory_gb(self) -> np.ndarray:
        """(S,) memory per site: the profile's when one was received, else the scenario's."""
        out = self._scenario_memory.copy()
        for i, sid in enumerate(self.site_ids):
            state = self._sites.get(sid)
            if state is not None and state.profile is not None:
                out[i] = state.profile.memory_gb
        return out

    def prediction_versions(self) -> dict[str, int]:
        return {sid: s.prediction.version for sid, s in self._sites.items() if s.prediction is not None}

    def online_sites(self) -> tuple[str, ...]:
        return tuple(sid for sid, s in self._sites.items() if s.online)


def _flip(before: bool, after: bool) -> Change:
    if before == after:
        return "unchanged"
    return "up" if after else "down"
