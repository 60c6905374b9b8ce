"""What a run measured: the failures the sites injected, the results table and the results.json body.

results.json has the shape of `edgeoff evaluate`'s ({"config", "provenance", "results": [record], "run"});
the record is mobile_agent.meter's, whose `rt_s` is per application run, plus `tasks_lost`,
`failures_injected` (every failure the sites recorded), `failures_detectable` (those longer than the
detector's time, 10 x 150 ms, that began while the agent ran and ended its detection window before it
stopped), `failures_detected` (the agent's verdicts matched to an injection) and `detection_latency_ms`
(injection to the agent's verdict).

The sites record every injected failure as one JSON object per line (their `injection_log` setting,
`--out/logs/site-<id>.injections.jsonl` here): {"site", "ts" (wall clock), "down_s", "session"}; this does
not depend on the log format.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

from edgeoff.commands.provenance import provenance, run_info
from edgeoff.scenario import Scenario
from launcher.up.broker_setup import Brokers
from launcher.up.children import Child, Children
from mobile_agent.meter import Detection, Injection, detection_summary

__all__ = [
    "RunWindow",
    "detection_log",
    "injection_log",
    "print_table",
    "read_detections",
    "read_injections",
    "results_body",
    "run_failure",
]


@dataclass(frozen=True)
class RunWindow:
    """Wall-clock span (epoch seconds) from the agent being ready to its exit."""

    start: float
    end: float | None = None


def injection_log(logs: Path, site: str) -> Path:
    """Where a site of this run records its injected failures."""
    return logs / f"site-{site}.injections.jsonl"


def detection_log(logs: Path) -> Path:
    """Where the agent of this run records every detection of a failed site."""
    return logs / "agent.detections.jsonl"


T = TypeVar("T")


def _read_records(path: Path, parse: Callable[[dict[str, Any]], T]) -> list[T]:
    """The records of a JSON-lines file a daemon appends to (missing: none; a line it cannot parse, cut
    short when the daemon was killed, is skipped)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(parse(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def read_detections(path: Path) -> list[Detection]:
    """The detections the agent recorded, in time order."""

    def parse(raw: dict[str, Any]) -> Detection:
        return Detection(site=str(raw["site"]), ts=float(raw["ts"]), how=str(raw["how"]))

    return sorted(_read_records(path, parse), key=lambda d: d.ts)


def read_injections(path: Path) -> list[Injection]:
    """The failures a site recorded."""

    def parse(raw: dict[str, Any]) -> Injection:
        return Injection(site=str(raw["site"]), ts=float(raw["ts"]), down_s=float(raw["down_s"]))

    return _read_records(path, parse)


def detectable(injections: Sequence[Injection], detection_s: float, window: RunWindow) -> list[Injection]:
    """Failures the agent could see: longer than the detection time, begun after the agent was ready and
    detectable (begin + detection time) before it stopped."""
    end = float("inf") if window.end is None else window.end
    return [
        i for i in injections if i.down_s > detection_s and window.start <= i.ts and i.ts + detection_s <= end
    ]


def results_body(
    args: argparse.Namespace,
    scenario: Scenario,
    brokers: Brokers,
    record: dict[str, Any],
    children: Children,
    window: RunWindow,
) -> dict[str, Any]:
    """The results.json of a run: config, provenance, the record, every injection, detection, fallback."""
    injections = sorted(
        (i for c in children.started if c.name.startswith("site-") for i in read_injections(_log_of(c))),
        key=lambda i: i.ts,
    )
    # every detection is in the agent's log; its record keeps only the first ones (bounded memory)
    first = [Detection(d["site"], d["ts"], d["how"]) for d in record.pop("detections")]
    logged = read_detections(detection_log(children.logs))
    record.pop("detections_count", None)
    detections = logged if len(logged) > len(first) else sorted(first, key=lambda d: d.ts)
    record.update(detection_summary(injections, detections))
    record["failures_detectable"] = len(detectable(injections, scenario.detection.detection_s, window))
    fallback_log = record.pop("fallback_log")
    record.pop("twin", None)  # the replay record stays in agent.json (`edgeoff twin`)
    config = {
        "mode": "live (edgeoff up)",
        "scenario": str(args.scenario) if args.scenario else "paper (default)",
        "datasets": [args.dataset],
        "engines": [args.engine],
        "duration_s": args.duration,
        "time_compression": args.time_compression,
        "time_scale": args.time_scale,
        "seed": args.seed,
        "detection_s": scenario.detection.detection_s,
        "broker": f"{brokers.host}:{brokers.port}",
        "broker_accounts": brokers.secrets is not None,  # False: a reused broker, used as it is
    }
    return {
        "config": config,
        "provenance": provenance(args.scenario, None),
        "results": [record],
        "injected": [{"site": i.site, "ts": i.ts, "down_s": i.down_s} for i in injections],
        "detections": [d.__dict__ for d in detections],
        "fallbacks": fallback_log,
        "run": run_info(window.start, (window.end or window.start) - window.start),
    }


def _log_of(child: Child) -> Path:
    return injection_log(child.log_path.parent, child.name.removeprefix("site-"))


def run_failure(record: dict[str, Any], died: Sequence[Child]) -> str | None:
    """Why a finished run failed, or None: a daemon that exited during the run, or no application that
    could use any site (every task on the phone, every remote attempt failed)."""
    if died:
        names = ", ".join(f"{c.name} (code {c.proc.returncode})" for c in died)
        return f"exited during the run: {names}; see {died[0].log_path}"
    remote = round(record["offloads_per_1000_apps"] * record["apps"] / 1000)
    if record["apps"] == 0:
        return "no application ran; see the agent's log"
    if remote - record["failures"] <= 0:
        return (
            f"no application could use any site ({remote} remote attempts, {record['failures']} failed): "
            "check that the sites are online (edgeoff status) and the logs"
        )
    return None


def print_table(console: Console, record: dict[str, Any]) -> None:
    table = Table(title=f"edgeoff up: {record['dataset']} / {record['engine']} (live)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    lat = record["detection_latency_ms"]
    failures = (record["failures_injected"], record["failures_detectable"], record["failures_detected"])
    rows = [
        ("application runs", f"{record['apps']}"),
        ("response time per app (s)", f"{record['rt_s']['mean']:.3f} ± {record['rt_s']['std']:.3f}"),
        ("battery left (%)", f"{record['battery_pct']['mean']:.4f}"),
        ("availability of remote attempts (%)", f"{record['availability_pct']['mean']:.2f}"),
        (
            "remote attempts / failures",
            f"{record['offloads_per_1000_apps'] * record['apps'] / 1000:.0f} / {record['failures']}",
        ),
        ("fallbacks", f"{record['fallbacks']}"),
        (
            "failures injected / detectable / detected",
            " / ".join(str(n) for n in failures),
        ),
        (
            "detection latency p50 / p99 (ms)",
            "-" if lat["p50"] is None else f"{lat['p50']:.1f} / {lat['p99']:.1f}",
        ),
        (
            "offloading MD/ED/EC/ER/CD (%)",
            " / ".join(f"{v:.0f}" for v in record["distribution_pct"].values()),
        ),
        ("tasks lost", f"{record['tasks_lost']}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    console.print(
        "detectable: longer than the detection time and inside the agent's run; shorter outages end before "
        "any detector can see them",
        style="dim",
    )
