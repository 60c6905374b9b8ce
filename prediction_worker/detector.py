"""Failure detectors over site heartbeats and birth/death statuses: pure, time injected.

Every method takes `now`, the worker's monotonic clock in seconds; nothing here reads a clock, a socket
or the environment, so tests and the offline simulator drive the detectors directly.

Two detectors share the session bookkeeping of :class:`SessionDetector`:

* :class:`FixedTimeoutDetector`: the paper's detector. A site is suspected when no heartbeat of its
  current session arrived for `interval_s * missed` seconds (150 ms x 10 = 1.5 s).
* :class:`PhiAccrualDetector`: Hayashibara et al., "The phi accrual failure detector" (SRDS 2004), with
  the logistic approximation of the normal tail used by Akka. From the mean and standard deviation of the
  last `window` inter-arrival times, phi(t) = -log10 P(a heartbeat arrives later than t after the last
  one); the site is suspected when phi > `threshold`.

Sessions (ARCHITECTURE's wire contract, Sparkplug's bdSeq rule), per site:

* a heartbeat of an older session than the current one is ignored (a late packet of a dead session);
* a heartbeat or an `online` status of a newer session starts that session (arrival history reset);
* an `offline` status of the current or a newer session makes the site down at once and ends the
  session: later heartbeats of it are ignored; an `offline` of an older session is ignored (a late Last
  Will of a previous connection);
* an `online` of the current session changes nothing (a retained copy re-delivered after a reconnect).

A detector returns verdict transitions as frozen :class:`Verdict` events (`up` or `down`, with the time
they were decided); `poll(now)` yields the down verdicts of silence, `suspected(site, now)` answers for
one site. :class:`Shard` (which sites one worker of several watches) lives here too: it is the detector's
scope.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "DEFAULT_HEARTBEAT_S",
    "DEFAULT_MISSED",
    "Detector",
    "FixedTimeoutDetector",
    "PhiAccrualDetector",
    "SessionDetector",
    "Shard",
    "Verdict",
    "VerdictReason",
    "phi",
]

DEFAULT_HEARTBEAT_S = 0.15  # the paper's heartbeat interval (scenario [detection] heartbeat_ms)
DEFAULT_MISSED = 10  # the paper's missed heartbeats before a site is declared down
DEFAULT_PHI_THRESHOLD = 8.0  # Akka's default: P(false suspicion per check) ~ 1e-8 under the normal model
DEFAULT_PHI_WINDOW = 100  # inter-arrival samples kept (Akka: 1000 for 1 s heartbeats; 15 s of ours)
DEFAULT_PHI_MIN_STD_S = 0.05  # floor of the std: a perfectly regular sender must not make phi explode
DEFAULT_PHI_PAUSE_S = 0.3  # acceptable pause added to the mean: two lost heartbeats are not a failure
PHI_MAX = 1e6  # phi when the tail probability underflows (a silence of many standard deviations)

VerdictReason = Literal["heartbeat", "online", "offline", "timeout", "phi"]


@dataclass(frozen=True)
class Verdict:
    """A transition of a site's up/down state, decided at monotonic time `at` for session `session`."""

    site: str
    up: bool
    session: int
    at: float
    reason: VerdictReason


@dataclass
class _SiteState:
    session: int
    up: bool | None = None  # None: nothing decided yet for this site
    ended: bool = False  # an offline of this session was seen: its heartbeats are late packets
    last_arrival: float | None = None
    intervals: deque[float] = field(default_factory=deque)


class SessionDetector:
    """Session bookkeeping shared by the detectors; subclasses define :meth:`suspected_state`."""

    def __init__(self) -> None:
        self._sites: dict[str, _SiteState] = {}

    # ------------------------------------------------------------------ what subclasses decide

    def suspected_state(self, state: _SiteState, now: float) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def silence_reason(self) -> VerdictReason:  # pragma: no cover - abstract
        raise NotImplementedError

    def _record_interval(self, state: _SiteState, interval_s: float) -> None:
        """Keep an inter-arrival time (phi only)."""

    # ------------------------------------------------------------------ inputs

    def heartbeat(self, site: str, session: int, now: float) -> list[Verdict]:
        """A heartbeat of `session` arrived at `now`; returns the up verdict when the site comes up."""
        state = self._sites.get(site)
        if state is None or session > state.session:
            state = _SiteState(session=session, up=state.up if state is not None else None)
            self._sites[site] = state
        elif session < state.session or state.ended:
            return []  # a late heartbeat of an older or ended session
        if state.last_arrival is not None and state.up:  # a gap that ended a suspicion is no sample
            self._record_interval(state, max(0.0, now - state.last_arrival))
        state.last_arrival = now if state.last_arrival is None else max(now, state.last_arrival)
        if state.up is not True:
            state.up = True
            return [Verdict(site, True, session, now, "heartbeat")]
        return []

    def status(
        self, site: str, state_name: Literal["online", "offline"], session: int, now: float
    ) -> list[Verdict]:
        """A birth (`online`) or death (`offline`) status of `session` arrived at `now`."""
        state = self._sites.get(site)
        if state is not None and session < state.session:
            return []  # a late will or a stale birth of an older session
        if state_name == "offline":
            if state is None or session > state.session:
                state = _SiteState(session=session, up=state.up if state is not None else None)
                self._sites[site] = state
            state.ended = True
            state.last_arrival = None
            if state.up is not False:
                state.up = False
                return [Verdict(site, False, session, now, "offline")]
            return []
        if state is not None and session == state.session:
            return []  # a re-delivered birth of the current session
        previous_up = state.up if state is not None else None
        state = _SiteState(session=session, up=previous_up, last_arrival=now)  # birth starts the timer
        self._sites[site] = state
        if previous_up is not True:
            state.up = True
            return [Verdict(site, True, session, now, "online")]
        return []

    def poll(self, now: float) -> list[Verdict]:
        """Down verdicts for every site that is up and now suspected."""
        verdicts: list[Verdict] = []
        for site, state in self._sites.items():
            if state.up and self.suspected_state(state, now):
                state.up = False
                verdicts.append(Verdict(site, False, state.session, now, self.silence_reason))
        return verdicts

    def resync(self, now: float) -> None:
        """The detector itself was cut off or stalled until `now`: its silence is no evidence against
        anybody, so every site's timer starts again from `now` (no interval sample is taken)."""
        for state in self._sites.values():
            if state.up and state.last_arrival is not None:
                state.last_arrival = max(state.last_arrival, now)

    def forget(self, site: str) -> None:
        """Stop tracking `site` (it left this worker's shard)."""
        self._sites.pop(site, None)

    # ------------------------------------------------------------------ queries

    def suspected(self, site: str, now: float) -> bool:
        """True when `site` is down, or up but silent for too long at `now`; False for an unknown site."""
        state = self._sites.get(site)
        if state is None or state.up is None:
            return False
        return not state.up or self.suspected_state(state, now)

    def is_up(self, site: str) -> bool | None:
        """The last verdict for `site` (None: none yet)."""
        state = self._sites.get(site)
        return state.up if state is not None else None

    def session(self, site: str) -> int | None:
        state = self._sites.get(site)
        return state.session if state is not None else None

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(self._sites)


class FixedTimeoutDetector(SessionDetector):
    """Suspect a site after `interval_s * missed` seconds without a heartbeat of its current session."""

    def __init__(self, interval_s: float = DEFAULT_HEARTBEAT_S, missed: int = DEFAULT_MISSED) -> None:
        if not (math.isfinite(interval_s) and interval_s > 0):
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        if missed < 1:
            raise ValueError(f"missed must be >= 1, got {missed}")
        super().__init__()
        self.interval_s = interval_s
        self.missed = missed
        self.timeout_s = interval_s * missed

    @property
    def silence_reason(self) -> VerdictReason:
        return "timeout"

    def suspected_state(self, state: _SiteState, now: float) -> bool:
        return state.last_arrival is None or now - state.last_arrival >= self.timeout_s


def phi(elapsed_s: float, mean_s: float, std_s: float) -> float:
    """-log10 P(X > elapsed) for X ~ Normal(mean, std), by the logistic approximation (Akka).

    P(X > t) ~= 1 / (1 + exp(y (1.5976 + 0.070566 y^2))), y = (t - mean) / std; the form below avoids the
    cancellation of 1 - CDF for large y.
    """
    y = (elapsed_s - mean_s) / std_s
    exponent = -y * (1.5976 + 0.070566 * y * y)
    if exponent < -700:  # exp underflows: P(X > t) ~= exp(exponent)
        return min(PHI_MAX, -exponent / math.log(10))
    e = math.exp(exponent)
    tail = e / (1.0 + e) if elapsed_s > mean_s else 1.0 - 1.0 / (1.0 + e)
    if tail <= 0.0:
        return PHI_MAX
    return -math.log10(tail)


class PhiAccrualDetector(SessionDetector):
    """Suspect a site when phi of its silence exceeds `threshold`.

    Args:
        threshold: phi above which a site is suspected (8: tail probability 1e-8).
        window: inter-arrival times kept per session.
        min_std_s: floor of the standard deviation, seconds.
        acceptable_pause_s: added to the mean inter-arrival time (lost heartbeats that are not a failure).
        first_interval_s: assumed interval until the session's second heartbeat (the sender's nominal
            interval); the first estimate uses mean = first_interval_s, std = first_interval_s / 4 (Akka).
    """

    def __init__(
        self,
        threshold: float = DEFAULT_PHI_THRESHOLD,
        window: int = DEFAULT_PHI_WINDOW,
        min_std_s: float = DEFAULT_PHI_MIN_STD_S,
        *,
        acceptable_pause_s: float = DEFAULT_PHI_PAUSE_S,
        first_interval_s: float = DEFAULT_HEARTBEAT_S,
    ) -> None:
        if not (math.isfinite(threshold) and threshold > 0):
            raise ValueError(f"threshold must be positive, got {threshold}")
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        if not (min_std_s > 0 and acceptable_pause_s >= 0 and first_interval_s > 0):
            raise ValueError("min_std_s and first_interval_s must be positive, acceptable_pause_s >= 0")
        super().__init__()
        self.threshold = threshold
        self.window = window
        self.min_std_s = min_std_s
        self.acceptable_pause_s = acceptable_pause_s
        self.first_interval_s = first_interval_s

    @property
    def silence_reason(self) -> VerdictReason:
        return "phi"

    def _record_interval(self, state: _SiteState, interval_s: float) -> None:
        state.intervals.append(interval_s)
        while len(state.intervals) > self.window:
            state.intervals.popleft()

    def _estimate(self, state: _SiteState) -> tuple[float, float]:
        if not state.intervals:
            return self.first_interval_s, max(self.first_interval_s / 4.0, self.min_std_s)
        n = len(state.intervals)
        mean = sum(state.intervals) / n
        variance = sum((x - mean) ** 2 for x in state.intervals) / n
        return mean, max(math.sqrt(variance), self.min_std_s)

    def phi_of(self, site: str, now: float) -> float:
        """phi of `site` at `now` (0 for an unknown site or one without a heartbeat of its session)."""
        state = self._sites.get(site)
        if state is None or state.last_arrival is None:
            return 0.0
        return self._phi(state, now)

    def _phi(self, state: _SiteState, now: float) -> float:
        assert state.last_arrival is not None
        mean, std = self._estimate(state)
        return phi(now - state.last_arrival, mean + self.acceptable_pause_s, std)

    def suspected_state(self, state: _SiteState, now: float) -> bool:
        return state.last_arrival is None or self._phi(state, now) > self.threshold


Detector = FixedTimeoutDetector | PhiAccrualDetector

_SHARD = re.compile(r"(\d{1,4})/(\d{1,4})")


@dataclass(frozen=True)
class Shard:
    """Worker `index` of `count` owns the sites whose stable hash mod `count` equals `index`.

    The hash is the first 8 bytes of BLAKE2b of the site id (Python's `hash` is salted per process, so two
    workers would disagree); every site has exactly one owner among `0/n .. n-1/n`.
    """

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not (self.count >= 1 and 0 <= self.index < self.count):
            raise ValueError(f"shard must be i/n with 0 <= i < n, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`"i/n"` -> Shard(i, n); ValueError otherwise."""
        match = _SHARD.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"shard must look like i/n (e.g. 0/2), got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @staticmethod
    def bucket(site: str, count: int) -> int:
        digest = hashlib.blake2b(site.encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "big") % count

    def owns(self, site: str) -> bool:
        return self.count == 1 or self.bucket(site, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
