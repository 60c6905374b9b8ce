"""Settings of one mobile agent: every field is a flag (`--time-scale`) and a variable
(`EDGEOFF_AGENT_TIME_SCALE`); see edgeoff.ops.settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from edgeoff.ids import Id
from edgeoff.ops import OpsSettings
from edgeoff.wire.settings import DaemonSettings
from mobile_agent.twin_record import DEFAULT_TWIN_MAX_ENTRIES

__all__ = ["AgentSettings"]


class AgentSettings(DaemonSettings, OpsSettings):
    """Settings of one mobile agent: environment `EDGEOFF_AGENT_*` (nested: `EDGEOFF_AGENT_BROKER__HOST`)."""

    model_config = SettingsConfigDict(env_prefix="EDGEOFF_AGENT_")

    agent: Id = "agent-1"  # agent id: client id, results topic, policy topic
    engine: str = "mdp-svr"  # mdp-svr, mdp-selected, efpo, kubehybrid or mdp-reactive
    scenario: Path | None = None  # None: the paper's scenario
    dataset: str = "DS1"  # recorded in the results (the sites' failure behaviour is theirs)
    apps: Annotated[int, Field(ge=1)] | None = None  # application runs; None: until `duration_s` or a signal
    duration_s: Annotated[float, Field(gt=0)] | None = None  # start no new application run after this
    seed: int | None = None  # workload RNG; None: fresh entropy
    time_scale: Annotated[float, Field(gt=0)] = 1.0  # wall seconds per model second of emulated work
    # trace seconds per wall second of the sites' failures; None: the scenario's [simulation] setting
    time_compression: Annotated[float, Field(gt=0)] | None = None
    deadline_factor: Annotated[float, Field(gt=0)] = 3.0  # result deadline: factor x expected time + margin
    deadline_margin_s: Annotated[float, Field(ge=0)] = 0.5  # added to every result deadline, s
    prior_availability: Annotated[float, Field(ge=0, le=1)] = 1.0  # a site without a prediction yet
    wait_sites_s: Annotated[float, Field(ge=0)] = 10.0  # wait this long for every site to be online first
    out: Path | None = None  # results JSON, written when done
    publish_timeout_s: Annotated[float, Field(gt=0)] = 2.0  # wait for the last policy at shutdown, s
    # the broker keeps our session (subscriptions, QoS 1 results) this long while we are disconnected
    session_expiry_s: Annotated[int, Field(ge=0, le=86_400)] = 300
    store_backoff_s: Annotated[float, Field(ge=0)] = 1.0  # after "store unavailable": phone only this long
    # read results back from Redis, fence attempts off, check a "store unavailable" answer against Redis
    use_store: bool = True
    record_twin: bool = False  # record the run for `edgeoff twin` (edgeoff up turns it on)
    # the twin record's cap, entries (application runs, tasks, view changes; about 1 KB each in memory):
    # beyond it the record stops and is marked truncated (`edgeoff twin` then compares the prefix)
    twin_max_entries: Annotated[int, Field(ge=1)] = DEFAULT_TWIN_MAX_ENTRIES
    # append every detection of a failed site as one JSON line {site, ts, how} (edgeoff up reads it)
    detection_log: Path | None = None
