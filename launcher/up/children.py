"""Process supervision: the children of `edgeoff up` (and of the benchmarks), each in its own process group.

A Ctrl-C in the terminal then reaches only the parent, which stops the children in reverse start order (the
agent first, so it writes what it measured): SIGTERM to the child's group, SIGKILL after a timeout, always
reaped. On Linux each child also gets SIGTERM if its parent dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from edgeoff.errors import EdgeoffError
from edgeoff.ops.health import read_health

__all__ = [
    "STOP_TIMEOUT_S",
    "Child",
    "Children",
    "StartError",
    "StartInterruptedError",
    "last_line",
    "signal_group",
    "wait_ready",
]

STOP_TIMEOUT_S = 5.0  # after SIGTERM; then SIGKILL
PR_SET_PDEATHSIG = 1  # prctl option: signal the child when its parent dies
POLL_S = 0.1
TAIL_BYTES = 4096  # enough for a daemon's one-line error or the last line of a traceback


class StartError(EdgeoffError):
    """A child did not start: it exited, or was not ready in time (the message says which, and why)."""


class StartInterruptedError(EdgeoffError):
    """The wait for the children to be ready was interrupted (Ctrl-C)."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    log_path: Path


@dataclass
class Children:
    """The processes this command started, each in its own process group; stopped in reverse order."""

    logs: Path
    started: list[Child] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Child:
        path = self.logs / f"{name}.log"
        log = path.open("wb")
        proc = subprocess.Popen(
            args,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: the terminal's Ctrl-C reaches only `edgeoff up`
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        child = Child(name, proc, log, path)
        self.started.append(child)
        return child

    def pids(self) -> dict[str, int]:
        return {c.name: c.proc.pid for c in self.started}

    def stop(self, child: Child, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM to the child's process group, SIGKILL after `timeout`; always reaped."""
        if child.proc.poll() is None:
            signal_group(child.proc.pid, signal.SIGTERM)
            try:
                child.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                signal_group(child.proc.pid, signal.SIGKILL)
                child.proc.wait(timeout)
        signal_group(child.proc.pid, signal.SIGKILL)  # anything the child left in its group
        child.log.close()

    def stop_all(self) -> None:
        for child in reversed(self.started):
            self.stop(child)


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def last_line(path: Path) -> str:
    """The last non-empty line of a log (a daemon's one-line error, a traceback's exception)."""
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - TAIL_BYTES))
            lines = fh.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


def wait_ready(
    waiting: Sequence[tuple[Child, Path]],
    timeout_s: float,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Wait until every child's health file (edgeoff.ops.health) says ready; raise StartError naming the
    first child that exited or was not ready within `timeout_s`, with the last line of its log, and
    StartInterruptedError as soon as `stop` is set."""
    deadline = clock() + timeout_s
    pending = list(waiting)
    while pending:
        if stop is not None and stop.is_set():
            raise StartInterruptedError("interrupted while the daemons were starting")
        for child, health in list(pending):
            code = child.proc.poll()
            if code is not None:
                reason = last_line(child.log_path) or "no output"
                raise StartError(
                    f"{child.name} exited at start (code {code}): {reason}; see {child.log_path}"
                )
            try:
                ready = read_health(health).ready
            except (OSError, ValueError, KeyError, TypeError):
                ready = False  # not written yet
            if ready:
                pending.remove((child, health))
        if pending and clock() > deadline:
            child = pending[0][0]
            reason = last_line(child.log_path) or "no output"
            raise StartError(
                f"{child.name} was not ready after {timeout_s:g} s (connected to the broker and Redis): "
                f"{reason}; see {child.log_path}"
            )
        if pending:
            time.sleep(POLL_S)
