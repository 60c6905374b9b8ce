"""Redis, the state of record: task claims with a lease, idempotent results, site session numbers.

Keys (prefix `edgeoff:v1:`):

| key                                         | value                    | written by                        |
|---------------------------------------------|--------------------------|-----------------------------------|
| site:{site}:task:{task_id}:{attempt}:claim  | site id, expires (lease) | the site the attempt was sent to  |
| site:{site}:task:{task_id}:{attempt}:result | msgpack TaskResult       | that site, once (NX)              |
| site:{site}:session                         | counter                  | INCR on every connect of the site |

Claims and results live under the site the agent sent the attempt to (its tasks topic names it): each
site's Redis user may write only its own keys (brokers/redis/users.acl), so no site can claim, pre-claim
or answer an attempt meant for another. A claim is `SET NX PX lease` inside a small Lua script that first
checks that no result exists, so neither a duplicate delivery nor a late duplicate after the lease expired
runs an attempt twice. A result is written with `SET NX`, so a re-run can never overwrite the first
result. Claims are per attempt: when an agent retries a task elsewhere (attempt + 1), the new attempt is
free. The session counter only grows by INCR (the site's Redis user may not SET it), so a session number
above it was never given to the site: readers ignore it (:meth:`TaskStore.session`).

A site under load claims the tasks waiting in its inbox together (:meth:`TaskStore.claim_tasks`: one
script, one round trip, the same per-attempt rules applied to each task in order; a task Redis refuses
fails alone, the others are claimed). A task whose outcome is known without running it (a zero-cost
emulated task, a task the site cannot hold) is claimed and completed in the same atomic step: there is no
moment at which it is claimed but has no result.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import redis
from redis.backoff import FullJitterBackoff
from redis.retry import Retry

from edgeoff.wire.codec import decode_msgpack, encode_msgpack
from edgeoff.wire.errors import DecodeError, StoreError, TopicError
from edgeoff.wire.messages import TaskResult
from edgeoff.wire.settings import RedisSettings
from edgeoff.wire.topics import validate_id

__all__ = ["KEY_PREFIX", "MAX_LEASE_MS", "Claim", "TaskStore", "read_session", "redis_client"]

log = logging.getLogger(__name__)

KEY_PREFIX = "edgeoff:v1:"  # versioned like the topics
RESULT_TTL_MS = 24 * 3600 * 1000  # results are read by the agent within seconds; a day leaves room to debug
MAX_LEASE_MS = 24 * 3600 * 1000  # a claim outside (0, this] is refused: no task holds a site for longer

# KEYS[1] claim, KEYS[2] result; ARGV[1] site, ARGV[2] lease (ms). 1 = claimed, 0 = taken or already done.
_CLAIM_LUA = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""

# KEYS[1] claim, KEYS[2] result; ARGV[1] result bytes, ARGV[2] ttl (ms). 1 = stored, 0 = a result existed.
_COMPLETE_LUA = """
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: claim and result key of each task, in pairs; ARGV[1] site, ARGV[2] result ttl (ms), then per task
# its lease (ms) and its result bytes ('' when it still has to run). One 0/1 per task, as _CLAIM_LUA; a task
# with result bytes is claimed for as long as the result lives and completed at once (as _COMPLETE_LUA).
# Every call is a pcall: a task whose command Redis refuses (a key of another type, a bad lease) gets 0
# and the rest of the batch is still claimed.
_CLAIM_BATCH_LUA = """
local out = {}
for i = 1, #KEYS / 2 do
  local claim, result = KEYS[2 * i - 1], KEYS[2 * i]
  local value = ARGV[2 * i + 2]
  local lease = ARGV[2 * i + 1]
  if value ~= '' then lease = ARGV[2] end
  out[i] = 0
  local done = redis.pcall('EXISTS', result)
  if done == 0 then
    local set = redis.pcall('SET', claim, ARGV[1], 'NX', 'PX', lease)
    if type(set) == 'table' and set.ok then
      out[i] = 1
      if value ~= '' then redis.pcall('SET', result, value, 'NX', 'PX', ARGV[2]) end
    end
  end
end
return out
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

    def __init__(self, client: redis.Redis, *, prefix: str = KEY_PREFIX) -> None:
        self._redis = client
        self._prefix = prefix
        self._claim = client.register_script(_CLAIM_LUA)
        self._complete = client.register_script(_COMPLETE_LUA)
        self._claim_batch = client.register_script(_CLAIM_BATCH_LUA)

    @classmethod
    def from_settings(cls, settings: RedisSettings) -> TaskStore:
        """A store whose commands retry connection errors with full-jitter exponential backoff."""
        return cls(redis_client(settings))

    def close(self) -> None:
        self._redis.close()

    # ------------------------------------------------------------------ keys

    def _task_key(self, site: str, task_id: str, attempt: int, what: str) -> str:
        if attempt < 0:
            raise StoreError(f"attempt must be >= 0, got {attempt}")
        task = validate_id(task_id, what="task id")
        return f"{self._prefix}site:{validate_id(site, what='site id')}:task:{task}:{attempt}:{what}"

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
        """Claim one attempt of a task for `site` for `lease_ms`; False when claimed or done already."""
        if not 0 < lease_ms <= MAX_LEASE_MS:
            raise StoreError(f"lease must be in (0, {MAX_LEASE_MS}] ms, got {lease_ms} ms")
        keys = [
            self._task_key(site, task_id, attempt, "claim"),
            self._task_key(site, task_id, attempt, "result"),
        ]
        try:
            return int(self._claim(keys=keys, args=[validate_id(site, what="site id"), lease_ms])) == 1
        except redis.RedisError as exc:
            raise StoreError(f"claim of task {task_id} attempt {attempt}: {exc}") from exc

    def claim_tasks(self, site: str, claims: Sequence[Claim]) -> list[bool]:
        """Claim attempts for `site` in one round trip, in order; True for each attempt this call claimed.

        Same rules as :meth:`claim_task` for each attempt (a second claim of an attempt in the same call
        fails too). A claim with a result is completed in the same atomic step (as :meth:`complete_task`).
        A claim that cannot be made (an invalid id, attempt or lease, an empty result, a command Redis
        refuses) is False alone: the others are still claimed.
        """
        valid: list[int] = []
        keys: list[str] = []
        args: list[str | int | bytes] = [validate_id(site, what="site id"), RESULT_TTL_MS]
        for n, claim in enumerate(claims):
            if not 0 < claim.lease_ms <= MAX_LEASE_MS or (claim.result is not None and not claim.result):
                continue
            try:
                pair = [
                    self._task_key(site, claim.task_id, claim.attempt, "claim"),
                    self._task_key(site, claim.task_id, claim.attempt, "result"),
                ]
            except (StoreError, TopicError):
                continue
            valid.append(n)
            keys.extend(pair)
            args.append(claim.lease_ms)
            args.append(b"" if claim.result is None else claim.result)
        out = [False] * len(claims)
        if not valid:
            return out
        try:
            reply = self._claim_batch(keys=keys, args=args)
        except redis.RedisError as exc:
            raise StoreError(f"claim of {len(valid)} tasks: {exc}") from exc
        if not isinstance(reply, list) or len(reply) != len(valid):
            raise StoreError(f"claim of {len(valid)} tasks: unexpected reply {reply!r:.80}")
        for n, ok in zip(valid, reply, strict=True):
            out[n] = int(ok) == 1
        return out

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
            return int(self._complete(keys=keys, args=[encode_msgpack(result), RESULT_TTL_MS])) == 1
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
