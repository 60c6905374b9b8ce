"""Logging of the daemons: plain text by default, one JSON object per line when asked.

Text:  `2025-01-01 12:00:00,123 INFO site=ed edgeoff.site: site ed: online, session 1`
JSON:  `{"ts": 1735732800.123, "time": "2025-01-01T12:00:00.123+00:00", "level": "INFO", "site": "ed",
        "logger": "edgeoff.site", "msg": "site ed: online, session 1"}` (plus `exc` with a traceback)

The context (`site=ed`, `worker=worker-0`) is part of every line, so lines of several daemons merged by
a log shipper stay attributable.

Hostile input must not be able to flood the log (ARCHITECTURE rule 10). :class:`DropLog` turns dropped
messages into rate-limited summaries: the first drop of each (reason, topic) in an interval is logged
with its detail, every further one is only counted, and once the interval is over one line sums them up
(counts per reason and topic). :class:`RateLimitedLog` does the same for any repeated error (a corrupt
record retried every poll). :func:`excerpt` keeps every id, topic or payload excerpt in a line short.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Literal

__all__ = [
    "DROP_INTERVAL_S",
    "MAX_EXCERPT_CHARS",
    "DropLog",
    "JsonFormatter",
    "RateLimitedLog",
    "excerpt",
    "setup_logging",
]

DROP_INTERVAL_S = 10.0  # one summary of dropped input per interval, at most
MAX_EXCERPT_CHARS = 80  # an id, a topic or a payload excerpt in a log line
MAX_DETAIL_CHARS = 200  # the reason of one drop (DecodeError reasons are this long at most already)
MAX_KEYS = 20  # (reason, topic) pairs logged or summed up one by one per interval; the rest as "others"

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


def excerpt(value: object, limit: int = MAX_EXCERPT_CHARS) -> str:
    """`value` as text for a log line, cut to `limit` characters (with how much was cut), one line."""
    text = value if isinstance(value, str) else repr(value)
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...(+{len(text) - limit} chars)"


class RateLimitedLog:
    """At most one line per key per interval; the suppressed ones are counted and reported with the next
    line of the key, or by :meth:`flush` once the interval is over. Thread-safe: a site's worker threads
    and its loop share one."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval_s: float = DROP_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._interval = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}  # key -> when its last line was written
        self._suppressed: Counter[str] = Counter()
        self._levels: dict[str, int] = {}
        self._lock = threading.Lock()

    def log(self, level: int, key: str, msg: str, *args: object) -> bool:
        """Log `msg % args` unless `key` was logged less than an interval ago; True when written."""
        with self._lock:
            return self._log_locked(level, key, msg, *args)

    def _log_locked(self, level: int, key: str, msg: str, *args: object) -> bool:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] += 1
            self._levels[key] = level
            return False
        if len(self._last) >= 4 * MAX_KEYS and key not in self._last:
            self._forget(now)
        suppressed = self._suppressed.pop(key, 0)
        self._last[key] = now
        if suppressed:
            msg = f"{msg} (and {suppressed} more like it in the last {now - (last or now):.0f} s)"
        self._log.log(level, msg, *args)
        return True

    def flush(self) -> None:
        """Report the keys whose interval is over and that were suppressed meanwhile."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        now = self._clock()
        for key, n in list(self._suppressed.items()):
            last = self._last.get(key, now)
            if now - last >= self._interval:
                del self._suppressed[key]
                self._last[key] = now
                self._log.log(
                    self._levels.pop(key, logging.WARNING),
                    "%s: %d more like it in the last %.0f s",
                    excerpt(key),
                    n,
                    now - last,
                )

    def _forget(self, now: float) -> None:
        """Drop the keys whose interval is over (their suppressed counts reported first); lock held."""
        self._flush_locked()
        for key, last in list(self._last.items()):
            if now - last >= self._interval and key not in self._suppressed:
                del self._last[key]


class DropLog:
    """Dropped input as rate-limited summaries; `drop` for each dropped message, `flush` from the loop.

    Per interval: the first drop of each (reason, topic) pair, for at most MAX_KEYS pairs, is one line with
    its (shortened) detail; when more were dropped, one line at the end of the interval counts them per
    reason and topic. Whatever arrives, the log grows by at most MAX_KEYS + 1 short lines per interval.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        interval_s: float = DROP_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._what = what  # e.g. "site ed", the subject of each line
        self._interval = interval_s
        self._clock = clock
        self._started: float | None = None  # start of the current interval (None: no drop in it yet)
        self._logged: set[tuple[str, str]] = set()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._unlogged = 0  # drops of the interval not written as a line of their own

    def drop(self, reason: str, topic: str, detail: str) -> None:
        """Note one dropped message (`topic` and `detail` are shortened before they reach the log)."""
        now = self._clock()
        if self._started is not None and now - self._started >= self._interval:
            self.flush()
        if self._started is None:
            self._started = now
        key = (reason, excerpt(topic))
        if key not in self._logged and len(self._logged) < MAX_KEYS:
            self._logged.add(key)
            self._log.warning(
                "%s: dropped a message on %s (%s): %s",
                self._what,
                key[1],
                reason,
                excerpt(detail, MAX_DETAIL_CHARS),
            )
            return
        self._unlogged += 1
        self._counts[key if len(self._counts) < MAX_KEYS or key in self._counts else ("other", "...")] += 1

    def flush(self, *, force: bool = False) -> None:
        """Write the summary of the interval when it is over (or `force`), and start a new one."""
        if self._started is None:
            return
        now = self._clock()
        if not force and now - self._started < self._interval:
            return
        if self._unlogged:
            parts = ", ".join(
                f"{reason} on {topic} x{n}" for (reason, topic), n in self._counts.most_common()
            )
            self._log.warning(
                "%s: dropped %d more messages in the last %.0f s: %s",
                self._what,
                self._unlogged,
                now - self._started,
                parts,
            )
        self._started = None
        self._logged.clear()
        self._counts.clear()
        self._unlogged = 0
