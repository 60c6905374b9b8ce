"""What a test needs from the machine: skipped with the reason on a developer's machine, failed under CI.

`.ci/run` installs everything the suite needs (Mosquitto, Redis, the deployment validators, the test
extras) and the LANL file is part of the workplace, so in CI (`CI=true`) a missing part is a failure of
the set-up, never a silent skip.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["in_ci", "missing"]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(what: str) -> NoReturn:
    """Skip the test because `what` is missing (the reason says how to get it); fail instead under CI."""
    if in_ci():
        pytest.fail(f"required in CI (CI=true): {what}", pytrace=False)
    pytest.skip(what)
