"""The regime map (`edgeoff evaluate --sweep`): where does prediction pay?

A grid of the failure time scale (time compression: trace seconds per wall second, i.e. how many trace
hours of failure behaviour pass while the phone works one second) by the detection time (the detector's
delay), for one dataset. In each cell every engine runs on the same random numbers; the share of the
reactive-to-oracle gap an engine closes is

    (RT_reactive - RT_engine) / (RT_reactive - RT_oracle)

(1: as good as knowing every site's state, 0: no better than the detector alone, negative: worse). Where
the gap itself is within two standard errors of zero (paired over repetitions) there is nothing to close
and the share is reported as null.

Outputs: regime.json (one record per cell) and regime.png (a heatmap of the share closed by the best
predicting engine, each cell labelled with the share and the engine).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeoff.engines import get_engine
from edgeoff.evaluation.experiment import Forecasts, Setting, behaviours
from edgeoff.evaluation.paired import REPS_KEY, paired_difference
from edgeoff.evaluation.simulator import Group, simulate_groups
from edgeoff.scenario import Scenario
from edgeoff.traces import NodeTrace

__all__ = [
    "DEFAULT_COMPRESSIONS",
    "DEFAULT_DETECTIONS",
    "ORACLE",
    "REACTIVE",
    "regime_cells",
    "run_grid",
    "write_regime",
]

DEFAULT_COMPRESSIONS = (36.0, 180.0, 900.0, 3600.0, 12000.0, 36000.0)
DEFAULT_DETECTIONS = (0.15, 0.5, 1.5, 3.0)
REACTIVE, ORACLE = "mdp-reactive", "mdp-oracle"
NOT_PREDICTING = (REACTIVE, ORACLE)


@dataclass(frozen=True)
class _Job:
    """One engine at one detection time: every time compression of the grid stacked in one pass."""

    scenario: Scenario
    engine: str
    dataset: str
    sites: Any
    compressions: tuple[float, ...]
    detection_s: float
    first_setting: int
    apps: int
    reps: int
    seed: int


def _run(job: _Job) -> list[dict[str, Any]]:
    scenario = Setting(job.compressions[0], job.detection_s).apply(job.scenario)
    # the same seed in every cell: the same workload and the same failure path (in trace time) per cell
    groups = [Group(job.sites, (job.seed, 0), time_compression=c) for c in job.compressions]
    runs = simulate_groups(scenario, groups, get_engine(job.engine), apps=job.apps, reps=job.reps)
    return [
        {
            "setting": job.first_setting + i,
            "engine": job.engine,
            "dataset": job.dataset,
            "time_compression": c,
            "detection_s": job.detection_s,
            "rt_s": {"mean": float(run.rt_s.mean())},
            "failures_per_1000_apps": float(run.failures.mean() / job.apps * 1000.0),
            REPS_KEY: run.rt_s.tolist(),
        }
        for i, (c, run) in enumerate(zip(job.compressions, runs, strict=True))
    ]


def run_grid(
    scenario: Scenario,
    dataset: str,
    engines: Sequence[str],
    compressions: Sequence[float],
    detections: Sequence[float],
    traces: dict[str, NodeTrace],
    forecasts: Forecasts,
    *,
    apps: int,
    reps: int,
    seed: int,
    workers: int,
) -> list[dict[str, Any]]:
    """Every engine in every cell; records (one per cell and engine) for :func:`regime_cells`."""
    sites = behaviours(scenario, dataset, traces, forecasts)
    jobs = [
        _Job(scenario, e, dataset, sites, tuple(compressions), d, k * len(compressions), apps, reps, seed)
        for k, d in enumerate(detections)
        for e in engines
    ]
    if workers <= 1:
        batches = list(map(_run, jobs))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            batches = list(pool.map(_run, jobs))
    return [record for batch in batches for record in batch]


def regime_cells(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per grid cell from the experiment's records (one setting per cell, run with
    `keep_reps`: each carries its per-repetition response times)."""
    reps = {(r["setting"], r["engine"]): r[REPS_KEY] for r in records}
    cells: dict[int, dict[str, Any]] = {}
    for r in records:
        cell = cells.setdefault(
            r["setting"],
            {"time_compression": r["time_compression"], "detection_s": r["detection_s"], "engines": {}},
        )
        cell["engines"][r["engine"]] = {
            "rt_s": r["rt_s"]["mean"],
            "failures_per_1000_apps": r["failures_per_1000_apps"],
        }
    out = []
    for setting, cell in sorted(cells.items()):
        reactive, oracle = reps[(setting, REACTIVE)], reps[(setting, ORACLE)]
        gap = paired_difference(reactive, oracle)
        cell["gap_s"] = gap
        significant = gap["low_s"] > 0
        best, best_share = None, None
        for engine, figures in cell["engines"].items():
            share = None
            if significant:
                share = float(np.mean(reactive) - np.mean(reps[(setting, engine)])) / gap["mean_s"]
            figures["gap_closed"] = share
            if (
                engine not in NOT_PREDICTING
                and share is not None
                and (best_share is None or share > best_share)
            ):
                best, best_share = engine, share
        cell["best_predicting"] = {"engine": best, "gap_closed": best_share}
        out.append(cell)
    return out


def write_regime(out: Path, cells: Sequence[dict[str, Any]], config: dict[str, Any]) -> None:
    """regime.json and regime.png into `out` (a staging folder)."""
    (out / "regime.json").write_text(json.dumps({"config": config, "cells": list(cells)}, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    compressions = sorted({c["time_compression"] for c in cells})
    detections = sorted({c["detection_s"] for c in cells})
    grid = np.full((len(detections), len(compressions)), np.nan)
    labels = [["" for _ in compressions] for _ in detections]
    for c in cells:
        i, j = detections.index(c["detection_s"]), compressions.index(c["time_compression"])
        share, engine = c["best_predicting"]["gap_closed"], c["best_predicting"]["engine"]
        if share is None:
            labels[i][j] = f"no gap\n({c['gap_s']['mean_s']:.1f} s)"
        else:
            grid[i, j] = share * 100.0
            labels[i][j] = f"{share * 100:.0f} %\n{engine}\ngap {c['gap_s']['mean_s']:.1f} s"
    fig, ax = plt.subplots(figsize=(1.6 * len(compressions) + 2, 1.1 * len(detections) + 1.5))
    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#dddddd")
    image = ax.imshow(np.clip(grid, -100, 100), cmap=cmap, vmin=-100, vmax=100, aspect="auto", origin="lower")
    for i in range(len(detections)):
        for j in range(len(compressions)):
            ax.text(j, i, labels[i][j], ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(compressions)), [f"{c:g}" for c in compressions])
    ax.set_yticks(range(len(detections)), [f"{d:g}" for d in detections])
    ax.set_xlabel("time compression (trace seconds per wall second)")
    ax.set_ylabel("detection time (s)")
    ax.set_title(
        f"{config['dataset']}: share of the reactive-to-oracle gap closed by the best predicting engine\n"
        f"(gap: mdp-reactive minus mdp-oracle, s per {config['apps']} apps; grey: no gap beyond 2 SE)",
        fontsize=10,
    )
    fig.colorbar(image, ax=ax, label="gap closed (%)")
    fig.tight_layout()
    fig.savefig(out / "regime.png", dpi=120)
    plt.close(fig)
