"""What a live run records so that `edgeoff twin` can replay it through the offline simulator (pure).

Opt-in (the agent's `record_twin`, which `edgeoff up` turns on) and bounded: at most `max_entries`
entries (application runs, tasks and view changes together); the first one beyond stops the recording
and marks it `truncated`, so the record is a prefix of the run (`edgeoff twin` compares that prefix, an
application run cut short by the cap is left out of it).

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

__all__ = ["DEFAULT_TWIN_MAX_ENTRIES", "RunRecorder"]

# `edgeoff up` at its default settings records about 10 entries a second (197 in a 20 s run), about 1 KB
# each in memory: this cap is about half an hour and 20 MB (the default --duration is 120 s).
DEFAULT_TWIN_MAX_ENTRIES = 20_000


@dataclass
class RunRecorder:
    """Collects the twin record when `enabled`; :meth:`to_json` turns it into plain JSON data."""

    enabled: bool = False
    max_entries: int = DEFAULT_TWIN_MAX_ENTRIES
    started_ts: float | None = None
    apps: list[dict[str, Any]] = field(default_factory=list)
    view: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    truncated_ts: float | None = None  # wall clock of the first entry not recorded

    @property
    def entries(self) -> int:
        return len(self.apps) + len(self.view) + len(self.tasks)

    @property
    def truncated(self) -> bool:
        return self.truncated_ts is not None

    def _room(self, ts: float) -> bool:
        """Whether one more entry is recorded (the first refused one truncates the record)."""
        if not self.enabled or self.truncated:
            return False
        if self.entries >= self.max_entries:
            self.truncated_ts = ts
            return False
        return True

    def app_run(self, run: int, ts: float, specs: Sequence[TaskSpec]) -> None:
        if self.enabled and self.started_ts is None:
            self.started_ts = ts
        if not self._room(ts):
            return
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
        if self._room(ts):
            self.view.append({"ts": ts, "site": site, "down": known_down, "forecast": forecast})

    def task(self, ts: float, t: TaskMeasurement, site_ids: Sequence[str]) -> None:
        """A task of the run finished (or was abandoned) at `ts`."""
        if not self._room(ts):
            return
        self.tasks.append(
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
        )

    def to_json(self) -> dict[str, Any] | None:
        """The record (None: not recorded); `truncated` says whether it is a prefix of the run."""
        if not self.enabled:
            return None
        return {
            "started_ts": self.started_ts,
            "apps": self.apps,
            "view": self.view,
            "tasks": self.tasks,
            "truncated": self.truncated,
            "truncated_ts": self.truncated_ts,
            "max_entries": self.max_entries,
        }
