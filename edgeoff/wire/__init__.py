"""The wire contract of the live system: topics, messages, codec, and the MQTT and Redis adapters.

    topics    build and parse `edgeoff/v1/...` topics; every id validated
    messages  frozen pydantic models of every payload
    codec     msgpack / JSON encode and hostile-input-safe decode (DecodeError)
    mqtt      MqttClient (package: events, threaded client, inline mode): paho-mqtt 2.x MQTT v5
    store     TaskStore: Redis claims with a lease, idempotent results, session numbers
    settings  BrokerSettings, RedisSettings, DaemonSettings (pydantic-settings)
    errors    WireError and its subclasses

The adapters (`mqtt`, `store`) are imported from their modules so the pure parts load without paho or redis.
"""

from edgeoff.wire.codec import decode_json, decode_msgpack, encode_json, encode_msgpack
from edgeoff.wire.errors import BrokerError, DecodeError, StoreError, TopicError, WireError
from edgeoff.wire.messages import Heartbeat, Prediction, SiteProfile, SiteStatus, TaskRequest, TaskResult

__all__ = [
    "BrokerError",
    "DecodeError",
    "Heartbeat",
    "Prediction",
    "SiteProfile",
    "SiteStatus",
    "StoreError",
    "TaskRequest",
    "TaskResult",
    "TopicError",
    "WireError",
    "decode_json",
    "decode_msgpack",
    "encode_json",
    "encode_msgpack",
]
