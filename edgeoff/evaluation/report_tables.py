"""Tables of the evaluation report beyond the main ones (edgeoff.evaluation.report): what the simulated
agent knows, and the paired differences against tuned KubeHybrid."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["knowledge_lines", "paired_table"]


def knowledge_lines(config: dict[str, Any]) -> list[str]:
    """One paragraph: the model's time and the agent's information (see the README)."""
    failures = config.get("failures", "markov")
    return [
        "",
        "## The model in one paragraph",
        "",
        f"Failures: `{failures}` (each site's LANL node's two-state chain in continuous trace time). "
        "The phone's clock advances with each task's own phases; sites fail at any moment, also while "
        "they hold a task. Trace time runs `time_compression` trace seconds per model second (the same "
        "setting as `edgeoff up`). The simulated agent knows what the live agent knows: a site's failure "
        "`detection_s` after it begins (the heartbeat detector), its recovery when it happens, across "
        "applications; forecasting engines add a window forecast mapped to the probability that the site "
        "stays up for the task at hand. Data already on the phone is not moved again and the phone's idle "
        "power is charged once per DAG level.",
    ]


def paired_table(main: Sequence[dict[str, Any]], baseline: str = "kubehybrid") -> list[str]:
    """Mean paired difference in RT against the baseline, with the 2-standard-error interval."""
    key = f"paired_vs_{baseline}"
    rows = [r for r in main if key in r]
    if not rows:
        return []
    lines = [
        "",
        f"## Paired differences against tuned {baseline}",
        "",
        "Response time of 1000 apps minus the baseline's, repetition by repetition on the same random "
        "numbers (workload, failures, jitter); mean and 2-standard-error interval. Negative: faster than "
        "the baseline; an interval containing 0 shows no difference.",
        "",
        "| dataset | engine | RT difference (s) | 2-SE interval (s) | faster? |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        p = r[key]
        verdict = "yes" if p["high_s"] < 0 else ("no, slower" if p["low_s"] > 0 else "no difference")
        lines.append(
            f"| {r['dataset']} | {r['engine']} | {p['mean_s']:+.2f} "
            f"| [{p['low_s']:+.2f}, {p['high_s']:+.2f}] | {verdict} |"
        )
    return lines
