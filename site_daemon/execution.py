"""How a site runs a task: emulated from the cost model by default, or a named handler doing real work.

Pure where possible: :func:`execution_time_s` and :func:`scan_chunks` have no I/O and no clock;
:func:`execute` takes the waiting and the clock as arguments, so tests and the daemon decide how time
passes (the daemon waits on a `threading.Event`, so a stop or an injected crash interrupts a task).

Handlers map a task's payload (bytes) to its output (bytes). They are registered by name:

    @register_handler("antivirus.scan")
    def antivirus_scan(payload: bytes) -> bytes: ...
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

import msgpack

from edgeoff.cost import CostModel
from edgeoff.wire.errors import DecodeError
from edgeoff.wire.messages import MAX_ERROR_CHARS, TaskRequest

__all__ = [
    "DEFAULT_HANDLERS",
    "SCAN_CHUNK_BYTES",
    "Handler",
    "HandlerError",
    "HandlerRegistry",
    "Outcome",
    "antivirus_scan",
    "decode_scan_output",
    "encode_scan_request",
    "execute",
    "execution_time_s",
    "instant_outcome",
    "register_handler",
    "scan_chunks",
]

SCAN_CHUNK_BYTES = (
    4096  # signatures are SHA-256 digests of aligned 4 KiB chunks (a page, a common block size)
)
SHA256_BYTES = 32

Handler = Callable[[bytes], bytes]


class HandlerError(Exception):
    """A handler rejected its payload; the task fails with this message (not a daemon error)."""


class HandlerRegistry:
    """Named handlers; registration happens at import time, lookups afterwards."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, name: str) -> Callable[[Handler], Handler]:
        def decorator(fn: Handler) -> Handler:
            if name in self._handlers:
                raise ValueError(f"handler {name!r} is registered twice")
            self._handlers[name] = fn
            return fn

        return decorator

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._handlers))


DEFAULT_HANDLERS = HandlerRegistry()
register_handler = DEFAULT_HANDLERS.register


# --------------------------------------------------------------------------- emulated execution


def execution_time_s(model: CostModel, site: int, mi: float) -> float:
    """Seconds site `site` (index into the model's sites) computes a task of `mi` MI: MI / MIPS.

    The execution term of the cost model; transfers are the agent's concern (they happen on its links).
    """
    if mi < 0:
        raise ValueError(f"mi must be non-negative, got {mi}")
    return float(mi / model.mips[site])


@dataclass(frozen=True)
class Outcome:
    """What running a task produced; `exec_s` is measured (handler) or emulated (no handler)."""

    ok: bool
    exec_s: float
    error: str | None = None
    output: bytes | None = None


def instant_outcome(request: TaskRequest, *, emulated_s: float, memory_gb: float) -> Outcome | None:
    """The outcome of a task that needs no time at all to run, or None when running it takes time.

    Known at once: a task that needs more memory than the site has (it fails), an emulated task that would
    run longer than its deadline (it fails: the agent would have given up on it, and one such task must
    not hold the site's executor for days), and an emulated task (no handler) of zero duration (an
    execution scale of 0, or 0 MI). The daemon runs these on its own thread, claiming and storing the result
    in one step; everything else goes to the worker threads via `execute`.
    """
    if request.memory_gb > memory_gb:
        return Outcome(ok=False, exec_s=0.0, error=f"needs {request.memory_gb} GB, site has {memory_gb} GB")
    if request.handler is None and not emulated_s <= request.deadline_s:  # (NaN too)
        return Outcome(
            ok=False,
            exec_s=0.0,
            error=f"needs {emulated_s:.4g} s, past its deadline of {request.deadline_s:.4g} s",
        )
    if request.handler is None and emulated_s <= 0.0:
        return Outcome(ok=True, exec_s=0.0)
    return None


def execute(
    request: TaskRequest,
    *,
    emulated_s: float,
    memory_gb: float,
    handlers: HandlerRegistry,
    wait: Callable[[float], bool],
    clock: Callable[[], float],
) -> Outcome | None:
    """Run one task; None when `wait` reports an interruption (the task is abandoned, no result).

    `emulated_s` is how long the emulated computation takes (already scaled); `wait(seconds)` returns True
    when interrupted. A task with a handler runs the handler instead and reports its measured time.
    """
    instant = instant_outcome(request, emulated_s=emulated_s, memory_gb=memory_gb)
    if instant is not None and not instant.ok:
        return instant
    if request.handler is None:
        if wait(emulated_s):
            return None
        return Outcome(ok=True, exec_s=emulated_s)
    handler = handlers.get(request.handler)
    if handler is None:
        return Outcome(ok=False, exec_s=0.0, error=f"unknown handler {request.handler!r}")
    start = clock()
    try:
        output = handler(request.payload or b"")
    except (HandlerError, DecodeError, ValueError) as exc:
        return Outcome(ok=False, exec_s=clock() - start, error=str(exc)[:MAX_ERROR_CHARS])
    return Outcome(ok=True, exec_s=clock() - start, output=output)


# --------------------------------------------------------------------------- antivirus.scan


def scan_chunks(data: bytes, signatures: Collection[bytes], chunk_size: int = SCAN_CHUNK_BYTES) -> list[int]:
    """Offsets of the aligned `chunk_size` chunks of `data` whose SHA-256 is a known-bad signature.

    The last chunk may be shorter than `chunk_size` and is hashed as it is.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk size must be positive, got {chunk_size}")
    bad = signatures if isinstance(signatures, set | frozenset) else frozenset(signatures)
    view = memoryview(data)
    return [
        offset
        for offset in range(0, len(data), chunk_size)
        if hashlib.sha256(view[offset : offset + chunk_size]).digest() in bad
    ]


def encode_scan_request(data: bytes, signatures: Collection[bytes]) -> bytes:
    """The payload of an `antivirus.scan` task: msgpack {"data": bin, "signatures": [bin32, ...]}."""
    packed: bytes = msgpack.packb({"data": data, "signatures": list(signatures)}, use_bin_type=True)
    return packed


def decode_scan_output(output: bytes) -> list[int]:
    """The offsets an `antivirus.scan` task returned."""
    offsets = msgpack.unpackb(output, raw=False, max_ext_len=0)
    if not isinstance(offsets, list) or not all(isinstance(o, int) for o in offsets):
        raise DecodeError("antivirus.scan output is not a list of offsets")
    return offsets


@register_handler("antivirus.scan")
def antivirus_scan(payload: bytes) -> bytes:
    """Scan the payload's data for chunks whose SHA-256 is in its signature list; output: offsets."""
    limit = len(payload)
    try:
        request = msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=True,
            max_ext_len=0,
            max_str_len=limit,
            max_bin_len=limit,
            max_array_len=limit,
            max_map_len=limit,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise HandlerError(f"antivirus.scan: payload is not msgpack: {type(exc).__name__}") from None
    if not isinstance(request, dict) or set(request) != {"data", "signatures"}:
        raise HandlerError("antivirus.scan: payload must be a map with exactly 'data' and 'signatures'")
    data, signatures = request["data"], request["signatures"]
    if not isinstance(data, bytes):
        raise HandlerError("antivirus.scan: 'data' must be bytes")
    if not isinstance(signatures, list) or not all(
        isinstance(s, bytes) and len(s) == SHA256_BYTES for s in signatures
    ):
        raise HandlerError("antivirus.scan: 'signatures' must be a list of 32-byte SHA-256 digests")
    packed: bytes = msgpack.packb(scan_chunks(data, frozenset(signatures)), use_bin_type=True)
    return packed
