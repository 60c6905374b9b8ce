"""The messages of the wire contract: frozen, self-validating pydantic models.

Every model forbids extra fields, validates strictly (no "5" -> 5 coercion, no int -> str), rejects NaN and
infinity, and bounds every string and byte field, because every payload is untrusted (ARCHITECTURE rule 7).
Ids follow the topic id pattern, so an id read from a payload is always safe to put into a topic.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgeoff.ids import Id

__all__ = [
    "DOWN_MODEL",
    "ERROR_BUSY",
    "ERROR_STORE",
    "MAX_ERROR_CHARS",
    "MAX_TASK_OUTPUT_BYTES",
    "MAX_TASK_PAYLOAD_BYTES",
    "Heartbeat",
    "Id",
    "Prediction",
    "SiteProfile",
    "SiteStatus",
    "TaskRequest",
    "TaskResult",
]

MAX_TASK_PAYLOAD_BYTES = (
    4 * 1024 * 1024
)  # a task's real input (e.g. a file to scan); larger inputs go by reference
MAX_TASK_OUTPUT_BYTES = 1024 * 1024  # results are summaries (offsets, digests), never bulk data
MAX_ERROR_CHARS = 500  # an error is a one-line reason, not a traceback
MAX_NAME_CHARS = 128  # app, task and model names
# `model` of the prediction a worker publishes while its failure detector suspects the site (availability 0)
DOWN_MODEL = "detector:down"
# `error` of the result a site answers at once, without running the task: its queue is full, or it cannot
# reach Redis to claim the task. The agent falls back at once, with this as the reason.
ERROR_BUSY = "busy"
ERROR_STORE = "store unavailable"

HandlerName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
NonNegative = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=0)]


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class SiteStatus(_Message):
    """Retained birth/death certificate of a site; an offline older than the current session is stale."""

    state: Literal["online", "offline"]
    session: Count
    ts: NonNegative  # wall clock (epoch seconds) when the status was made


class SiteProfile(_Message):
    """Retained capabilities of a site (the resource monitor)."""

    site: Id
    type: Literal["MD", "ED", "EC", "ER", "CD"]
    mips: Annotated[float, Field(gt=0)]
    memory_gb: Annotated[float, Field(gt=0)]
    storage_gb: Annotated[float, Field(gt=0)]


class Heartbeat(_Message):
    """Liveness beacon of one site session; `mono_ts` is the sender's monotonic clock (seconds)."""

    session: Count
    seq: Count
    mono_ts: NonNegative


class TaskRequest(_Message):
    """One attempt at one task, sent by an agent to the site it chose; idempotent by (task_id, attempt)."""

    task_id: Id
    attempt: Count
    agent: Id
    app: Name
    task: Name
    mi: NonNegative
    input_kb: NonNegative
    output_kb: NonNegative
    memory_gb: NonNegative
    handler: HandlerName | None = None
    payload: Annotated[bytes, Field(max_length=MAX_TASK_PAYLOAD_BYTES)] | None = None
    deadline_s: Annotated[float, Field(gt=0)]
    # wall clock (epoch seconds) after which the agent no longer waits for this attempt: a site drops the
    # request unrun when it would start it later (None: no expiry, as from an older agent)
    expires_at: NonNegative | None = None


class TaskResult(_Message):
    """Outcome of one attempt at one task on one site session."""

    task_id: Id
    attempt: Count
    site: Id
    session: Count
    ok: bool
    exec_s: NonNegative
    error: Annotated[str, Field(max_length=MAX_ERROR_CHARS)] | None = None
    output: Annotated[bytes, Field(max_length=MAX_TASK_OUTPUT_BYTES)] | None = None


class Prediction(_Message):
    """A site's predicted availability; `version` grows with every change (Redis keeps the record).

    `model` names the forecaster the worker selected for the site; `error_mae` is that forecaster's mean
    absolute error on the backtest that selected it (None for a prior or a detector verdict).
    """

    site: Id
    availability: Annotated[float, Field(ge=0, le=1)]
    version: Count
    model: Name
    ts: NonNegative
    error_mae: NonNegative | None = None
