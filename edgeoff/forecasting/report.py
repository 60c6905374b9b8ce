"""The report of ``edgeoff traces backtest``: its JSON document and its markdown tables.

This module is pure: it renders :class:`~edgeoff.forecasting.backtest.NodeBacktest` results to text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgeoff.forecasting.backtest import BacktestSettings, NodeBacktest, SeriesBacktest
from edgeoff.forecasting.prototype import PROTOTYPE_EPSILON

__all__ = ["REPORT_FORMAT_VERSION", "render_markdown", "report"]

REPORT_FORMAT_VERSION = 1


def report(results: Sequence[NodeBacktest], *, source: str, settings: BacktestSettings) -> dict[str, Any]:
    """The JSON document of ``edgeoff traces backtest``.

    Keys: ``format``, ``acknowledgement``, ``source``, ``settings``, ``hourly_state_rule``, ``summary``
    (per granularity: nodes where SVR beats the naive forecasters, winners, selections) and ``nodes`` (one
    :meth:`NodeBacktest.to_dict` each).
    """
    summary: dict[str, Any] = {}
    for granularity in ("daily", "hourly"):
        runs = [(result.node, getattr(result, granularity)) for result in results]
        summary[granularity] = {
            "svr_beats_naive": [node for node, run in runs if run.svr_beats_naive],
            "best": {node: run.best for node, run in runs},
            "best_brier": {node: run.best_brier for node, run in runs},
            "selected": {node: run.selection_name for node, run in runs},
        }
    summary["prototype_constant_beats_chronological"] = [
        result.node for result in results if result.prototype.constant_beats_chronological
    ]
    return {
        "format": REPORT_FORMAT_VERSION,
        "acknowledgement": "Failure data provided by Los Alamos National Laboratory (LA-UR-05-7318)",
        "source": source,
        "settings": settings.to_dict(),
        "hourly_state_rule": "an hour is down (0) when any outage touches it, else up (1)",
        "summary": summary,
        "nodes": [result.to_dict() for result in results],
    }


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _series_table(results: Sequence[NodeBacktest], granularity: str) -> list[str]:
    runs = [(result.node, getattr(result, granularity)) for result in results]
    names: list[str] = []
    for _, run in runs:
        names.extend(score.name for score in run.scores if score.name not in names)
    hourly = granularity == "hourly"
    metrics = "MAE / RMSE / Brier" if hourly else "MAE / RMSE"
    extra = " best Brier |" if hourly else ""
    lines = [
        f"## {granularity.capitalize()} one-step-ahead forecasts ({metrics}, test part)",
        "",
        "| node | " + " | ".join(names) + f" | best |{extra} selected | SVR beats naive |",
        "|---|" + "---|" * (len(names) + 3 + hourly),
    ]
    for node, run in runs:
        cells = []
        for name in names:
            score = run.score(name)
            if score is None:
                cells.append("n/a")
                continue
            parts = [score.mae, score.rmse] + ([score.brier] if score.brier is not None else [])
            cell = " / ".join(_number(part) for part in parts)
            cells.append(f"**{cell}**" if name == run.best else cell)
        beats = {True: "yes", False: "no", None: "n/a"}[run.svr_beats_naive]
        brier = f" {run.best_brier} |" if hourly else ""
        lines.append(
            f"| {node} | " + " | ".join(cells) + f" | {run.best} |{brier} {run.selection_name} | {beats} |"
        )
    beating = sum(1 for _, run in runs if run.svr_beats_naive)
    lines += ["", f"SVR beats both naive forecasters on {beating} of {len(runs)} nodes.", ""]
    return lines


def render_markdown(results: Sequence[NodeBacktest], *, source: str, settings: BacktestSettings) -> str:
    """The markdown report: a table per granularity, the selections with reasons, the prototype contrast."""
    lines = [
        "# Availability forecasting backtest (LANL)",
        "",
        f"Source: {source}. Chronological split {settings.train_fraction:g}/"
        f"{1 - settings.train_fraction:.2g}; each test value is forecast from the true values before it."
        " Hourly series: an hour is down (0) when any outage touches it, else up (1); hourly SVRs fit on the"
        f" last {settings.max_svr_samples} training hours. Bold: the lowest test MAE (hindsight). Selected:"
        f" chosen on the training part only (inner split {settings.inner_fraction:g}), never a model that"
        " did not beat the naive forecasters.",
        "",
        "Failure data provided by Los Alamos National Laboratory (LA-UR-05-7318).",
        "",
    ]
    lines += _series_table(results, "daily")
    lines += _series_table(results, "hourly")
    lines += ["## Per-site selection", "", "| node | granularity | chosen | reason |", "|---|---|---|---|"]
    for result in results:
        for granularity in ("daily", "hourly"):
            run: SeriesBacktest = getattr(result, granularity)
            lines.append(f"| {result.node} | {granularity} | {run.selection_name} | {run.selection_reason} |")
    lines += [
        "",
        "## The prototype's method: SVR on the day index (daily MAE)",
        "",
        f"RBF SVR on the day index, C from equation 1, epsilon {PROTOTYPE_EPSILON} (the prototype's value)."
        f" Random split (seed {settings.seed}): interpolation between neighbouring days, what the prototype"
        " reported. Chronological split: forecasting. Mean/median: the training constant on the same days.",
        "",
        "| node | random: SVR | random: mean | random: median | chronological: SVR | chronological: mean |"
        " chronological: median | constant beats SVR |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        r, c = result.prototype.random_split, result.prototype.chronological
        cells = [r.svr_mae, r.mean_mae, r.median_mae, c.svr_mae, c.mean_mae, c.median_mae]
        beats = "yes" if result.prototype.constant_beats_chronological else "no"
        lines.append(f"| {result.node} | " + " | ".join(_number(cell) for cell in cells) + f" | {beats} |")
    beating = sum(1 for result in results if result.prototype.constant_beats_chronological)
    lines += [
        "",
        f"A training constant beats the index SVR on the chronological split on {beating} of"
        f" {len(results)} nodes.",
    ]
    return "\n".join(lines) + "\n"
