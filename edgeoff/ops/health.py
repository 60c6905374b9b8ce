"""The health file: a daemon's own liveness and readiness, for probes that run a command.

The serve loop rewrites a small JSON record atomically (temporary file + rename) about once a second:

    {"name": "site=ed", "pid": 4242, "ts": 1735732800.1, "ready": true, "broker": true, "redis": true}

`ts` is the wall clock of the loop's last pass, so a stuck loop shows as a stale file (liveness);
`ready` is "connected to the broker and Redis reachable" (readiness). `edgeoff health FILE` turns
that into an exit code (:func:`check_health`): what a Kubernetes exec probe, a compose healthcheck or a
shell script calls. A stale or missing file is unhealthy; a daemon that stops cleanly writes ready=false.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from edgeoff.files import atomic_write

__all__ = ["HealthCheck", "HealthRecord", "check_health", "read_health", "write_health"]


@dataclass(frozen=True)
class HealthRecord:
    name: str
    pid: int
    ts: float  # wall clock (epoch seconds) of the serve loop's last pass
    ready: bool
    broker: bool
    redis: bool | None  # None: the daemon does not use Redis
    publishes_denied: int = 0  # publishes the broker refused (PUBACK reason code >= 0x80, e.g. an ACL)


@dataclass(frozen=True)
class HealthCheck:
    ok: bool
    message: str  # one line, for the probe's output


def write_health(path: Path, record: HealthRecord) -> None:
    """Replace `path` atomically with `record` (readers never see a partial file). Raises OSError."""
    atomic_write(path, json.dumps(asdict(record), separators=(",", ":")))  # 0644: a probe may be another user


def read_health(path: Path) -> HealthRecord:
    """The record in `path`. Raises OSError, or ValueError saying what is wrong (not JSON, not an object,
    a missing field, a field of the wrong type)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError("not a text file") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"not a JSON object but {type(raw).__name__}")
    missing = [name for name in ("name", "pid", "ts", "ready", "broker") if name not in raw]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise ValueError(f"missing field{plural} {', '.join(missing)}")
    kinds: dict[str, tuple[type, ...]] = {
        "name": (str,),
        "pid": (int,),
        "ts": (int, float),
        "ready": (bool,),
        "broker": (bool,),
        "redis": (bool, type(None)),
    }
    for name, types in kinds.items():
        value = raw.get(name)
        if not isinstance(value, types) or (name in ("pid", "ts") and isinstance(value, bool)):
            raise ValueError(
                f"field {name} is {json.dumps(value)[:40]}, not {' or '.join(_KIND[t] for t in types)}"
            )
    denied = raw.get("publishes_denied", 0)  # optional: records of older daemons have none
    return HealthRecord(
        name=raw["name"],
        pid=raw["pid"],
        ts=float(raw["ts"]),
        ready=raw["ready"],
        broker=raw["broker"],
        redis=raw.get("redis"),
        publishes_denied=denied if isinstance(denied, int) and not isinstance(denied, bool) else 0,
    )


_KIND = {str: "a string", int: "an integer", float: "a number", bool: "true/false", type(None): "null"}


def check_health(path: Path, *, max_age_s: float, need_ready: bool, now: float) -> HealthCheck:
    """Healthy when the file is at most `max_age_s` old (and ready, when `need_ready`)."""
    try:
        record = read_health(path)
    except FileNotFoundError:
        return HealthCheck(False, f"unhealthy: {path} does not exist (daemon not started?)")
    except OSError as exc:
        return HealthCheck(False, f"unhealthy: cannot read {path}: {exc.strerror or exc}")
    except ValueError as exc:
        return HealthCheck(False, f"unhealthy: {path} is not a health file: {exc}")
    age = now - record.ts
    if age > max_age_s:
        return HealthCheck(False, f"unhealthy: {record.name} last seen {age:.1f} s ago (max {max_age_s:g})")
    parts = [f"broker {'up' if record.broker else 'down'}"]
    if record.redis is not None:
        parts.append(f"redis {'up' if record.redis else 'down'}")
    if record.publishes_denied:
        parts.append(f"{record.publishes_denied} publishes denied by the broker")
    detail = ", ".join(parts)
    if need_ready and not record.ready:
        return HealthCheck(False, f"not ready: {record.name} ({detail}, {age:.1f} s ago)")
    state = "ready" if record.ready else "alive, not ready"
    return HealthCheck(True, f"ok: {record.name} {state} ({detail}, {age:.1f} s ago)")
