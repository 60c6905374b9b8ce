"""Paired comparisons on common random numbers: every engine meets the same workload and failures per
repetition, so the difference of two engines' response times is taken repetition by repetition.

`add_paired` annotates each record with its mean difference against a baseline engine (tuned KubeHybrid by
default) in the same setting and dataset, and a 2-standard-error interval of that mean:

    d_r = RT_engine,r - RT_baseline,r,   mean(d) +/- 2 sd(d) / sqrt(R)

Negative means faster than the baseline. An interval that contains 0 is no evidence of a difference.

Each DAG-aware engine `dag-<source>` is also paired with its per-task counterpart `mdp-<source>` (the same
availability input, decided task by task): `paired_vs_per_task`, the same statistic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["PER_TASK_KEY", "REPS_KEY", "add_paired", "paired_difference", "per_task_counterpart"]

REPS_KEY = "_rt_reps"  # per-repetition response times carried from the jobs, removed by add_paired
PER_TASK_KEY = "paired_vs_per_task"  # dag-<source> minus mdp-<source>


def per_task_counterpart(engine: str) -> str | None:
    """The per-task engine a DAG-aware engine is compared with (`dag-belief` -> `mdp-belief`), else None."""
    return f"mdp-{engine.removeprefix('dag-')}" if engine.startswith("dag-") else None


def paired_difference(x: Sequence[float], baseline: Sequence[float]) -> dict[str, float]:
    """Mean difference x - baseline over paired repetitions (s), its standard error and 2-SE bounds."""
    d = np.asarray(x, dtype=float) - np.asarray(baseline, dtype=float)
    se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else 0.0
    mean = float(d.mean())
    return {"mean_s": mean, "se_s": se, "low_s": mean - 2 * se, "high_s": mean + 2 * se}


def add_paired(
    records: list[dict[str, Any]], baseline: str = "kubehybrid", *, keep_reps: bool = False
) -> None:
    """Add `paired_vs_<baseline>` to every record whose setting and dataset also ran the baseline, and
    `paired_vs_per_task` ({engine, mean_s, se_s, low_s, high_s}) to every `dag-<source>` record whose
    setting and dataset also ran `mdp-<source>`; drop the per-repetition response times unless `keep_reps`."""
    base = {(r["setting"], r["dataset"]): r[REPS_KEY] for r in records if r["engine"] == baseline}
    for r in records:
        ref = base.get((r["setting"], r["dataset"]))
        if ref is not None and r["engine"] != baseline:
            r[f"paired_vs_{baseline}"] = paired_difference(r[REPS_KEY], ref)
    reps = {(r["setting"], r["dataset"], r["engine"]): r[REPS_KEY] for r in records}
    for r in records:
        counterpart = per_task_counterpart(r["engine"])
        ref = reps.get((r["setting"], r["dataset"], counterpart)) if counterpart else None
        if ref is not None:
            r[PER_TASK_KEY] = {"engine": counterpart, **paired_difference(r[REPS_KEY], ref)}
    for r in records:
        if not keep_reps:
            r.pop(REPS_KEY, None)
