"""Where a result came from: package version, source commit, hashes of the inputs; and when it was made.

Every results.json (`edgeoff evaluate`, `edgeoff up`) carries two blocks:

- `provenance` (the same for two runs of the same code on the same inputs): `edgeoff_version`, `commit`
  and `commit_dirty` of the source tree when it is a git checkout (null otherwise), `python`, `numpy`,
  `scenario` and `scenario_sha256` (the file's bytes; the packaged paper.toml by default), `failure_data`
  and `failure_data_sha256` (the packaged LANL node table, or the raw file given with --lanl).
- `run` (differs between any two runs; the only key that does): `started_at` (UTC, ISO 8601), `seconds`
  (wall time), `host` and `cpus`.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from edgeoff import __version__
from edgeoff.traces import file_sha256

__all__ = ["VARYING_KEYS", "provenance", "run_info"]

VARYING_KEYS = ("run",)  # the top-level keys of results.json that differ between two runs with one seed
GIT_TIMEOUT_S = 5.0
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout holding edgeoff/ (or site-packages)


def _git(*args: str) -> str | None:
    if not (SOURCE_ROOT / ".git").exists():
        return None  # an installed package, or a source tree without git
    try:
        done = subprocess.run(
            ["git", "-C", str(SOURCE_ROOT), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def _packaged_sha256(package: str, name: str) -> str:
    return hashlib.sha256(resources.files(package).joinpath(name).read_bytes()).hexdigest()


def provenance(scenario: Path | None, lanl: Path | None) -> dict[str, Any]:
    """The provenance block of results.json (see the module docstring)."""
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "edgeoff_version": __version__,
        "commit": commit or None,
        "commit_dirty": None if dirty is None else bool(dirty),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scenario": str(scenario) if scenario else "paper.toml (packaged)",
        "scenario_sha256": file_sha256(scenario)
        if scenario
        else _packaged_sha256("edgeoff.scenarios", "paper.toml"),
        "failure_data": str(lanl) if lanl else "lanl_nodes.json (packaged LANL node table)",
        "failure_data_sha256": file_sha256(lanl)
        if lanl
        else _packaged_sha256("edgeoff.data", "lanl_nodes.json"),
    }


def run_info(started: float, seconds: float) -> dict[str, Any]:
    """The run block of results.json: `started` is the wall clock (epoch seconds) at the start."""
    return {
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "host": platform.node(),
        "cpus": os.cpu_count(),
    }
