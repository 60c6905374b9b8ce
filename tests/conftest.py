"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from needs import missing

LANL_FILE = "LA-UR-05-7318-failure-data-1996-2005.csv.xz"
LANL_DIR_ENV = "EDGEOFF_LANL_DIR"  # a folder holding the raw file, searched first


@pytest.fixture(scope="session")
def lanl_path() -> Path:
    """The raw LANL failure data in ``$EDGEOFF_LANL_DIR``, or in ``shared/data/lanl`` beside the repository
    or a folder above it (``/work/main`` and the worktrees ``/work/wt/<track>`` both find ``/work/shared``);
    skips when absent (fails under CI=true)."""
    repo = Path(__file__).resolve().parents[1]
    candidates = [folder / "shared" / "data" / "lanl" / LANL_FILE for folder in repo.parents]
    if os.environ.get(LANL_DIR_ENV):
        candidates.insert(0, Path(os.environ[LANL_DIR_ENV]) / LANL_FILE)
    path = next((c for c in candidates if c.is_file()), candidates[0])
    if not path.is_file():
        missing(
            f"LANL raw data not found in ${LANL_DIR_ENV} or shared/data/lanl above {repo}: tests that need "
            "it are skipped"
        )
    return path
