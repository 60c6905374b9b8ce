"""The evaluation's outputs: results.json, report.md and one PNG plot per metric."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeoff.evaluation.report_tables import dag_table, failure_model_tables, knowledge_lines, paired_table

__all__ = ["PUBLISHED", "write_plots", "write_report", "write_results"]

# The paper's published figures (section 5.2), read from its text; None where it gives none.
PUBLISHED: dict[tuple[str, str], dict[str, Any]] = {
    ("DS1", "mdp-svr"): {
        "rt_s": 600,
        "battery_pct": 98.4,
        "availability_pct": 99.6,
        "distribution_pct": {"EC": 50, "CD": 0, "ER": 0.1},
    },
    ("DS1", "kubehybrid"): {
        "rt_s": 760,
        "battery_pct": 98.15,
        "availability_pct": 98.6,
        "distribution_pct": {"ED": 31.7, "EC": 7.9, "ER": 17.8, "CD": 2.9},
    },
    ("DS4", "mdp-svr"): {"distribution_pct": {"ED": 37, "CD": 0}},
    ("DS4", "kubehybrid"): {
        "rt_s": 950,
        "battery_pct": 97.5,
        "availability_pct": 97,
        "distribution_pct": {"ED": 26, "CD": 15},
    },
}

METRICS = (
    ("rt_s", "Response time of 1000 applications (s)"),
    ("battery_pct", "Battery lifetime (%)"),
    ("availability_pct", "Service availability (%)"),
)


def write_results(
    path: Path, config: dict[str, Any], results: Sequence[dict[str, Any]], extra: dict[str, Any]
) -> None:
    """results.json: {"config", "provenance", "results", ..., "run"}. Everything but "run" (when it was
    made, how long it took, where) is byte-identical between two runs of the same code with the same seed
    and inputs (see edgeoff.commands.provenance)."""
    body = {"config": config, **{k: v for k, v in extra.items() if k != "run"}, "results": list(results)}
    if "run" in extra:
        body["run"] = extra["run"]
    path.write_text(json.dumps(body, indent=2) + "\n")


def _published(dataset: str, engine: str, metric: str) -> str:
    value = PUBLISHED.get((dataset, engine), {}).get(metric)
    return "" if value is None else f"{value:g}"


def _main(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results if r["setting"] == 0]


def write_report(
    path: Path,
    config: dict[str, Any],
    results: Sequence[dict[str, Any]],
    forecast_errors: Sequence[dict[str, Any]],
    selections: Sequence[dict[str, Any]],
    seconds: float,
) -> None:
    settings = config["settings"]
    main = _main(results)
    lines = [
        "# edgeoff evaluation",
        "",
        f"{config['apps']} application runs x {config['reps']} repetitions per dataset and engine, seed "
        f"{config['seed']}, scenario `{config['scenario']}`, failure data: {config['failure_data']}. "
        f"Main setting: {settings[0]['label']}. Took {seconds:.1f} s.",
        "",
        "Means over repetitions, standard deviation in brackets; *paper* is the published figure where the "
        "paper gives one (its prototype had the defects listed in the README, so agreement is not expected).",
        "",
        "## Response time, battery lifetime, availability",
        "",
        "| dataset | engine | RT (s) | paper | battery (%) | paper | availability (%) | paper "
        "| failures / 1000 apps |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in main:
        d, e = r["dataset"], r["engine"]
        lines.append(
            f"| {d} | {e} | {r['rt_s']['mean']:.1f} ({r['rt_s']['std']:.1f}) | {_published(d, e, 'rt_s')} "
            f"| {r['battery_pct']['mean']:.3f} ({r['battery_pct']['std']:.3f}) "
            f"| {_published(d, e, 'battery_pct')} "
            f"| {r['availability_pct']['mean']:.2f} ({r['availability_pct']['std']:.2f}) "
            f"| {_published(d, e, 'availability_pct')} | {r['failures_per_1000_apps']:.1f} |"
        )
    types = list(main[0]["distribution_pct"]) if main else []
    lines += [
        "",
        "## Offloading distribution (% of offloadable tasks run on each site type; paper in brackets)",
        "",
        "| dataset | engine | " + " | ".join(types) + " |",
        "|---|---|" + "---|" * len(types),
    ]
    for r in main:
        pub = PUBLISHED.get((r["dataset"], r["engine"]), {}).get("distribution_pct", {})
        cells = [f"{r['distribution_pct'][t]:.1f}" + (f" ({pub[t]:g})" if t in pub else "") for t in types]
        lines.append(f"| {r['dataset']} | {r['engine']} | " + " | ".join(cells) + " |")
    if len(settings) > 1:
        lines += _sensitivity_table(settings, main, results)
    lines += _gap_table(main)
    lines += paired_table(main)
    if len({s.get("failures", "markov") for s in settings}) > 1:
        lines += failure_model_tables(results, settings)
    lines += dag_table(results, settings)
    lines += knowledge_lines(config)
    lines += [
        "",
        "## Availability forecasts (daily series, 80/20 chronological walk-forward, one step ahead)",
        "",
        "| node | days | " + " | ".join(f"{n} MAE" for n in _names(forecast_errors)) + " | best |",
        "|---|---|" + "---|" * (len(_names(forecast_errors)) + 1),
    ]
    for node in sorted({row["node"] for row in forecast_errors}):
        rows = [row for row in forecast_errors if row["node"] == node]
        best = min(rows, key=lambda row: row["mae"])["forecaster"]
        lines.append(
            f"| {node} | {rows[0]['days']} | "
            + " | ".join(f"{row['mae']:.4f}" for row in rows)
            + f" | {best} |"
        )
    lines += [
        "",
        "## Forecaster selected per node (engine `mdp-selected`), on the training part only",
        "",
        "| node | forecaster | inner MAE | why |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {row['node']} | {row['forecaster']} | {row['inner_mae']:.4f} | {row['reason']} |"
        for row in selections
    ]
    lines += ["", "Plots: " + ", ".join(f"`{m}.png`" for m, _ in METRICS), ""]
    path.write_text("\n".join(lines))


GAP_METRICS = (("rt_s", "RT"), ("battery_pct", "battery"), ("availability_pct", "availability"))


def _gap_table(main: Sequence[dict[str, Any]]) -> list[str]:
    """Share of the gap between the reactive and the oracle MDP that each engine closes, per metric.

    100 % = as good as knowing every site's state, 0 % = no better than no prediction at all; negative: worse
    than no prediction; above 100 %: better than the oracle MDP on that metric (the oracle knows the states
    but its MDP still optimises time plus energy of a task, not the response time of a DAG).
    """
    by_key = {(r["dataset"], r["engine"]): r for r in main}
    datasets = list(dict.fromkeys(r["dataset"] for r in main))
    engines = [e for e in dict.fromkeys(r["engine"] for r in main) if e not in ("mdp-reactive", "mdp-oracle")]
    if not all((d, b) in by_key for d in datasets for b in ("mdp-reactive", "mdp-oracle")):
        return []
    lines = [
        "",
        "## How much of the reactive-to-oracle gap each engine closes",
        "",
        "(x - reactive) / (oracle - reactive) per metric: 100 % = as good as knowing every site's state, "
        "0 % = no better than the detector alone (mdp-reactive); n/a where the bounds are within 0.1 %.",
        "",
        "| dataset | engine | " + " | ".join(label for _, label in GAP_METRICS) + " |",
        "|---|---|" + "---|" * len(GAP_METRICS),
    ]
    for d in datasets:
        low, high = by_key[(d, "mdp-reactive")], by_key[(d, "mdp-oracle")]
        for e in engines:
            cells = []
            for metric, _ in GAP_METRICS:
                lo, hi, x = low[metric]["mean"], high[metric]["mean"], by_key[(d, e)][metric]["mean"]
                gap = hi - lo
                cells.append(
                    "n/a" if abs(gap) < 1e-3 * max(abs(lo), 1e-9) else f"{(x - lo) / gap * 100:.0f} %"
                )
            lines.append(f"| {d} | {e} | " + " | ".join(cells) + " |")
    return lines


def _names(forecast_errors: Sequence[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(row["forecaster"] for row in forecast_errors))


def _sensitivity_table(
    settings: Sequence[dict[str, Any]], main: Sequence[dict[str, Any]], results: Sequence[dict[str, Any]]
) -> list[str]:
    """One row per dataset, engine and setting, with a column for each quantity a setting fixes (the time
    compression, the detection time, the failure model); the title names those that vary."""
    knobs = [key for key in settings[0] if key != "label"]
    varied = [key for key in knobs if len({setting[key] for setting in settings}) > 1]
    names = {
        "time_compression": "time compression",
        "detection_s": "detection time",
        "failures": "failure model",
    }
    title = " and ".join(names.get(key, key.replace("_", " ")) for key in varied)
    heads = {"time_compression": "time compression", "detection_s": "detection (s)", "failures": "failures"}
    lines = [
        "",
        f"## Sensitivity: {title}",
        "",
        "The main setting first; "
        + ", ".join(f"`--{key.replace('_', '-')}`" for key in knobs)
        + " add settings (e.g. `--detection-s 1.5,0.3`).",
        "",
        "| dataset | engine | "
        + " | ".join(heads.get(k, k) for k in knobs)
        + " | RT (s) | failures / 1000 apps |",
        "|---|---|" + "---|" * (len(knobs) + 2),
    ]
    by_key = {(r["dataset"], r["engine"], r["setting"]): r for r in results}
    for r in main:
        for i, setting in enumerate(settings):
            other = by_key[(r["dataset"], r["engine"], i)]
            cells = [setting[k] if isinstance(setting[k], str) else f"{setting[k]:g}" for k in knobs]
            cells += [f"{other['rt_s']['mean']:.1f}", f"{other['failures_per_1000_apps']:.1f}"]
            lines.append(f"| {r['dataset']} | {r['engine']} | " + " | ".join(cells) + " |")
    return lines


# Plots: the unit on the y axis, the paper's published figures marked, error bars never clipped.
PLOT_TITLES = {"rt_s": "Response time", "battery_pct": "Battery lifetime", "availability_pct": "Availability"}
PLOT_SIZE_IN = (8.0, 4.2)
PLOT_DPI = 110
NOTE_HEIGHT = 0.08  # share of the figure's height under the axes for the note
PAD_FRACTION = 0.08  # of the plotted span, above and below: markers and whiskers stay off the frame
NEAR_FRACTION = 0.25  # of our data's span: a published figure that close is inside the range shown
PAPER_APPS = 1000  # the paper's response times are totals over 1000 application runs


def plot_unit(metric: str, apps: int) -> str:
    """The y axis label of a metric, with its unit."""
    return {
        "rt_s": f"response time of {apps} application runs (s)",
        "battery_pct": "battery left (%)",
        "availability_pct": "availability: successful remote attempts (%)",
    }.get(metric, metric)


def plot_note(config: dict[str, Any]) -> str:
    """The caption under every plot: what a point, its error bar and a star are."""
    return (
        f"Points: means over {config['reps']} repetitions of {config['apps']} application runs; error bars: "
        "± one standard deviation over the repetitions.\nStars: the paper's published figure (EdgeSys 2022) "
        "where it gives one; a triangle at the edge points to one outside the range shown."
    )


def _paper_value(dataset: str, engine: str, metric: str, apps: int) -> float | None:
    value = PUBLISHED.get((dataset, engine), {}).get(metric)
    if value is None or (metric == "rt_s" and apps != PAPER_APPS):
        return None  # a total over another number of application runs is not comparable
    return float(value)


def plot_metric(results: Sequence[dict[str, Any]], metric: str, config: dict[str, Any]) -> Any:
    """The matplotlib Figure of one metric: one point with its error bar per dataset and engine (dodged),
    the paper's figure as a star beside its engine's point, the legend outside the axes, and a y range
    fitted to our data with its error bars, never clipped (not from zero: 2 % differences must show). A
    published figure outside that range is a triangle at the edge, labelled with its value."""
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.layout_engine import ConstrainedLayoutEngine
    from matplotlib.lines import Line2D

    main = _main(results)
    datasets = list(dict.fromkeys(r["dataset"] for r in main))
    engines = list(dict.fromkeys(r["engine"] for r in main))
    by_key = {(r["dataset"], r["engine"]): r for r in main}
    width = 0.8 / max(len(engines), 1)
    x = np.arange(len(datasets), dtype=float)
    layout = ConstrainedLayoutEngine(rect=(0, NOTE_HEIGHT, 1, 1 - NOTE_HEIGHT))
    figure = Figure(figsize=PLOT_SIZE_IN, layout=layout)
    ax = figure.add_subplot()
    values: list[float] = []
    papers: list[tuple[float, float, Any]] = []  # x, value, colour
    for i, engine in enumerate(engines):
        offset = (i - (len(engines) - 1) / 2) * width
        rows = [(k, by_key[(d, engine)][metric]) for k, d in enumerate(datasets) if (d, engine) in by_key]
        means = np.array([m["mean"] for _, m in rows])
        stds = np.array([m["std"] for _, m in rows])
        xs = [x[k] + offset for k, _ in rows]
        drawn = ax.errorbar(xs, means, yerr=stds, fmt="o", capsize=3, markersize=5, label=engine)
        values += [*(means - stds), *(means + stds)]
        colour = drawn.lines[0].get_color()
        for k, dataset in enumerate(datasets):
            paper = _paper_value(dataset, engine, metric, int(config["apps"]))
            if paper is not None:
                papers.append((x[k] + offset, paper, colour))
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    near = max(high - low, 1e-9) * NEAR_FRACTION  # a published figure this close widens the range
    low = min([low, *(v for _, v, _ in papers if low - near <= v)])
    high = max([high, *(v for _, v, _ in papers if v <= high + near)])
    pad = max(high - low, abs(high) * 1e-3, 1e-9) * PAD_FRACTION
    bottom, top = low - pad, high + pad
    ax.set_ylim(bottom, top)
    for px, value, colour in papers:
        style: dict[str, Any] = {"color": colour, "markeredgecolor": "black", "linestyle": "none"}
        if bottom <= value <= top:
            ax.plot([px], [value], marker="*", markersize=11, **style)
            continue
        below = value < bottom
        at = bottom + pad / 2 if below else top - pad / 2
        ax.plot([px], [at], marker="v" if below else "^", markersize=8, **style)
        ax.annotate(f"{value:g}", (px, at), xytext=(5, 0), textcoords="offset points", fontsize="x-small")
    handles, _ = ax.get_legend_handles_labels()
    if papers:
        star = Line2D(
            [], [], marker="*", markersize=11, color="grey", markeredgecolor="black", linestyle="none"
        )
        handles.append(star)
    labels = [*engines, *(["paper (published)"] if papers else [])]
    ax.set_xticks(x, datasets)
    ax.set_xlabel("dataset")
    ax.set_ylabel(plot_unit(metric, int(config["apps"])))
    ax.set_title(PLOT_TITLES.get(metric, metric))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small")
    figure.text(0.01, 0.01, plot_note(config), fontsize="x-small", ha="left", va="bottom")
    return figure


def write_plots(out: Path, results: Sequence[dict[str, Any]], config: dict[str, Any]) -> None:
    """One PNG per metric (`rt_s.png`, `battery_pct.png`, `availability_pct.png`) in `out`."""
    for metric, _ in METRICS:
        plot_metric(results, metric, config).savefig(out / f"{metric}.png", dpi=PLOT_DPI)
