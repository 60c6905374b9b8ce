"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from needs import missing

LANL_FILE = "LA-UR-05-7318-failure-data-1996-2005.csv.xz"
LANL_DIR_ENV = "EDGEOFF_LANL_DIR"  # where the raw file is, when not in <repo>/../shared/data/lanl


@pytest.fixture(scope="session")
def lanl_path() -> Path:
    """The raw LANL failure data in ``$EDGEOFF_LANL_DIR`` or else ``<repo>/../shared/data/lanl``; skips the
    test when it is absent (fails under CI=true)."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "lanl"
    path = Path(os.environ.get(LANL_DIR_ENV) or default) / LANL_FILE
    if not path.is_file():
        missing(f"LANL raw data not found at {path} (set {LANL_DIR_ENV}): tests that need it are skipped")
    return path
