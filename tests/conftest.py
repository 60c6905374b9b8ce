"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from needs import missing

LANL_FILE = "LA-UR-05-7318-failure-data-1996-2005.csv.xz"


@pytest.fixture(scope="session")
def lanl_path() -> Path:
    """The raw LANL failure data in ``shared/data/lanl`` beside the repository or a folder above it
    (``/work/main`` and the worktrees ``/work/wt/<track>`` both find ``/work/shared``); skips when absent."""
    repo = Path(__file__).resolve().parents[1]
    candidates = [folder / "shared" / "data" / "lanl" / LANL_FILE for folder in repo.parents]
    path = next((c for c in candidates if c.is_file()), candidates[0])
    if not path.is_file():
        missing(f"LANL raw data not found in shared/data/lanl above {repo}: tests that need it are skipped")
    return path
