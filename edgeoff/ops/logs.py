"""Logging of the daemons: plain text by default, one JSON object per line when asked.

Text:  `2025-01-01 12:00:00,123 INFO site=ed edgeoff.site: site ed: online, session 1`
JSON:  `{"ts": 1735732800.123, "time": "2025-01-01T12:00:00.123+00:00", "level": "INFO", "site": "ed",
        "logger": "edgeoff.site", "msg": "site ed: online, session 1"}` (plus `exc` with a traceback)

The context (`site=ed`, `worker=worker-0`) is part of every line, so lines of several daemons merged by
a log shipper stay attributable.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from typing import Literal

__all__ = ["JsonFormatter", "setup_logging"]

_HANDLER_MARK = "_edgeoff_ops_handler"  # our root handler, replaced (not duplicated) on a second setup


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, time, level, the context, logger, msg (and exc)."""

    def __init__(self, context: Mapping[str, str]) -> None:
        super().__init__()
        self.context = dict(context)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 6),
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            **self.context,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(level: str, log_format: Literal["text", "json"], context: Mapping[str, str]) -> None:
    """Configure the root logger once per process (a second call replaces our handler, keeps others)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler()  # stderr: journald and container runtimes collect it
    setattr(handler, _HANDLER_MARK, True)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(context))
    else:
        fields = " ".join(f"{key}={value}" for key, value in context.items())
        prefix = f"{fields} " if fields else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
