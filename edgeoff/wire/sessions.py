"""Which site session numbers are real: none above the site's counter in Redis.

A site's session number comes only from Redis (INCR on every connect; the site's Redis user may not SET
or INCRBY its counter, see brokers/redis/users.acl), so a status or heartbeat whose session is above the
counter was never given to the site: a forgery (or a corrupt message), which readers ignore. Before this
rule one retained status with session 10^30 made a site unusable for good, as every real session was
"older".

:class:`SessionBound` keeps the last counter it read per site and reads it again only for a session above
that, at most once per `reread_s` per site, so a flood of forged sessions costs one Redis read per site
per `reread_s` and real traffic (sessions at or below the counter) none at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from edgeoff.wire.errors import StoreError

__all__ = ["DEFAULT_REREAD_S", "SessionBound"]

DEFAULT_REREAD_S = 0.25  # well below the detection time (1.5 s): a real new session waits at most this


class SessionBound:
    """`plausible(site, session)`: True when Redis gave `session` to `site` (it is at most the counter)."""

    def __init__(
        self,
        read: Callable[[str], int | None],
        *,
        reread_s: float = DEFAULT_REREAD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read  # the counter of a site (None: no session given yet); raises StoreError
        self._reread_s = reread_s
        self._clock = clock
        self._known: dict[str, int] = {}  # site -> the highest counter value read
        self._read_at: dict[str, float] = {}

    def plausible(self, site: str, session: int) -> bool:
        """False for a session above the site's counter (re-read when due); True otherwise."""
        if session <= self._known.get(site, 0):
            return True
        now = self._clock()
        last = self._read_at.get(site)
        if last is not None and now - last < self._reread_s:
            return False
        self._read_at[site] = now
        try:
            counter = self._read(site)
        except StoreError:
            return False  # unverifiable: a session already known stays usable, a higher one waits
        if counter is not None and counter > self._known.get(site, 0):
            self._known[site] = counter
        return session <= self._known.get(site, 0)

    def counter(self, site: str) -> int:
        """The highest counter of `site` read so far (0: none)."""
        return self._known.get(site, 0)
