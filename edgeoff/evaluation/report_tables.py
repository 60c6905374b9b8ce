"""Tables of the evaluation report beyond the main ones (edgeoff.evaluation.report): what the simulated
agent knows, the paired differences against tuned KubeHybrid, and each DAG-aware engine against its
per-task counterpart."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgeoff.evaluation.paired import PER_TASK_KEY

__all__ = ["dag_table", "failure_model_tables", "knowledge_lines", "paired_table"]


def knowledge_lines(config: dict[str, Any]) -> list[str]:
    """One paragraph: the model's time and the agent's information (see the README)."""
    models = sorted({s.get("failures", "markov") for s in config.get("settings", [])}) or ["markov"]
    failures = ", ".join(models)
    return [
        "",
        "## The model in one paragraph",
        "",
        f"Failures: {failures} (markov: each site's LANL node's two-state chain in continuous trace time; "
        "replay: the node's real outages of its test part, looped from a seeded offset, engines fitted on "
        "the training part). "
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


def failure_model_tables(results: Sequence[dict[str, Any]], settings: Sequence[dict[str, Any]]) -> list[str]:
    """Per failure model (the main setting's time compression and detection): every engine's RT, the
    share of the reactive-to-oracle gap it closes and its paired difference against KubeHybrid."""
    main = settings[0]
    chosen = [
        i
        for i, s in enumerate(settings)
        if s["time_compression"] == main["time_compression"] and s["detection_s"] == main["detection_s"]
    ]
    lines: list[str] = []
    for i in chosen:
        rows = [r for r in results if r["setting"] == i]
        by = {(r["dataset"], r["engine"]): r for r in rows}
        lines += [
            "",
            f"## Failure model `{settings[i].get('failures', 'markov')}`: every engine against the bounds",
            "",
            "Gap closed: (reactive - engine) / (reactive - oracle) in RT; vs KubeHybrid: paired mean "
            "difference, 2-SE interval (s per 1000 apps).",
            "",
            "| dataset | engine | RT (s) | gap closed | vs KubeHybrid (s) |",
            "|---|---|---|---|---|",
        ]
        for r in rows:
            d = r["dataset"]
            low, high = by.get((d, "mdp-reactive")), by.get((d, "mdp-oracle"))
            share = "n/a"
            if low is not None and high is not None:
                gap = low["rt_s"]["mean"] - high["rt_s"]["mean"]
                if gap > 1e-3 * low["rt_s"]["mean"]:
                    share = f"{(low['rt_s']['mean'] - r['rt_s']['mean']) / gap * 100:.0f} %"
            p = r.get("paired_vs_kubehybrid")
            versus = "" if p is None else f"{p['mean_s']:+.2f} [{p['low_s']:+.2f}, {p['high_s']:+.2f}]"
            lines.append(f"| {d} | {r['engine']} | {r['rt_s']['mean']:.1f} | {share} | {versus} |")
    return lines


def dag_table(results: Sequence[dict[str, Any]], settings: Sequence[dict[str, Any]]) -> list[str]:
    """Every setting's `dag-<source>` engines against `mdp-<source>`: paired RT difference, 2-SE interval,
    and both engines' failed attempts."""
    rows = [r for r in results if PER_TASK_KEY in r]
    if not rows:
        return []
    by = {(r["setting"], r["dataset"], r["engine"]): r for r in results}
    lines = [
        "",
        "## What the DAG-aware engine adds: `dag-<source>` against `mdp-<source>`",
        "",
        "The DAG-aware engine plans the whole application run once at its start (a finite-horizon MDP over "
        "its tasks, undiscounted) from the same availability input as the per-task MDP of the same source, "
        "and follows the plan's fallback chain on a failure. Response time of 1000 apps minus the per-task "
        "engine's, repetition by repetition on the same random numbers; mean and 2-standard-error interval. "
        "Negative: the DAG-aware engine is faster.",
        "",
        "| setting | dataset | engine | per-task | RT difference (s) | 2-SE interval (s) | faster? "
        "| failures / 1000 apps (DAG / per-task) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p = r[PER_TASK_KEY]
        base = by[(r["setting"], r["dataset"], p["engine"])]
        verdict = "yes" if p["high_s"] < 0 else ("no, slower" if p["low_s"] > 0 else "no difference")
        label = settings[r["setting"]]["label"] if r["setting"] < len(settings) else str(r["setting"])
        lines.append(
            f"| {label} | {r['dataset']} | {r['engine']} | {p['engine']} | {p['mean_s']:+.2f} "
            f"| [{p['low_s']:+.2f}, {p['high_s']:+.2f}] | {verdict} "
            f"| {r['failures_per_1000_apps']:.1f} / {base['failures_per_1000_apps']:.1f} |"
        )
    return lines
