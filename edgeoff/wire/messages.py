"""The messages of the wire contract: frozen, self-validating pydantic models.

Every model forbids extra fields, validates strictly (no "5" -> 5 coercion, no int -> str), rejects NaN and
infinity, and bounds every string, byte and number field (the MAX_* constants below), because every payload
is untrusted (ARCHITECTURE rules 7 and 10).
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
    "MAX_ATTEMPT",
    "MAX_COUNTER",
    "MAX_DEADLINE_S",
    "MAX_ERROR_CHARS",
    "MAX_EXEC_S",
    "MAX_KB",
    "MAX_MEMORY_GB",
    "MAX_MI",
    "MAX_MIPS",
    "MAX_MONO_TS",
    "MAX_STORAGE_GB",
    "MAX_TASK_OUTPUT_BYTES",
    "MAX_TASK_PAYLOAD_BYTES",
    "MAX_WALL_TS",
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
)  # a task's real input (e.g. a file to scan); larger goes by reference
MAX_TASK_OUTPUT_BYTES = 1024 * 1024  # results are summaries (offsets, digests), never bulk data
MAX_ERROR_CHARS = 500  # an error is a one-line reason, not a traceback
MAX_NAME_CHARS = 128  # app, task and model names
# `model` of the prediction a worker publishes while its failure detector suspects the site (availability 0)
DOWN_MODEL = "detector:down"
# `error` of the result a site answers at once, without running the task: its queue is full, or it cannot
# reach Redis to claim the task. The agent falls back at once, with this as the reason.
ERROR_BUSY = "busy"
ERROR_STORE = "store unavailable"

# Bounds of every number on the wire (ARCHITECTURE rule 10). Each is far above what a real deployment
# sends and small enough that no arithmetic a daemon does with it can overflow, lose integer precision
# (JSON numbers are doubles) or produce a Redis argument Redis refuses; a message outside them is dropped
# and counted like a malformed one. The README's topic table lists them.
MAX_COUNTER = 2**53 - 1  # sessions, sequence numbers, versions, epochs: exact in a double and in Redis
MAX_WALL_TS = 4_102_444_800.0  # wall clock, epoch seconds: 2100-01-01T00:00:00Z
MAX_MONO_TS = 1e10  # a sender's monotonic clock, seconds since its boot: over 300 years
MAX_ATTEMPT = 1000  # retries of one task (an agent tries each site at most once per task)
MAX_MI = 1e8  # million instructions of one task: 2.3 h on the paper's cloud site (12000 MIPS)
MAX_KB = 1e7  # input or output of one task, KB: 10 GB (the payload itself is bounded above)
MAX_MEMORY_GB = 1e4  # memory a task needs or a site has, GB
MAX_STORAGE_GB = 1e6  # storage of a site, GB
MAX_MIPS = 1e8  # compute speed of a site, MIPS (the paper's cloud site: 12000)
MAX_DEADLINE_S = 3600.0  # how long an agent waits for one attempt (the paper's tasks: well under 1 s)
MAX_EXEC_S = 86_400.0  # execution time a result may report, s: a day

HandlerName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
Counter = Annotated[int, Field(ge=0, le=MAX_COUNTER)]
WallTs = Annotated[float, Field(ge=0, le=MAX_WALL_TS)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Attempt = Annotated[int, Field(ge=0, le=MAX_ATTEMPT)]
Kilobytes = Annotated[float, Field(ge=0, le=MAX_KB)]


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class SiteStatus(_Message):
    """Retained birth/death certificate of a site; an offline older than the current session is stale."""

    state: Literal["online", "offline"]
    session: Counter
    ts: WallTs  # wall clock (epoch seconds) when the status was made


class SiteProfile(_Message):
    """Retained capabilities of a site (the resource monitor)."""

    site: Id
    type: Literal["MD", "ED", "EC", "ER", "CD"]
    mips: Annotated[float, Field(gt=0, le=MAX_MIPS)]
    memory_gb: Annotated[float, Field(gt=0, le=MAX_MEMORY_GB)]
    storage_gb: Annotated[float, Field(gt=0, le=MAX_STORAGE_GB)]


class Heartbeat(_Message):
    """Liveness beacon of one site session; `mono_ts` is the sender's monotonic clock (seconds)."""

    session: Counter
    seq: Counter
    mono_ts: Annotated[float, Field(ge=0, le=MAX_MONO_TS)]


class TaskRequest(_Message):
    """One attempt at one task, sent by an agent to the site it chose; idempotent by (task_id, attempt)."""

    task_id: Id
    attempt: Attempt
    agent: Id
    app: Name
    task: Name
    mi: Annotated[float, Field(ge=0, le=MAX_MI)]
    input_kb: Kilobytes
    output_kb: Kilobytes
    memory_gb: Annotated[float, Field(ge=0, le=MAX_MEMORY_GB)]
    handler: HandlerName | None = None
    payload: Annotated[bytes, Field(max_length=MAX_TASK_PAYLOAD_BYTES)] | None = None
    deadline_s: Annotated[float, Field(gt=0, le=MAX_DEADLINE_S)]
    # wall clock (epoch seconds) after which the agent no longer waits for this attempt: a site drops the
    # request unrun when it would start it later (None: no expiry, as from an older agent)
    expires_at: WallTs | None = None


class TaskResult(_Message):
    """Outcome of one attempt at one task on one site session."""

    task_id: Id
    attempt: Attempt
    site: Id
    session: Counter
    ok: bool
    exec_s: Annotated[float, Field(ge=0, le=MAX_EXEC_S)]
    error: Annotated[str, Field(max_length=MAX_ERROR_CHARS)] | None = None
    output: Annotated[bytes, Field(max_length=MAX_TASK_OUTPUT_BYTES)] | None = None


class Prediction(_Message):
    """A site's predicted availability; `version` grows with every change within one `epoch`.

    `epoch` is the publishing worker's incarnation, a number it takes from a Redis counter only workers
    may increment; versions are compared within an epoch only (a prediction of another epoch is always
    news), so a forged version, however high, holds only until the worker publishes in a new epoch.
    `model` names the forecaster the worker selected for the site; `error_mae` is that forecaster's mean
    absolute error on the backtest that selected it (None for a prior or a detector verdict).
    """

    site: Id
    availability: Fraction
    version: Counter
    epoch: Counter = 0
    model: Name
    ts: WallTs
    error_mae: Fraction | None = None  # an MAE of availabilities (in [0, 1]) is in [0, 1]
