"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from needs import missing

LANL_FILE = "LA-UR-05-7318-failure-data-1996-2005.csv.xz"


@pytest.fixture(scope="session")
def lanl_path() -> Path:
    """The raw LANL failure data in ``<repo>/../shared/data/lanl``; skips the test when it is absent."""
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "lanl" / LANL_FILE
    if not path.is_file():
        missing(f"LANL raw data not found at {path}: tests that need it are skipped")
    return path
