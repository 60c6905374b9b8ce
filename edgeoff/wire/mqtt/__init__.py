"""The MQTT adapter: paho-mqtt 2.x MQTT v5, callbacks that only enqueue, reconnect with jitter.

events  Connected, Disconnected, Message, Will, Counters, backoff_delay, wait_published
client  MqttClient: the connection, its callbacks, the threaded mode (a supervisor thread)
inline  the inline mode (`inline_loop=True`): the owner's thread drives the network via `poll`
"""

from edgeoff.wire.mqtt.client import MqttClient
from edgeoff.wire.mqtt.events import (
    Connected,
    Counters,
    Disconnected,
    EventSink,
    FastPath,
    Inbox,
    Message,
    MqttEvent,
    Will,
    backoff_delay,
    wait_published,
)

__all__ = [
    "Connected",
    "Counters",
    "Disconnected",
    "EventSink",
    "FastPath",
    "Inbox",
    "Message",
    "MqttClient",
    "MqttEvent",
    "Will",
    "backoff_delay",
    "wait_published",
]
