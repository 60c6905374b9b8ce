"""Settings of one site daemon: every field is a flag (`--time-compression`) and a variable
(`EDGEOFF_SITE_TIME_COMPRESSION`); see edgeoff.ops.settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from edgeoff.ids import Id
from edgeoff.ops import OpsSettings
from edgeoff.wire.settings import DaemonSettings

__all__ = ["SiteSettings"]


class SiteSettings(DaemonSettings, OpsSettings):
    """Settings of one site daemon: environment `EDGEOFF_SITE_*` (nested: `EDGEOFF_SITE_BROKER__HOST`)."""

    model_config = SettingsConfigDict(env_prefix="EDGEOFF_SITE_")

    site: Id  # site id in the scenario
    scenario: Path | None = None  # None: the paper's scenario
    dataset: str | None = None  # dataset configuration mapping sites to LANL nodes (failure injection)
    inject_failures: bool = False  # follow the node's Markov chain (needs dataset)
    # trace seconds per wall second; None: the scenario's [simulation] time_compression (3600 by default)
    time_compression: Annotated[float, Field(gt=0)] | None = None
    # How an injected failure looks from outside. "hang" (a node that lost power): silence (no heartbeats,
    # tasks swallowed) while the link seems alive; after 1.5 x keepalive, when Mosquitto would give up on a
    # silent client, the link drops and the will fires. The heartbeat detector has to notice first. "crash"
    # (a killed process on a live host): the link drops and the will fires at once.
    failure_mode: Literal["hang", "crash"] = "hang"
    seed: int | None = None  # failure injection RNG; None: fresh entropy
    # Record every injected failure as one JSON line {site, ts (wall clock), down_s, session} appended to
    # this file: the run's ground truth (edgeoff up reads it), whatever the log format. None: not recorded.
    injection_log: Path | None = None
    execution_scale: Annotated[float, Field(ge=0)] = 1.0  # wall seconds per emulated second of computation
    max_concurrent_tasks: Annotated[int, Field(ge=1)] = 1  # a site computes one task at a time by default
    # lease = expected run time + this margin, from execution start; renewed every margin / 2 while it runs
    claim_margin_s: Annotated[float, Field(gt=0)] = 5.0
    max_queued_tasks: Annotated[int, Field(ge=0)] = 8  # requests waiting to start; more: answered "busy"
    publish_timeout_s: Annotated[float, Field(gt=0)] = 2.0  # wait for the offline status before disconnecting
