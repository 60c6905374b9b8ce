"""What a live run records so that `edgeoff twin` can replay it through the offline simulator (pure).

The agent feeds it, with its wall clock (epoch seconds, the clock of the sites' failure logs):

- the start of the run (the first application run);
- every application run as drawn: its start time, its application and each task's sizes;
- every change of its view of a site, as it arrived: known down (offline status or the worker's
  `detector:down`) or not, and the window forecast then in force;
- every task's outcome: where it finally ran, its attempts and its measured time (model seconds).

`edgeoff up` adds the sites' injected up/down schedule and the configuration (scenario, seed, time
compression, time scale) and leaves it all in the run's folder (agent.json's "twin", results.json).
(mobile_agent.record is the agent's measurements for its results record.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mobile_agent.meter import TaskMeasurement, task_time_s
from mobile_agent.planner import TaskSpec

__all__ = ["RunRecorder"]


@dataclass
class RunRecorder:
    """Collects the twin record; :meth:`to_json` turns it into plain JSON data."""

    started_ts: float | None = None
    apps: list[dict[str, Any]] = field(default_factory=list)
    view: list[dict[str, Any]] = field(default_factory=list)

    def start(self, ts: float) -> None:
        if self.started_ts is None:
            self.started_ts = ts

    def app_run(self, run: int, ts: float, specs: Sequence[TaskSpec]) -> None:
        self.start(ts)
        self.apps.append(
            {
                "run": run,
                "ts": ts,
                "app": specs[0].app if specs else "",
                "tasks": [[s.index, s.mi, s.input_kb, s.output_kb] for s in specs],
            }
        )

    def site_view(self, ts: float, site: str, *, known_down: bool, forecast: float) -> None:
        """The agent's view of `site` changed at `ts`."""
        self.view.append({"ts": ts, "site": site, "down": known_down, "forecast": forecast})

    def to_json(self, tasks: Sequence[TaskMeasurement], site_ids: Sequence[str]) -> dict[str, Any]:
        return {
            "started_ts": self.started_ts,
            "apps": self.apps,
            "view": self.view,
            "tasks": [
                {
                    "run": t.app_run,
                    "site": None if t.site is None else site_ids[t.site],
                    "completed": t.completed,
                    "offloadable": t.offloadable,
                    "attempts": [site_ids[a.site] for a in t.attempts],
                    "failed": sum(1 for a in t.attempts if a.remote and not a.ok),
                    "time_s": task_time_s(t),
                    "level": t.level,
                    "phases": [[p.kind, p.seconds, p.src, p.dst] for p in t.phases],
                }
                for t in tasks
            ],
        }
