"""The run's work folder: broker configuration, generated passwords (0600), persistence, health files.

It lives in the system's temporary folder (mode 0700), never in --out, and is removed when the run ends.
A run killed with SIGKILL cannot remove it, so every run first removes the work folders of runs that are
gone: those of this user whose owner process (recorded in `owner.json` as pid and start time, so a reused
pid does not count) no longer exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PREFIX", "remove_stale", "work_folder"]

PREFIX = "edgeoff-up-"
OWNER = "owner.json"
UNCLAIMED_GRACE_S = 60.0  # a folder without an owner file may be one being created right now


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


def _alive(owner: dict[str, object]) -> bool:
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False
    start = _start_time(pid)
    if start is None:
        # no /proc (not Linux): the pid alone
        if not Path("/proc/self/stat").exists():
            with contextlib.suppress(OSError):
                os.kill(pid, 0)
                return True
        return False
    return start == owner.get("start")


def remove_stale(parent: Path | None = None, *, now: float | None = None) -> list[Path]:
    """Remove this user's work folders whose run is gone; the folders removed."""
    parent = Path(tempfile.gettempdir()) if parent is None else parent
    now = time.time() if now is None else now
    removed = []
    for folder in parent.glob(f"{PREFIX}*"):
        try:
            if not folder.is_dir() or folder.is_symlink() or folder.stat().st_uid != os.getuid():
                continue
            try:
                owner = json.loads((folder / OWNER).read_text(encoding="utf-8"))
            except FileNotFoundError:
                if now - folder.stat().st_mtime < UNCLAIMED_GRACE_S:
                    continue
                owner = {}
            except ValueError:
                owner = {}
        except OSError:
            continue
        if isinstance(owner, dict) and _alive(owner):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


@contextlib.contextmanager
def work_folder() -> Iterator[Path]:
    """A fresh work folder (0700) that records its owner; removed on exit."""
    folder = Path(tempfile.mkdtemp(prefix=PREFIX))
    try:
        owner = {"pid": os.getpid(), "start": _start_time(os.getpid())}
        (folder / OWNER).write_text(json.dumps(owner), encoding="utf-8")
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
