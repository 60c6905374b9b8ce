"""Settings shared by every daemon: the broker, Redis and the wire limits.

Each daemon defines one settings class deriving from :class:`DaemonSettings` with its own environment
prefix, builds it once in `main()` and passes it down; nothing else reads the environment. Nested fields
use `__` in variable names, e.g. `EDGEOFF_SITE_BROKER__HOST=broker.lan`. An optional settings file in the
same `KEY=value` format (the format of systemd's `EnvironmentFile=`) is read with `_env_file=PATH`;
variables in the environment win over the file.

`BrokerSettings` and `RedisSettings` are nested models rather than `BaseSettings` of their own:
pydantic-settings reads a nested `BaseSettings` from the environment a second time under its own prefix,
which would give every option two names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from edgeoff.wire.codec import DEFAULT_MAX_MESSAGE_BYTES
from edgeoff.wire.errors import WireError

__all__ = ["BrokerSettings", "DaemonSettings", "RedisSettings", "TlsSettings"]

Seconds = Annotated[float, Field(gt=0)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TlsSettings(_Section):
    enabled: bool = False
    ca_file: Path | None = None  # None: the system's trust store
    cert_file: Path | None = None  # client certificate, for brokers that require one
    key_file: Path | None = None
    insecure: bool = False  # skip host name verification (test brokers with self-signed certificates only)


class BrokerSettings(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None  # a secret mounted as a file wins over `password`
    keepalive_s: Annotated[int, Field(ge=1, le=65535)] = 5  # whole seconds (MQTT); detection uses heartbeats
    tls: TlsSettings = TlsSettings()
    reconnect_min_s: Seconds = 0.1  # first backoff ceiling after a lost connection (first retry within it)
    # cap of the exponential backoff (full jitter below it): a LAN broker restart must cost seconds, not a
    # minute; refused connects fail at once, so the exponent grows quickly while the broker is down
    reconnect_max_s: Seconds = 2.0
    connect_timeout_s: Seconds = 5.0
    # messages waiting for the daemon's thread; more are dropped
    inbox_size: Annotated[int, Field(ge=1)] = 10_000
    inbox_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024 * 1024  # payload bytes waiting; more: dropped
    max_inflight: Annotated[int, Field(ge=1, le=65535)] = 200  # QoS 1 publishes awaiting their PUBACK

    @model_validator(mode="after")
    def _backoff_ordered(self) -> BrokerSettings:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        return self

    def secret_password(self) -> str | None:
        """The password from `password_file` (stripped of the trailing newline) or `password`."""
        if self.password_file is not None:
            try:
                return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise WireError(f"cannot read broker password file {self.password_file}: {exc}") from None
        return self.password.get_secret_value() if self.password is not None else None


class RedisSettings(_Section):
    url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")  # may carry a password: never logged
    # a call fails after about (retries + 1) x socket_timeout_s when Redis hangs, at once when it refuses
    # connections: a site then answers "store unavailable" instead of making the agent wait
    socket_timeout_s: Seconds = 1.0
    retries: Annotated[int, Field(ge=0)] = 2  # per command, with full-jitter exponential backoff
    backoff_base_s: Seconds = 0.05
    backoff_cap_s: Seconds = 0.25
    retention_s: Seconds = 600.0  # task claims, fences and results expire after this (read within seconds)


class DaemonSettings(BaseSettings):
    """Base of each daemon's settings: subclasses set `env_prefix` and add their own fields."""

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="forbid", frozen=True)

    broker: BrokerSettings = BrokerSettings()
    redis: RedisSettings = RedisSettings()
    max_message_bytes: Annotated[int, Field(ge=1024)] = DEFAULT_MAX_MESSAGE_BYTES  # larger: dropped unread
    log_level: str = "INFO"  # DEBUG, INFO, WARNING or ERROR
