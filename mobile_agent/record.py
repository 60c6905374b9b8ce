"""What the agent measured during a run, and the results record made from it (mobile_agent.meter).

Everything here is bounded: tasks are folded into the :class:`~mobile_agent.meter.TaskMeter`; of the
fallbacks and detections the first ones are kept in full and all are counted (the agent's `detection_log`
has every detection).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeoff.files import atomic_write
from mobile_agent.meter import Detection, TaskMeter

__all__ = ["MAX_RECORDED_DETECTIONS", "MAX_RECORDED_FALLBACKS", "RunRecord", "write_results"]

MAX_RECORDED_FALLBACKS = 1000  # the results file keeps the first fallbacks in full, counts all
MAX_RECORDED_DETECTIONS = 1000  # and the first detections


@dataclass
class RunRecord:
    """What the agent measured so far."""

    meter: TaskMeter
    detections: list[Detection] = field(default_factory=list)
    detection_count: int = 0
    fallbacks: list[dict[str, Any]] = field(default_factory=list)
    fallback_count: int = 0
    remote_failures: int = 0  # failed remote attempts so far
    usable_sum: np.ndarray | None = None
    availability_sum: np.ndarray | None = None
    decisions: int = 0
    apps_started: int = 0
    apps_done: int = 0

    def detected(self, detection: Detection) -> None:
        self.detection_count += 1
        if len(self.detections) < MAX_RECORDED_DETECTIONS:
            self.detections.append(detection)


def write_results(path: Path, record: dict[str, Any]) -> None:
    """Write atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(record, indent=2) + "\n")
