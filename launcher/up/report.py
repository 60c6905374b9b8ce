"""What a run measured: the failures the sites injected, the results table and the results.json body.

results.json has the shape of `edgeoff evaluate`'s ({"config", "results": [record]}); the record is
mobile_agent.meter's, whose `rt_s` is per application run, plus `tasks_lost`, `failures_injected` (the
failures the sites logged), `failures_detected` and `detection_latency_ms` (injection to the agent's
verdict).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from mobile_agent.meter import Injection

__all__ = ["injected_failures", "print_table"]

INJECTED = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) \S+ site=(?P<site>\S+) .*injected failure for "
    r"(?P<down>[0-9.]+) s"
)


def injected_failures(log_text: str) -> list[Injection]:
    """The failures a site daemon logged ("injected failure for X s"), with their wall times."""
    out = []
    for line in log_text.splitlines():
        match = INJECTED.match(line)
        if match:
            ts = datetime.strptime(match["ts"], "%Y-%m-%d %H:%M:%S,%f").timestamp()  # local time, as logged
            out.append(Injection(site=match["site"], ts=ts, down_s=float(match["down"])))
    return out


def print_table(console: Console, record: dict[str, Any]) -> None:
    table = Table(title=f"edgeoff up: {record['dataset']} / {record['engine']} (live)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    lat = record["detection_latency_ms"]
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
        ("failures injected / detected", f"{record['failures_injected']} / {record['failures_detected']}"),
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
