"""The prediction worker's state of record in Redis: versioned predictions, verdict and window histories.

Keys (prefix `edgeoff:v1:`): `prediction:{site}` (hash: availability, model, ts, up, worker, error_mae, and
the epoch and version of the prediction, written atomically by a Lua script), `site:{site}:verdicts` and
`site:{site}:windows` (bounded lists), `worker:{id}:counters`, `workers:epoch` (the counter of worker
epochs: INCR only). redis-py errors become StoreError.

Versions count within a worker epoch: a write in the epoch of the stored record continues its version
(never below the `min_version` the worker asks for, so a version it published while Redis was down is
never repeated); a write in another epoch starts again at `min_version`. A stored version that is not a
number, or at the top of its range, is never incremented: the write reports a conflict (-1) and the
worker takes a new epoch, so a corrupt or forged record can neither stop the worker nor hold its
versions back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import redis
from pydantic import ValidationError
from redis.typing import EncodableT, FieldT

from edgeoff.wire import topics
from edgeoff.wire.errors import StoreError
from edgeoff.wire.messages import DOWN_MODEL, MAX_COUNTER, Prediction
from edgeoff.wire.settings import RedisSettings
from edgeoff.wire.store import KEY_PREFIX, read_session, redis_client

__all__ = ["PredictionStore"]


# KEYS[1] prediction hash; ARGV availability, model, ts, up, worker, error_mae ('' for none), epoch,
# min_version, max_version. Returns the new version, or -1 when the stored version of this epoch is not a
# number in [0, max_version) (a corrupt or forged record: the worker takes a new epoch).
_WRITE_PREDICTION_LUA = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local version = tonumber(ARGV[8])
if epoch == ARGV[7] then
  local stored = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
  if stored == nil or stored ~= math.floor(stored) or stored < 0 or stored >= tonumber(ARGV[9]) then
    return -1
  end
  if stored + 1 > version then version = stored + 1 end
end
redis.call('HSET', KEYS[1], 'availability', ARGV[1], 'model', ARGV[2], 'ts', ARGV[3], 'up', ARGV[4],
           'worker', ARGV[5], 'error_mae', ARGV[6], 'epoch', ARGV[7], 'version', version)
return version
"""


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class PredictionStore:
    """Predictions, verdicts, windows and counters in Redis; redis-py errors become StoreError."""

    def __init__(self, client: redis.Redis, *, prefix: str = KEY_PREFIX) -> None:
        self._redis = client
        self._prefix = prefix
        self._write = client.register_script(_WRITE_PREDICTION_LUA)

    @classmethod
    def from_settings(cls, settings: RedisSettings) -> PredictionStore:
        return cls(redis_client(settings))

    def close(self) -> None:
        self._redis.close()

    def prediction_key(self, site: str) -> str:
        return f"{self._prefix}prediction:{topics.validate_id(site, what='site id')}"

    def _site_key(self, site: str, what: str) -> str:
        return f"{self._prefix}site:{topics.validate_id(site, what='site id')}:{what}"

    def session(self, site: str) -> int | None:
        """The last session number given to `site` (edgeoff.wire.store.read_session)."""
        return read_session(self._redis, site, prefix=self._prefix)

    def next_epoch(self) -> int:
        """A new worker epoch, higher than every earlier one (INCR of `workers:epoch`)."""
        try:
            reply = self._redis.execute_command("INCR", f"{self._prefix}workers:epoch")  # type: ignore[no-untyped-call]
            epoch = int(reply)
        except (redis.RedisError, ValueError) as exc:
            raise StoreError(f"worker epoch: {exc}") from exc
        if not 0 < epoch <= MAX_COUNTER:
            raise StoreError(f"worker epoch {epoch} is out of range")
        return epoch

    def write_prediction(
        self,
        site: str,
        availability: float,
        model: str,
        ts: float,
        worker: str,
        error_mae: float | None = None,
        *,
        epoch: int = 0,
        min_version: int = 1,
    ) -> int:
        """Store a changed prediction atomically; its version: one more than the stored one of the same
        `epoch`, at least `min_version`; -1 when the stored record cannot be continued (take a new epoch)."""
        up = 0 if model == DOWN_MODEL else 1
        error = "" if error_mae is None else repr(error_mae)
        try:
            args: list[str | int] = [repr(availability), model, repr(ts), up, worker, error]
            args += [epoch, min_version, MAX_COUNTER]
            return int(self._write(keys=[self.prediction_key(site)], args=args))
        except (redis.RedisError, ValueError) as exc:
            raise StoreError(f"prediction of site {site}: {exc}") from exc

    def read_prediction(self, site: str) -> Prediction | None:
        """The stored prediction of `site`, or None."""
        try:
            raw = self._redis.hgetall(self.prediction_key(site))
        except redis.RedisError as exc:
            raise StoreError(f"prediction of site {site}: {exc}") from exc
        if not raw or b"availability" not in raw:
            return None
        try:
            return Prediction(
                site=site,
                availability=float(raw[b"availability"]),
                version=int(raw[b"version"]),
                epoch=int(raw.get(b"epoch") or 0),
                model=_text(raw[b"model"]),
                ts=float(raw[b"ts"]),
                error_mae=float(raw[b"error_mae"]) if raw.get(b"error_mae") else None,
            )
        except (KeyError, ValueError, UnicodeDecodeError, ValidationError) as exc:
            raise StoreError(f"stored prediction of site {site} is corrupt: {exc}") from exc

    def _push_bounded(self, key: str, value: bytes | str, keep: int) -> None:
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.lpush(key, value)
            pipe.ltrim(key, 0, keep - 1)
            pipe.execute()
        except redis.RedisError as exc:
            raise StoreError(f"{key}: {exc}") from exc

    def append_verdict(self, site: str, record: Mapping[str, object], keep: int) -> None:
        self._push_bounded(self._site_key(site, "verdicts"), json.dumps(record), keep)

    def append_window(self, site: str, availability: float, keep: int) -> None:
        self._push_bounded(self._site_key(site, "windows"), repr(availability), keep)

    def windows(self, site: str, keep: int) -> list[float]:
        """Stored live windows of `site`, oldest first."""
        try:
            raw = self._redis.lrange(self._site_key(site, "windows"), 0, keep - 1)
        except redis.RedisError as exc:
            raise StoreError(f"windows of site {site}: {exc}") from exc
        values: list[float] = []
        for item in reversed(raw):
            try:
                value = float(item)
            except ValueError:
                continue
            if 0.0 <= value <= 1.0:
                values.append(value)
        return values

    def write_counters(self, worker: str, counters: Mapping[str, int]) -> None:
        if not counters:
            return
        key = f"{self._prefix}worker:{topics.validate_id(worker, what='worker id')}:counters"
        try:
            mapping: dict[FieldT, EncodableT] = dict(counters.items())
            self._redis.hset(key, mapping=mapping)
        except redis.RedisError as exc:
            raise StoreError(f"{key}: {exc}") from exc
