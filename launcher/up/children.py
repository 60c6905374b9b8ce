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
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

__all__ = ["STOP_TIMEOUT_S", "Child", "Children", "signal_group"]

STOP_TIMEOUT_S = 5.0  # after SIGTERM; then SIGKILL
PR_SET_PDEATHSIG = 1  # prctl option: signal the child when its parent dies


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
