"""The operations settings every daemon shares, and each daemon's command line made from its settings.

:class:`OpsSettings` is a mixin: a daemon's settings class derives from `DaemonSettings` and from it, so the
fields take the daemon's own environment prefix (`EDGEOFF_SITE_METRICS_PORT`, `EDGEOFF_WORKER_HEALTH_FILE`).

One place defines a setting: its field in the daemon's settings model. :func:`settings_parser` turns every
top-level field into a flag (`time_compression` -> `--time-compression`, a bool -> `--x/--no-x`, a Literal
-> choices), with the field's description, or the comment on its declaration, as help; nested sections
(`broker`, `redis`) come from the environment or the settings file. :func:`field_comments` is also what the
generated configuration reference (launcher/reference.py) reads.
"""

from __future__ import annotations

import argparse
import inspect
import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings

from edgeoff.commands.parser import OneLineParser

__all__ = [
    "DEFAULT_HEALTH_INTERVAL_S",
    "DEFAULT_LOOP_WATCHDOG_S",
    "OpsSettings",
    "field_comments",
    "settings_file",
    "settings_from_args",
    "settings_parser",
]

DEFAULT_HEALTH_INTERVAL_S = 1.0  # health file rewrite and Redis probe period; probes allow several seconds
# A serve loop silent this long is hung: the daemon exits so that its supervisor restarts it. Well above any
# legitimate pause of a loop (an SVR fit, a policy iteration: well under a second), equal to systemd's
# WatchdogSec of the units, and 10 s below the staleness at which compose's health check kills a frozen one.
DEFAULT_LOOP_WATCHDOG_S = 30.0

_DECLARATION = re.compile(r"^\s+(\w+)\s*:[^#]*?(?:#\s*(.+))?$")
_COMMENT = re.compile(r"^\s+#\s?(.*)$")


class OpsSettings(BaseModel):
    """Mixin of a daemon's settings: how it is observed (logs, metrics, health, systemd)."""

    log_format: Literal["text", "json"] = "text"  # json: one object per line, for log shippers
    metrics_port: Annotated[int, Field(ge=0, le=65535)] | None = None  # Prometheus /metrics; None or 0: off
    metrics_host: str = "0.0.0.0"  # bind address of the metrics endpoint (a pod IP must be scrapable)
    health_file: Path | None = None  # JSON health record, rewritten atomically; read by `edgeoff health`
    health_interval_s: Annotated[float, Field(gt=0)] = DEFAULT_HEALTH_INTERVAL_S  # health file period
    # seconds without a pass of the serve loop before the daemon exits (edgeoff.ops.watchdog); 0: off
    loop_watchdog_s: Annotated[float, Field(ge=0)] = DEFAULT_LOOP_WATCHDOG_S


def field_comments(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> the comment on its declaration line, or the comment block just above it."""
    found: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            continue
        block: list[str] = []
        for line in source.splitlines():
            if comment := _COMMENT.match(line):
                block.append(comment.group(1).strip())
                continue
            if (match := _DECLARATION.match(line)) and match.group(1) in cls.__annotations__:
                text = match.group(2) or " ".join(block)
                if text:
                    found[match.group(1)] = text.strip()
            block = []
    return found


def _scalar(annotation: Any) -> Any:
    """The annotation without Annotated and without None in a union (`int | None` -> int)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _scalar(args[0])
    if origin in (Union, UnionType):
        rest = [a for a in args if a is not type(None)]
        return _scalar(rest[0]) if len(rest) == 1 else str
    return annotation


def _is_section(annotation: Any) -> bool:
    kind = _scalar(annotation)
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def settings_parser(model: type[BaseSettings], *, prog: str, description: str) -> argparse.ArgumentParser:
    """A daemon's argument parser: `--settings-file` and one flag per top-level field of `model`.

    Every flag defaults to None (not given), so the environment and the settings file fill the rest.
    """
    prefix = str(model.model_config.get("env_prefix", ""))
    parser = OneLineParser(
        prog=prog,
        description=description,
        epilog=f"Every option can also come from the environment ({prefix}<NAME>, nested sections with __: "
        f"{prefix}BROKER__HOST, {prefix}REDIS__URL, ...) or a settings file of KEY=value lines; "
        "options on the command line win.",
    )
    parser.add_argument(
        "--settings-file",
        type=settings_file,
        help="KEY=value settings file (systemd EnvironmentFile format); a missing file or another kind of "
        "line is refused",
    )
    comments = field_comments(model)
    for name, info in model.model_fields.items():
        if _is_section(info.annotation):
            continue
        flag = "--" + name.replace("_", "-")
        help_text = (info.description or comments.get(name, "")).replace("%", "%%")
        kind = _scalar(info.annotation)
        if kind is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, help=help_text)
        elif get_origin(kind) is Literal:
            choices = [str(c) for c in get_args(kind)]
            parser.add_argument(flag, dest=name, choices=choices, help=help_text)
        elif kind in (int, float, Path):
            parser.add_argument(flag, dest=name, type=kind, help=help_text)
        else:
            parser.add_argument(flag, dest=name, help=help_text)
    return parser


_SETTING_LINE = re.compile(r"^(export\s+)?[A-Za-z_][A-Za-z0-9_]*=")


def settings_file(text: str) -> Path:
    """The --settings-file argument: a readable file of KEY=value lines, blank lines and comments (# or ;).

    Anything else would be ignored silently by the reader (and the setting with it), so it is refused: a
    missing file, or a line that is not KEY=value, is a usage error naming the file and the line.
    """
    path = Path(text)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise argparse.ArgumentTypeError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise argparse.ArgumentTypeError(
            f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", ";")) and not _SETTING_LINE.match(stripped):
            raise argparse.ArgumentTypeError(f"{path}:{number}: not a KEY=value line: {stripped[:60]!r}")
    return path


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def settings_from_args(settings_type: type[SettingsT], args: argparse.Namespace) -> SettingsT:
    """A daemon's settings: the options given on the command line win over the environment, which wins
    over the `--settings-file`."""
    overrides = {
        name: value for name, value in vars(args).items() if value is not None and name != "settings_file"
    }
    return settings_type(_env_file=args.settings_file, **overrides)
