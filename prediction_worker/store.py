"""The prediction worker's state of record in Redis: versioned predictions, verdict and window histories.

Keys (prefix `edgeoff:v1:`): `prediction:{site}` (hash: availability, model, ts, up, worker, error_mae and a
version that only grows, written atomically by a Lua script), `site:{site}:verdicts` and `site:{site}:windows`
(bounded lists), `worker:{id}:counters`. redis-py errors become StoreError.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import redis
from pydantic import ValidationError
from redis.typing import EncodableT, FieldT

from edgeoff.wire import topics
from edgeoff.wire.errors import StoreError
from edgeoff.wire.messages import DOWN_MODEL, Prediction
from edgeoff.wire.settings import RedisSettings
from edgeoff.wire.store import KEY_PREFIX, redis_client

__all__ = ["PredictionStore"]


# KEYS[1] prediction hash; ARGV availability, model, ts, up, worker, error_mae ('' for none).
# Returns the new version.
_WRITE_PREDICTION_LUA = """
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'availability', ARGV[1], 'model', ARGV[2], 'ts', ARGV[3], 'up', ARGV[4],
           'worker', ARGV[5], 'error_mae', ARGV[6])
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

    def write_prediction(
        self,
        site: str,
        availability: float,
        model: str,
        ts: float,
        worker: str,
        error_mae: float | None = None,
    ) -> int:
        """Store a changed prediction atomically; returns its version (one more than the last)."""
        up = 0 if model == DOWN_MODEL else 1
        error = "" if error_mae is None else repr(error_mae)
        try:
            args: list[str | int] = [repr(availability), model, repr(ts), up, worker, error]
            return int(self._write(keys=[self.prediction_key(site)], args=args))
        except redis.RedisError as exc:
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
