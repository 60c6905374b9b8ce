"""Redis, the state of record: task claims with a lease and a fence, idempotent results, site sessions.

Keys (prefix `edgeoff:v1:`); every task key expires after the store's retention (`retention_s`, minutes):

| key                                         | value                    | written by                        |
|---------------------------------------------|--------------------------|-----------------------------------|
| site:{site}:task:{task_id}:{attempt}:claim  | site id, expires (lease) | the site the attempt was sent to  |
| site:{site}:task:{task_id}:{attempt}:result | msgpack TaskResult       | that site, once (NX)              |
| agent:{agent}:task:{task_id}:fence          | lowest attempt allowed   | the agent of the task (raise only)|
| site:{site}:session                         | counter (no expiry)      | INCR on every connect of the site |

Claims and results live under the site the agent sent the attempt to (its tasks topic names it): each
site's Redis user may write only its own keys (brokers/redis/users.acl), so no site can claim, pre-claim
or answer an attempt meant for another. A claim is `SET NX PX lease` inside a small Lua script that first
checks the task's fence and that no result exists, so neither a duplicate delivery nor a late duplicate
after the lease expired runs an attempt twice. A result is written with `SET NX`, so a re-run can never
overwrite the first result. Claims are per attempt: when an agent retries a task elsewhere (attempt + 1),
the new attempt is free. The session counter only grows by INCR (the site's Redis user may not SET it),
so a session number above it was never given to the site: readers ignore it (:meth:`TaskStore.session`).

Fencing (ARCHITECTURE rule 9): the fence of a task belongs to its agent, the only account that may write
it; sites only read it. The agent raises it to n before it publishes attempt n > 0
(:meth:`TaskStore.fence`: attempt 0 has nothing older to fence off, so the hot path writes nothing), and
above attempt n when it gives up on n or moves on (:meth:`TaskStore.cancel`). An attempt below the fence is
never claimed (`fenced`), so an older attempt never starts once the agent sent a newer one or gave up on
it. A site claims when it starts a task (the lease runs from execution start) and renews the lease while
the task runs (:meth:`TaskStore.renew`), which reads the fence too and so tells a running attempt that it
was cancelled. A fence that is not a number (only its own agent could write one) fences off everything.

A site under load claims the tasks waiting in its inbox together (:meth:`TaskStore.claim_outcomes`: one
script, one round trip, the same per-attempt rules applied to each task in order; a task Redis refuses
fails alone, the others are claimed). A task whose outcome is known without running it (a zero-cost
emulated task, a task the site cannot hold) is claimed and completed in the same atomic step: there is no
moment at which it is claimed but has no result.

Memory: every task key has a TTL and the session counters have none; brokers/redis/redis.conf evicts
`volatile-lru` at its `maxmemory`, so old results make room instead of making a claim fail.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import redis
from redis.backoff import FullJitterBackoff
from redis.retry import Retry

from edgeoff.wire.codec import decode_msgpack, encode_msgpack
from edgeoff.wire.errors import DecodeError, StoreError, TopicError
from edgeoff.wire.messages import TaskResult
from edgeoff.wire.settings import RedisSettings
from edgeoff.wire.topics import validate_id

__all__ = [
    "KEY_PREFIX",
    "MAX_LEASE_MS",
    "Claim",
    "ClaimOutcome",
    "TaskStore",
    "read_session",
    "redis_client",
]

log = logging.getLogger(__name__)

KEY_PREFIX = "edgeoff:v1:"  # versioned like the topics
DEFAULT_RETENTION_S = 600.0  # results are read by the agent within seconds; minutes leave room to debug
MAX_LEASE_MS = 24 * 3600 * 1000  # a claim outside (0, this] is refused: no task holds a site for longer

ClaimOutcome = Literal["claimed", "taken", "fenced", "refused"]
_OUTCOMES: dict[int, ClaimOutcome] = {1: "claimed", 0: "taken", 2: "fenced", 3: "refused"}

# Lua: the fence of the task in `key`, as a number: -1 when there is none; math.huge (fenced off) when it
# is not a number or Redis refuses to read it (a key of another type): only the agent could have written it.
_READ_FENCE = """
local function read_fence(key)
  local raw = redis.pcall('GET', key)
  if raw == false then return -1 end
  if type(raw) ~= 'string' then return math.huge end
  local floor = tonumber(raw)
  if floor == nil or floor ~= floor then return math.huge end
  return floor
end
"""

# KEYS: claim, result and fence key of each task, in triples; ARGV[1] site, ARGV[2] retention (ms), then per
# task its attempt, its lease (ms) and its result bytes ('' when it still has to run). Per task: 1 claimed,
# 0 taken or already done, 2 fenced (the agent sent a newer attempt, or gave up on this one), 3 refused (a
# command Redis refused: a key of another type, a bad lease). Every write is a pcall, so a task Redis
# refuses fails alone and the rest of the batch is still claimed. A task with result bytes is claimed for
# as long as the result lives and completed at once (as _COMPLETE_LUA). The fence is only read.
_CLAIM_BATCH_LUA = (
    _READ_FENCE
    + """
local out = {}
for i = 1, #KEYS / 3 do
  local claim, result, fence = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local attempt = tonumber(ARGV[3 * i])
  local lease = ARGV[3 * i + 1]
  local value = ARGV[3 * i + 2]
  if value ~= '' then lease = ARGV[2] end
  out[i] = 0
  local done = redis.pcall('EXISTS', result)
  if read_fence(fence) > attempt then
    out[i] = 2
  elseif type(done) ~= 'number' then
    out[i] = 3
  elseif done == 0 then
    local set = redis.pcall('SET', claim, ARGV[1], 'NX', 'PX', lease)
    if type(set) == 'table' and set.ok then
      out[i] = 1
      if value ~= '' then redis.pcall('SET', result, value, 'NX', 'PX', ARGV[2]) end
    elseif type(set) == 'table' then
      out[i] = 3
    end
  end
end
return out
"""
)

# KEYS[1] claim, KEYS[2] result; ARGV[1] result bytes, ARGV[2] retention (ms). 1 = stored, 0 = one existed.
_COMPLETE_LUA = """
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS[1] claim, KEYS[2] fence; ARGV[1] site, ARGV[2] lease (ms), ARGV[3] attempt. 1 = renewed; 0 = the claim
# is not this site's any more, or the attempt was fenced (cancelled): stop running it.
_RENEW_LUA = (
    _READ_FENCE
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if read_fence(KEYS[2]) > tonumber(ARGV[3]) then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
)

# KEYS[1] fence; ARGV[1] the lowest attempt still allowed, ARGV[2] retention (ms). Raises, never lowers (an
# unreadable fence is replaced); run by the agent, whose own key it is.
_FENCE_LUA = """
local floor = tonumber(redis.pcall('GET', KEYS[1]) or '-1') or -1
if tonumber(ARGV[1]) > floor then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""


@dataclass(frozen=True)
class Claim:
    """One attempt of `agent`'s task to claim for `lease_ms`; with `result` (encoded TaskResult) it is also
    completed. `agent` names the fence that guards it (the request's agent)."""

    task_id: str
    attempt: int
    lease_ms: int
    result: bytes | None = None
    agent: str = field(kw_only=True)


def redis_client(settings: RedisSettings) -> redis.Redis:
    """A client whose commands retry connection errors with full-jitter exponential backoff.

    One connection, no pool: a daemon makes one call at a time (a call from another thread, such as the
    session INCR on the MQTT thread, takes redis-py's lock of this connection), which saves the pool's
    checkout on every call.
    """
    backoff = FullJitterBackoff(cap=settings.backoff_cap_s, base=settings.backoff_base_s)
    retry = Retry(backoff, settings.retries)
    return redis.Redis.from_url(
        settings.url.get_secret_value(),
        **settings.credentials(),
        socket_timeout=settings.socket_timeout_s,
        socket_connect_timeout=settings.socket_timeout_s,
        retry=retry,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        health_check_interval=30,
        single_connection_client=True,
    )


def read_session(client: redis.Redis, site: str, *, prefix: str = KEY_PREFIX) -> int | None:
    """The last session number given to `site` (None: none yet); no real session is above it."""
    key = f"{prefix}site:{validate_id(site, what='site id')}:session"
    try:
        value = client.get(key)
    except redis.RedisError as exc:
        raise StoreError(f"session number of site {site}: {exc}") from exc
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StoreError(f"session number of site {site} is corrupt: {value!r:.40}") from None


class TaskStore:
    """Task claims, results and session counters in Redis; redis-py errors become StoreError."""

    def __init__(
        self, client: redis.Redis, *, prefix: str = KEY_PREFIX, retention_s: float = DEFAULT_RETENTION_S
    ) -> None:
        if not retention_s > 0:
            raise StoreError(f"retention must be positive, got {retention_s} s")
        self._redis = client
        self._prefix = prefix
        self._retention_ms = max(1, int(retention_s * 1000))
        self._complete = client.register_script(_COMPLETE_LUA)
        self._claim_batch = client.register_script(_CLAIM_BATCH_LUA)
        self._renew = client.register_script(_RENEW_LUA)
        self._fence = client.register_script(_FENCE_LUA)

    @classmethod
    def from_settings(cls, settings: RedisSettings) -> TaskStore:
        """A store whose commands retry connection errors with full-jitter exponential backoff."""
        return cls(redis_client(settings), retention_s=settings.retention_s)

    def close(self) -> None:
        self._redis.close()

    # ------------------------------------------------------------------ keys

    def _task_key(self, site: str, task_id: str, attempt: int, what: str) -> str:
        if attempt < 0:
            raise StoreError(f"attempt must be >= 0, got {attempt}")
        task = validate_id(task_id, what="task id")
        return f"{self._prefix}site:{validate_id(site, what='site id')}:task:{task}:{attempt}:{what}"

    def _fence_key(self, agent: str, task_id: str) -> str:
        task = validate_id(task_id, what="task id")
        return f"{self._prefix}agent:{validate_id(agent, what='agent id')}:task:{task}:fence"

    def _session_key(self, site: str) -> str:
        return f"{self._prefix}site:{validate_id(site, what='site id')}:session"

    # ------------------------------------------------------------------ operations

    def ping(self) -> bool:
        """True when Redis answers (after the configured retries)."""
        try:
            return bool(self._redis.ping())
        except redis.RedisError:
            return False

    def claim_task(self, task_id: str, attempt: int, site: str, lease_ms: int, *, agent: str) -> bool:
        """Claim one attempt of `agent`'s task for `site` for `lease_ms`; False when claimed, done, fenced
        or refused."""
        return self.claim_outcomes(site, [Claim(task_id, attempt, lease_ms, agent=agent)])[0] == "claimed"

    def claim_tasks(self, site: str, claims: Sequence[Claim]) -> list[bool]:
        """Claim attempts for `site` in one round trip, in order; True for each attempt this call claimed."""
        return [outcome == "claimed" for outcome in self.claim_outcomes(site, claims)]

    def claim_outcomes(self, site: str, claims: Sequence[Claim]) -> list[ClaimOutcome]:
        """Claim attempts for `site` in one round trip, in order: claimed, taken (or done), fenced or
        refused.

        Same rules as :meth:`claim_task` for each attempt (a second claim of an attempt in the same call
        fails too). A claim with a result is completed in the same atomic step (as :meth:`complete_task`).
        A claim that cannot be made (an invalid id, attempt or lease, an empty result, a command Redis
        refuses) is `refused` alone: the others are still claimed. StoreError when Redis cannot be reached.
        """
        out: list[ClaimOutcome] = ["refused"] * len(claims)
        valid: list[int] = []
        keys: list[str] = []
        args: list[str | int | bytes] = [validate_id(site, what="site id"), self._retention_ms]
        for n, claim in enumerate(claims):
            if not 0 < claim.lease_ms <= MAX_LEASE_MS or (claim.result is not None and not claim.result):
                continue
            try:
                triple = [
                    self._task_key(site, claim.task_id, claim.attempt, "claim"),
                    self._task_key(site, claim.task_id, claim.attempt, "result"),
                    self._fence_key(claim.agent, claim.task_id),
                ]
            except (StoreError, TopicError):
                continue
            valid.append(n)
            keys.extend(triple)
            args += [claim.attempt, claim.lease_ms, b"" if claim.result is None else claim.result]
        if not valid:
            return out
        try:
            reply = self._claim_batch(keys=keys, args=args)
        except redis.RedisError as exc:
            raise StoreError(f"claim of {len(valid)} tasks: {exc}") from exc
        if not isinstance(reply, list) or len(reply) != len(valid):
            raise StoreError(f"claim of {len(valid)} tasks: unexpected reply {reply!r:.80}")
        try:
            for n, code in zip(valid, reply, strict=True):
                out[n] = _OUTCOMES[int(code)]
        except (KeyError, ValueError):
            raise StoreError(f"claim of {len(valid)} tasks: unexpected reply {reply!r:.80}") from None
        return out

    def renew(self, task_id: str, attempt: int, site: str, lease_ms: int, *, agent: str) -> bool:
        """Extend `site`'s lease of a running attempt of `agent`'s task; False when the claim is gone or the
        agent fenced the attempt off (cancelled it): stop running it."""
        if not 0 < lease_ms <= MAX_LEASE_MS:
            raise StoreError(f"lease must be in (0, {MAX_LEASE_MS}] ms, got {lease_ms} ms")
        keys = [self._task_key(site, task_id, attempt, "claim"), self._fence_key(agent, task_id)]
        try:
            args: list[str | int] = [validate_id(site, what="site id"), lease_ms, attempt]
            return int(self._renew(keys=keys, args=args)) == 1
        except redis.RedisError as exc:
            raise StoreError(f"lease of task {task_id} attempt {attempt}: {exc}") from exc

    def fence(self, task_id: str, attempt: int, *, agent: str) -> None:
        """`agent` is about to send `attempt`: no older attempt of the task starts from now on."""
        if attempt < 0:
            raise StoreError(f"attempt must be >= 0, got {attempt}")
        try:
            self._fence(keys=[self._fence_key(agent, task_id)], args=[attempt, self._retention_ms])
        except redis.RedisError as exc:
            raise StoreError(f"fence of task {task_id} at attempt {attempt}: {exc}") from exc

    def cancel(self, task_id: str, attempt: int, *, agent: str) -> None:
        """`agent` gave up on `attempt` (and every older one): none of them starts from now on, and a
        running one stops at its next lease renewal."""
        self.fence(task_id, attempt + 1, agent=agent)

    def fence_of(self, task_id: str, *, agent: str) -> int | None:
        """The lowest attempt of `agent`'s task still allowed to start (None: no fence yet)."""
        try:
            raw = self._redis.get(self._fence_key(agent, task_id))
        except redis.RedisError as exc:
            raise StoreError(f"fence of task {task_id}: {exc}") from exc
        if raw is None:
            return None
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise StoreError(f"fence of task {task_id} is corrupt: {raw!r:.40}") from None

    def claim_owner(self, site: str, task_id: str, attempt: int) -> str | None:
        """The site holding the claim of an attempt sent to `site` (that site, or None when unclaimed)."""
        try:
            owner = self._redis.get(self._task_key(site, task_id, attempt, "claim"))
        except redis.RedisError as exc:
            raise StoreError(f"claim owner of task {task_id}: {exc}") from exc
        return owner.decode("utf-8") if isinstance(owner, bytes) else None

    def complete_task(self, result: TaskResult) -> bool:
        """Store the result of an attempt unless one exists; True when this call stored it."""
        keys = [
            self._task_key(result.site, result.task_id, result.attempt, "claim"),
            self._task_key(result.site, result.task_id, result.attempt, "result"),
        ]
        try:
            return int(self._complete(keys=keys, args=[encode_msgpack(result), self._retention_ms])) == 1
        except redis.RedisError as exc:
            raise StoreError(f"result of task {result.task_id} attempt {result.attempt}: {exc}") from exc

    def get_result(self, site: str, task_id: str, attempt: int) -> TaskResult | None:
        """The stored result of an attempt sent to `site`, or None."""
        try:
            data = self._redis.get(self._task_key(site, task_id, attempt, "result"))
        except redis.RedisError as exc:
            raise StoreError(f"result of task {task_id} attempt {attempt}: {exc}") from exc
        if not isinstance(data, bytes):
            return None
        try:
            return decode_msgpack(TaskResult, data)
        except DecodeError as exc:
            raise StoreError(f"stored result of task {task_id} attempt {attempt} is corrupt: {exc}") from exc

    def next_session(self, site: str) -> int:
        """A new session number for `site`, higher than every earlier one (INCR)."""
        try:
            # INCR itself: redis-py's incr() sends INCRBY, which the site's Redis user may not run (a
            # site that could add any amount could make its session jump to a value it forged earlier)
            reply = self._redis.execute_command("INCR", self._session_key(site))  # type: ignore[no-untyped-call]
            return int(reply)
        except (redis.RedisError, ValueError) as exc:
            raise StoreError(f"session number of site {site}: {exc}") from exc

    def session(self, site: str) -> int | None:
        """The last session number given to `site` (None: none yet); no real session is above it."""
        return read_session(self._redis, site, prefix=self._prefix)
