"""Redis, the state of record: task claims with a lease and a fence, idempotent results, site sessions.

Keys (prefix `edgeoff:v1:`); every task key expires after the store's retention (`retention_s`, minutes):

| key                                   | value                       | written by                         |
|---------------------------------------|-----------------------------|------------------------------------|
| task:{task_id}:{attempt}:claim        | site id, expires (lease)    | the first site to start the attempt|
| task:{task_id}:{attempt}:result       | msgpack TaskResult          | the site that ran it, once (NX)    |
| task:{task_id}:fence                  | lowest attempt still allowed| a claim (its attempt), a cancel    |
| site:{site}:session                   | counter (no expiry)         | INCR on every connect of the site  |

A claim is `SET NX PX lease` inside a small Lua script that first checks the fence and that no result
exists, so neither a duplicate delivery nor a second site, nor a late duplicate after the lease expired,
runs an attempt twice. A result is written with `SET NX`, so a re-run can never overwrite the first result.
Claims are per attempt: when an agent retries a task elsewhere (attempt + 1), the new attempt is free.

Fencing (ARCHITECTURE rule 9): a successful claim of attempt a raises the task's fence to a, and an agent
that gives up on attempt a raises it to a + 1 (:meth:`TaskStore.cancel`); an attempt below the fence is
never claimed (`fenced`), so an older attempt never starts after a newer one was claimed or the agent moved
on. A site claims when it starts a task (the lease runs from execution start) and renews the lease while
the task runs (:meth:`TaskStore.renew`), which also tells it when the attempt was cancelled.

A site under load claims the tasks waiting in its inbox together (:meth:`TaskStore.claim_tasks`: one
script, one round trip, the same per-attempt rules applied to each task in order). A task whose outcome is
known without running it (a zero-cost emulated task, a task the site cannot hold) is claimed and completed
in the same atomic step: there is no moment at which it is claimed but has no result.

Memory: every task key has a TTL and the session counters have none; brokers/redis/redis.conf evicts
`volatile-lru` at its `maxmemory`, so old results make room instead of making a claim fail.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import redis
from redis.backoff import FullJitterBackoff
from redis.retry import Retry

from edgeoff.wire.codec import decode_msgpack, encode_msgpack
from edgeoff.wire.errors import DecodeError, StoreError
from edgeoff.wire.messages import TaskResult
from edgeoff.wire.settings import RedisSettings
from edgeoff.wire.topics import validate_id

__all__ = ["KEY_PREFIX", "Claim", "ClaimOutcome", "TaskStore", "redis_client"]

log = logging.getLogger(__name__)

KEY_PREFIX = "edgeoff:v1:"  # versioned like the topics
DEFAULT_RETENTION_S = 600.0  # results are read by the agent within seconds; minutes leave room to debug

ClaimOutcome = Literal["claimed", "taken", "fenced"]
_OUTCOMES: dict[int, ClaimOutcome] = {1: "claimed", 0: "taken", 2: "fenced"}

# KEYS: claim, result and fence key of each task, in triples; ARGV[1] site, ARGV[2] retention (ms), then per
# task its attempt, its lease (ms) and its result bytes ('' when it still has to run). Per task: 1 claimed,
# 0 taken or already done, 2 fenced (a newer attempt was claimed, or the agent cancelled this one); attempt 0
# has no older attempt to fence off, so its claim writes no fence (one write less on the hot path). A task
# with result bytes is claimed for as long as the result lives and completed at once (as _COMPLETE_LUA).
_CLAIM_BATCH_LUA = """
local out = {}
for i = 1, #KEYS / 3 do
  local claim, result, fence = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local attempt = tonumber(ARGV[3 * i])
  local lease = ARGV[3 * i + 1]
  local value = ARGV[3 * i + 2]
  if value ~= '' then lease = ARGV[2] end
  local floor = tonumber(redis.call('GET', fence) or '-1')
  out[i] = 0
  if floor > attempt then
    out[i] = 2
  elseif redis.call('EXISTS', result) == 0 and redis.call('SET', claim, ARGV[1], 'NX', 'PX', lease) then
    out[i] = 1
    if attempt > floor and attempt > 0 then redis.call('SET', fence, attempt, 'PX', ARGV[2]) end
    if value ~= '' then redis.call('SET', result, value, 'NX', 'PX', ARGV[2]) end
  end
end
return out
"""

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
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(redis.call('GET', KEYS[2]) or '-1') > tonumber(ARGV[3]) then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS[1] fence; ARGV[1] the lowest attempt still allowed, ARGV[2] retention (ms). Raises, never lowers.
_FENCE_LUA = """
local floor = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > floor then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""


@dataclass(frozen=True)
class Claim:
    """One attempt to claim for `lease_ms`; with `result` (encoded TaskResult) it is also completed."""

    task_id: str
    attempt: int
    lease_ms: int
    result: bytes | None = None


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
        socket_timeout=settings.socket_timeout_s,
        socket_connect_timeout=settings.socket_timeout_s,
        retry=retry,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        health_check_interval=30,
        single_connection_client=True,
    )


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

    def _task_key(self, task_id: str, attempt: int, what: str) -> str:
        if attempt < 0:
            raise StoreError(f"attempt must be >= 0, got {attempt}")
        return f"{self._prefix}task:{validate_id(task_id, what='task id')}:{attempt}:{what}"

    def _fence_key(self, task_id: str) -> str:
        return f"{self._prefix}task:{validate_id(task_id, what='task id')}:fence"

    def _session_key(self, site: str) -> str:
        return f"{self._prefix}site:{validate_id(site, what='site id')}:session"

    # ------------------------------------------------------------------ operations

    def ping(self) -> bool:
        """True when Redis answers (after the configured retries)."""
        try:
            return bool(self._redis.ping())
        except redis.RedisError:
            return False

    def claim_task(self, task_id: str, attempt: int, site: str, lease_ms: int) -> bool:
        """Claim one attempt of a task for `site` for `lease_ms`; False when claimed, done or fenced."""
        return self.claim_tasks(site, [Claim(task_id, attempt, lease_ms)])[0]

    def claim_tasks(self, site: str, claims: Sequence[Claim]) -> list[bool]:
        """Claim attempts for `site` in one round trip, in order; True for each attempt this call claimed."""
        return [outcome == "claimed" for outcome in self.claim_outcomes(site, claims)]

    def claim_outcomes(self, site: str, claims: Sequence[Claim]) -> list[ClaimOutcome]:
        """Claim attempts for `site` in one round trip, in order: claimed, taken (or done) or fenced.

        Same rules as :meth:`claim_task` for each attempt (a second claim of an attempt in the same call
        fails too). A claim with a result is completed in the same atomic step (as :meth:`complete_task`).
        """
        if not claims:
            return []
        keys: list[str] = []
        args: list[str | int | bytes] = [validate_id(site, what="site id"), self._retention_ms]
        for claim in claims:
            if claim.lease_ms <= 0:
                raise StoreError(f"lease must be positive, got {claim.lease_ms} ms")
            if claim.result is not None and not claim.result:
                raise StoreError(f"empty result of task {claim.task_id}")
            keys.append(self._task_key(claim.task_id, claim.attempt, "claim"))
            keys.append(self._task_key(claim.task_id, claim.attempt, "result"))
            keys.append(self._fence_key(claim.task_id))
            args += [claim.attempt, claim.lease_ms, b"" if claim.result is None else claim.result]
        try:
            reply = self._claim_batch(keys=keys, args=args)
        except redis.RedisError as exc:
            raise StoreError(f"claim of {len(claims)} tasks: {exc}") from exc
        if not isinstance(reply, list) or len(reply) != len(claims):
            raise StoreError(f"claim of {len(claims)} tasks: unexpected reply {reply!r:.80}")
        try:
            return [_OUTCOMES[int(code)] for code in reply]
        except (KeyError, ValueError):
            raise StoreError(f"claim of {len(claims)} tasks: unexpected reply {reply!r:.80}") from None

    def renew(self, task_id: str, attempt: int, site: str, lease_ms: int) -> bool:
        """Extend `site`'s lease of a running attempt; False when the claim is gone or the attempt fenced."""
        if lease_ms <= 0:
            raise StoreError(f"lease must be positive, got {lease_ms} ms")
        keys = [self._task_key(task_id, attempt, "claim"), self._fence_key(task_id)]
        try:
            args: list[str | int] = [validate_id(site, what="site id"), lease_ms, attempt]
            return int(self._renew(keys=keys, args=args)) == 1
        except redis.RedisError as exc:
            raise StoreError(f"lease of task {task_id} attempt {attempt}: {exc}") from exc

    def cancel(self, task_id: str, attempt: int) -> None:
        """The agent gave up on `attempt` (and every older one): none of them starts from now on."""
        if attempt < 0:
            raise StoreError(f"attempt must be >= 0, got {attempt}")
        try:
            self._fence(keys=[self._fence_key(task_id)], args=[attempt + 1, self._retention_ms])
        except redis.RedisError as exc:
            raise StoreError(f"cancel of task {task_id} attempt {attempt}: {exc}") from exc

    def claim_owner(self, task_id: str, attempt: int) -> str | None:
        """The site holding the claim of an attempt, if any."""
        try:
            owner = self._redis.get(self._task_key(task_id, attempt, "claim"))
        except redis.RedisError as exc:
            raise StoreError(f"claim owner of task {task_id}: {exc}") from exc
        return owner.decode("utf-8") if isinstance(owner, bytes) else None

    def complete_task(self, result: TaskResult) -> bool:
        """Store the result of an attempt unless one exists; True when this call stored it."""
        keys = [
            self._task_key(result.task_id, result.attempt, "claim"),
            self._task_key(result.task_id, result.attempt, "result"),
        ]
        try:
            return int(self._complete(keys=keys, args=[encode_msgpack(result), self._retention_ms])) == 1
        except redis.RedisError as exc:
            raise StoreError(f"result of task {result.task_id} attempt {result.attempt}: {exc}") from exc

    def get_result(self, task_id: str, attempt: int) -> TaskResult | None:
        """The stored result of an attempt, or None."""
        try:
            data = self._redis.get(self._task_key(task_id, attempt, "result"))
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
            return int(self._redis.incr(self._session_key(site)))
        except redis.RedisError as exc:
            raise StoreError(f"session number of site {site}: {exc}") from exc
