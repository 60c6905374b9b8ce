"""Errors of the wire layer, all below :class:`edgeoff.errors.EdgeoffError`.

    EdgeoffError
    └── WireError          anything that goes wrong between a daemon and the broker or Redis
        ├── TopicError     an id or topic that is not part of the contract (hostile ids: `+`, `#`, `../`)
        ├── DecodeError    a payload that is too large, not msgpack/JSON, or fails the message schema
        ├── BrokerError    the MQTT broker refused or could not be reached
        └── StoreError     Redis could not be reached or answered something unexpected

The adapters translate what paho-mqtt, redis-py, msgpack and pydantic raise into these at the boundary,
so a daemon's loop catches `WireError` subclasses only.
"""

from __future__ import annotations

from edgeoff.errors import EdgeoffError

__all__ = ["BrokerError", "DecodeError", "StoreError", "TopicError", "WireError"]


class WireError(EdgeoffError):
    """Base of the wire layer's errors."""


class TopicError(WireError):
    """An id or a topic that does not follow the contract."""


class DecodeError(WireError):
    """An untrusted payload was rejected; the message is a short reason fit for a log line."""


class BrokerError(WireError):
    """The MQTT broker refused the client or could not be reached."""


class StoreError(WireError):
    """Redis could not be reached or answered something unexpected."""
