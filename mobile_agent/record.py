"""What the agent measured during a run, and the results record made from it (mobile_agent.meter)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeoff.files import atomic_write
from mobile_agent.meter import Detection, TaskMeasurement

__all__ = ["MAX_RECORDED_FALLBACKS", "RunRecord", "write_results"]

MAX_RECORDED_FALLBACKS = 1000  # the results file keeps the first fallbacks in full, counts all


@dataclass
class RunRecord:
    """What the agent measured so far."""

    tasks: list[TaskMeasurement] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    fallbacks: list[dict[str, Any]] = field(default_factory=list)
    fallback_count: int = 0
    remote_failures: int = 0  # failed remote attempts so far
    usable_sum: np.ndarray | None = None
    availability_sum: np.ndarray | None = None
    decisions: int = 0
    apps_started: int = 0
    apps_done: int = 0


def write_results(path: Path, record: dict[str, Any]) -> None:
    """Write atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(record, indent=2) + "\n")
