"""The topic tree of edgeoff, built and parsed in one place.

Every topic starts with :data:`PREFIX`. Ids in topic levels match :data:`ID_PATTERN`, so no id can smuggle
a wildcard (`+`, `#`), a level separator or a path (`../`) into a topic; :func:`validate_id` is applied to
every id on the way in (building) and on the way out (parsing).

A result travels on a topic that names the site that sent it as well as the agent it is for: the broker's
ACL lets a site write only its own (`results/{agent}/{site}`), so the agent knows which site a result
came from without trusting the payload.

| topic                              | payload            | QoS | retained |
|------------------------------------|--------------------|-----|----------|
| edgeoff/v1/sites/{site}/status     | JSON SiteStatus    | 1   | yes      |
| edgeoff/v1/sites/{site}/profile    | JSON SiteProfile   | 1   | yes      |
| edgeoff/v1/sites/{site}/heartbeat  | msgpack Heartbeat  | 0   | no       |
| edgeoff/v1/sites/{site}/tasks      | msgpack TaskRequest| 1   | no       |
| edgeoff/v1/results/{agent}/{site}  | msgpack TaskResult | 1   | no       |
| edgeoff/v1/predictions/{site}      | JSON Prediction    | 1   | yes      |
| edgeoff/v1/agents/{agent}/policy   | JSON policy        | 1   | yes      |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from edgeoff.ids import ID_PATTERN
from edgeoff.wire.errors import TopicError

__all__ = [
    "ID_PATTERN",
    "PREFIX",
    "QOS_AT_LEAST_ONCE",
    "QOS_AT_MOST_ONCE",
    "SITE_TOPIC_KINDS",
    "ParsedTopic",
    "SiteTopicKind",
    "TopicKind",
    "agent_policy",
    "agent_results",
    "all_sites",
    "parse_topic",
    "prediction",
    "results",
    "site_topic",
    "validate_id",
]

# Heartbeats go at QoS 0: a lost one is what the detector is for. Everything else at QoS 1, made idempotent
# by its receiver (task ids and attempts, session numbers, versions).
QOS_AT_MOST_ONCE = 0
QOS_AT_LEAST_ONCE = 1

PREFIX = "edgeoff/v1"  # versioned so a v2 contract can run beside v1 on one broker
MAX_SHOWN_CHARS = 80  # of a rejected id or topic in an error message

SiteTopicKind = Literal["status", "profile", "heartbeat", "tasks"]
TopicKind = Literal["status", "profile", "heartbeat", "tasks", "results", "prediction", "policy"]
SITE_TOPIC_KINDS: tuple[SiteTopicKind, ...] = get_args(SiteTopicKind)


def validate_id(value: str, *, what: str = "id") -> str:
    """Return `value` when it is a valid id, else raise TopicError naming `what`."""
    if not isinstance(value, str) or ID_PATTERN.fullmatch(value) is None:
        shown = repr(value)  # a hostile id can be megabytes long: the error (and the log line) stays short
        shown = (
            shown if len(shown) <= MAX_SHOWN_CHARS else f"{shown[:MAX_SHOWN_CHARS]}...(+{len(shown)} chars)"
        )
        raise TopicError(f"invalid {what} {shown}: must match {ID_PATTERN.pattern}")
    return value


def site_topic(site: str, kind: SiteTopicKind) -> str:
    """`edgeoff/v1/sites/{site}/{kind}`."""
    if kind not in SITE_TOPIC_KINDS:
        raise TopicError(f"unknown site topic kind {kind!r}")
    return f"{PREFIX}/sites/{validate_id(site, what='site id')}/{kind}"


def all_sites(kind: SiteTopicKind) -> str:
    """Subscription filter for one kind of topic of every site: `edgeoff/v1/sites/+/{kind}`."""
    if kind not in SITE_TOPIC_KINDS:
        raise TopicError(f"unknown site topic kind {kind!r}")
    return f"{PREFIX}/sites/+/{kind}"


def results(agent: str, site: str) -> str:
    """`edgeoff/v1/results/{agent}/{site}`: results of `site` for `agent`."""
    return f"{PREFIX}/results/{validate_id(agent, what='agent id')}/{validate_id(site, what='site id')}"


def agent_results(agent: str) -> str:
    """Subscription filter for the results of every site for `agent`: `edgeoff/v1/results/{agent}/+`."""
    return f"{PREFIX}/results/{validate_id(agent, what='agent id')}/+"


def prediction(site: str) -> str:
    """`edgeoff/v1/predictions/{site}`."""
    return f"{PREFIX}/predictions/{validate_id(site, what='site id')}"


def agent_policy(agent: str) -> str:
    """`edgeoff/v1/agents/{agent}/policy`."""
    return f"{PREFIX}/agents/{validate_id(agent, what='agent id')}/policy"


@dataclass(frozen=True)
class ParsedTopic:
    """A topic of the contract: its kind and the site or agent id in it (`results`: the agent; `site` is
    the site that sent the result, None for every other kind)."""

    kind: TopicKind
    id: str
    site: str | None = None


def parse_topic(topic: str) -> ParsedTopic:
    """Parse a concrete (wildcard-free) topic of the contract; anything else raises TopicError."""
    head = PREFIX + "/"
    if not topic.startswith(head):
        raise TopicError(f"topic {topic[:MAX_SHOWN_CHARS]!r} is not under {PREFIX}")
    levels = topic[len(head) :].split("/")
    match levels:
        case ["sites", site, kind] if kind in SITE_TOPIC_KINDS:
            return ParsedTopic(kind=kind, id=validate_id(site, what="site id"))
        case ["results", agent, site]:
            return ParsedTopic(
                kind="results", id=validate_id(agent, what="agent id"), site=validate_id(site, what="site id")
            )
        case ["predictions", site]:
            return ParsedTopic(kind="prediction", id=validate_id(site, what="site id"))
        case ["agents", agent, "policy"]:
            return ParsedTopic(kind="policy", id=validate_id(agent, what="agent id"))
    raise TopicError(f"topic {topic[:MAX_SHOWN_CHARS]!r} is not part of the contract")
