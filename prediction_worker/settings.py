"""Settings of a prediction worker: every field is a flag (`--max-windows`) and a variable
(`EDGEOFF_WORKER_MAX_WINDOWS`); see edgeoff.ops.settings. The heartbeat interval and the missed-heartbeat
count are not settings of the worker: they come from the scenario's [detection], as the sites' interval
does; nor is the availability window: the scenario's [simulation] prediction_window_h at the sites' time
compression (:meth:`edgeoff.scenario.Simulation.window_s`), so that worker and sites cannot disagree."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from edgeoff.ids import Id
from edgeoff.ops import OpsSettings
from edgeoff.wire.settings import DaemonSettings
from prediction_worker.availability_trace import (
    DEFAULT_MAX_WINDOWS,
    DEFAULT_MIN_WINDOWS,
    DEFAULT_REFIT_EVERY,
    DEFAULT_TASK_S,
)
from prediction_worker.detector import (
    DEFAULT_PHI_MIN_STD_S,
    DEFAULT_PHI_PAUSE_S,
    DEFAULT_PHI_THRESHOLD,
    DEFAULT_PHI_WINDOW,
    Shard,
)

__all__ = ["DEPRECATED", "WorkerSettings"]

DEPRECATED = ("window_s", "window_trace_h")  # read for one release, with a warning, and ignored


class WorkerSettings(DaemonSettings, OpsSettings):
    """Settings of a prediction worker: environment `EDGEOFF_WORKER_*` (`EDGEOFF_WORKER_BROKER__HOST`)."""

    model_config = SettingsConfigDict(env_prefix="EDGEOFF_WORKER_")

    worker_id: Id = "worker-0"  # id of this worker: client id, Redis counters, verdict records
    detector: Literal["fixed", "phi"] = "fixed"  # fixed: missed heartbeats; phi: phi-accrual
    phi_threshold: Annotated[float, Field(gt=0)] = DEFAULT_PHI_THRESHOLD  # phi detector: suspicion level
    phi_window: Annotated[int, Field(ge=2)] = DEFAULT_PHI_WINDOW  # phi detector: intervals remembered
    phi_min_std_s: Annotated[float, Field(gt=0)] = DEFAULT_PHI_MIN_STD_S  # phi detector: std floor, s
    phi_pause_s: Annotated[float, Field(ge=0)] = DEFAULT_PHI_PAUSE_S  # phi detector: acceptable pause, s
    poll_s: Annotated[float, Field(gt=0)] = 0.025  # detector polling: adds at most this to detection time
    # trace seconds per wall second of the sites' failures (give the sites' value); None: the scenario's
    # [simulation] time_compression. The availability window is prediction_window_h at this rate.
    time_compression: Annotated[float, Field(gt=0)] | None = None
    # deprecated and ignored (a warning): the window comes from the scenario and time_compression
    window_s: Annotated[float, Field(gt=0)] | None = None
    window_trace_h: Annotated[float, Field(gt=0)] | None = None  # deprecated and ignored, as window_s
    max_windows: Annotated[int, Field(ge=2)] = DEFAULT_MAX_WINDOWS  # windows kept per site
    min_windows: Annotated[int, Field(ge=2)] = DEFAULT_MIN_WINDOWS  # windows before a forecaster is fitted
    refit_every: Annotated[int, Field(ge=1)] = DEFAULT_REFIT_EVERY  # closed windows between refits
    belief_task_s: Annotated[float, Field(ge=0)] = DEFAULT_TASK_S  # wall s a task needs its site (belief)
    epsilon: Annotated[float, Field(ge=0, lt=1)] = 0.01  # smaller forecast moves are not published
    max_verdicts: Annotated[int, Field(ge=1)] = 1000  # verdicts kept per site in Redis
    shard: str = "0/1"  # i/n: handle the sites whose stable hash mod n is i
    # a prediction on an owned site's topic that this worker did not publish is answered with its own
    # (in a new epoch) after this many seconds (not with --shared, where every worker publishes)
    repair_s: Annotated[float, Field(gt=0)] = 0.2
    shared: bool = False  # subscribe through $share/{share_group}/...
    share_group: Id = "workers"  # the shared subscription group
    scenario: Path | None = None  # None: the paper's scenario
    dataset: str | None = None  # seed each site's history from its LANL node in this dataset
    stats_s: Annotated[float, Field(gt=0)] = 2.0  # how often counters are written to Redis
    # after a reconnect, or a stall of this worker's own loop longer than this, judge nobody for the
    # broker's reconnect cap plus this (the sites are reconnecting too), then start every timer afresh
    resync_grace_s: Annotated[float, Field(ge=0)] = 0.5
    # known sites besides the scenario's, one id per line: with --shard i/n (n > 1) the worker subscribes
    # to its own sites' topics only, instead of decoding every site's heartbeats
    sites_file: Path | None = None

    @field_validator("shard")
    @classmethod
    def _shard_valid(cls, value: str) -> str:
        return str(Shard.parse(value))

    @model_validator(mode="after")
    def _deprecated(self) -> Self:
        for name in DEPRECATED:
            if getattr(self, name) is not None:
                warnings.warn(
                    f"the worker setting {name} is deprecated and ignored: the availability window is the "
                    "scenario's [simulation] prediction_window_h at the time compression (time_compression)",
                    FutureWarning,
                    stacklevel=2,
                )
        return self

    @property
    def shard_spec(self) -> Shard:
        return Shard.parse(self.shard)
