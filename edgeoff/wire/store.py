"""Redis, the state of record: task claims with a lease, idempotent results, site session numbers.

Keys (prefix `edgeoff:v1:`):

| key                                   | value                       | written by                         |
|---------------------------------------|-----------------------------|------------------------------------|
| task:{task_id}:{attempt}:claim        | site id, expires (lease)    | the first site to claim the attempt|
| task:{task_id}:{attempt}:result       | msgpack TaskResult          | the site that ran it, once (NX)    |
| site:{site}:session                   | counter                     | INCR on every connect of the site  |

A claim is `SET NX PX lease` inside a small Lua script that first checks that no result exists, so
neither a duplicate delivery nor a second site, nor a late duplicate after the lease expired, runs an
attempt twice. A result is written with `SET NX`, so a re-run can never overwrite the first result.
Claims are per attempt: when an agent retries a task elsewhere (attempt + 1), the new attempt is free.
"""

from __future__ import annotations

import logging

import redis
from redis.backoff import FullJitterBackoff
from redis.retry import Retry

from edgeoff.wire.codec import decode_msgpack, encode_msgpack
from edgeoff.wire.errors import DecodeError, StoreError
from edgeoff.wire.messages import TaskResult
from edgeoff.wire.settings import RedisSettings
from edgeoff.wire.topics import validate_id

__all__ = ["KEY_PREFIX", "TaskStore"]

log = logging.getLogger(__name__)

KEY_PREFIX = "edgeoff:v1:"  # versioned like the topics
RESULT_TTL_MS = 24 * 3600 * 1000  # results are read by the agent within seconds; a day leaves room to debug
CLAIM_AFTER_RESULT_MS = RESULT_TTL_MS  # once a result exists the claim lives as long as the result

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


class TaskStore:
    """Task claims, results and session counters in Redis; redis-py errors become StoreError."""

    def __init__(self, client: redis.Redis, *, prefix: str = KEY_PREFIX) -> None:
        self._redis = client
        self._prefix = prefix
        self._claim = client.register_script(_CLAIM_LUA)
        self._complete = client.register_script(_COMPLETE_LUA)

    @classmethod
    def from_settings(cls, settings: RedisSettings) -> TaskStore:
        """A store whose commands retry connection errors with full-jitter exponential backoff."""
        retry = Retry(
            FullJitterBackoff(cap=settings.backoff_cap_s, base=settings.backoff_base_s), settings.retries
        )
        client = redis.Redis.from_url(
            settings.url.get_secret_value(),
            socket_timeout=settings.socket_timeout_s,
            socket_connect_timeout=settings.socket_timeout_s,
            retry=retry,
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            health_check_interval=30,
        )
        return cls(client)

    def close(self) -> None:
        self._redis.close()

    # ------------------------------------------------------------------ keys

    def _task_key(self, task_id: str, attempt: int, what: str) -> str:
        if attempt < 0:
            raise StoreError(f"attempt must be >= 0, got {attempt}")
        return f"{self._prefix}task:{validate_id(task_id, what='task id')}:{attempt}:{what}"

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
        if lease_ms <= 0:
            raise StoreError(f"lease must be positive, got {lease_ms} ms")
        keys = [self._task_key(task_id, attempt, "claim"), self._task_key(task_id, attempt, "result")]
        try:
            return int(self._claim(keys=keys, args=[validate_id(site, what="site id"), lease_ms])) == 1
        except redis.RedisError as exc:
            raise StoreError(f"claim of task {task_id} attempt {attempt}: {exc}") from exc

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
            return int(self._complete(keys=keys, args=[encode_msgpack(result), RESULT_TTL_MS])) == 1
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
