"""Encode and decode wire messages: msgpack on hot paths, JSON on retained topics.

Decoding treats the payload as hostile: a size limit before parsing, msgpack with strict options (UTF-8
strings, string map keys, no extension types, container and string lengths bounded by the payload size),
then strict pydantic validation. Whatever msgpack, the JSON parser or pydantic raise becomes a
:class:`DecodeError` carrying a short reason (one line, no payload echo beyond a few characters).
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgpack
from pydantic import BaseModel, ValidationError

from edgeoff.wire.errors import DecodeError

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "decode_json", "decode_msgpack", "encode_json", "encode_msgpack"]

DEFAULT_MAX_MESSAGE_BYTES = 5 * 1024 * 1024  # above the largest valid task payload (4 MiB) plus its envelope
MAX_REASON_CHARS = 200  # DecodeError reasons end up in logs: keep them one short line

M = TypeVar("M", bound=BaseModel)


def encode_msgpack(message: BaseModel) -> bytes:
    """msgpack bytes of a message (bytes fields as msgpack bin, strings as str)."""
    packed: bytes = msgpack.packb(message.model_dump(mode="python"), use_bin_type=True)
    return packed


def encode_json(message: BaseModel) -> bytes:
    """Compact UTF-8 JSON of a message."""
    return message.model_dump_json().encode("utf-8")


def _check_size(data: bytes, max_bytes: int) -> None:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"payload is {type(data).__name__}, not bytes")
    if len(data) > max_bytes:
        raise DecodeError(f"payload of {len(data)} bytes exceeds the limit of {max_bytes}")


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(message)"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        text = f"{where}: {err['msg']}{more}"
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text.replace("\n", " ")[:MAX_REASON_CHARS]


def decode_msgpack(model_type: type[M], data: bytes, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> M:
    """Decode and validate a msgpack payload as `model_type`; any problem raises DecodeError."""
    _check_size(data, max_bytes)
    limit = len(data)  # no string, array or map can be longer than the payload that holds it
    try:
        raw: Any = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=limit,
            max_bin_len=limit,
            max_array_len=limit,
            max_map_len=limit,
            max_ext_len=0,  # no extension types (timestamps, custom objects) on the wire
        )
    except (ValueError, TypeError, OverflowError, RecursionError, msgpack.UnpackException) as exc:
        raise DecodeError(f"not msgpack: {_reason(exc)}") from None
    if not isinstance(raw, dict):
        raise DecodeError(f"{model_type.__name__}: expected a map, got {type(raw).__name__}")
    try:
        return model_type.model_validate(raw)
    except ValidationError as exc:
        raise DecodeError(f"{model_type.__name__}: {_reason(exc)}") from None


def decode_json(model_type: type[M], data: bytes, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> M:
    """Decode and validate a UTF-8 JSON payload as `model_type`; any problem raises DecodeError."""
    _check_size(data, max_bytes)
    try:
        return model_type.model_validate_json(bytes(data))
    except ValidationError as exc:
        raise DecodeError(f"{model_type.__name__}: {_reason(exc)}") from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise DecodeError(f"{model_type.__name__}: {_reason(exc)}") from None
