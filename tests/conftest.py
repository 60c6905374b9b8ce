"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from needs import missing

LANL_FILE = "LA-UR-05-7318-failure-data-1996-2005.csv.xz"


@pytest.fixture(scope="session")
def lanl_path() -> Path:
    """The raw LANL failure data in ``<repo>/../shared/data/lanl``; skips the test when it is absent.

    A git worktree one level deeper (``/work/wt/<track>``) finds the same folder higher up.
    """
    repo = Path(__file__).resolve().parents[1]
    candidates = [folder / "shared" / "data" / "lanl" / LANL_FILE for folder in repo.parents]
    path = next((candidate for candidate in candidates if candidate.is_file()), candidates[0])
    if not path.is_file():
        missing(f"LANL raw data not found at {path}: tests that need it are skipped")
    return path
