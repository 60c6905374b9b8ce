"""`edgeoff traces`: per-node failure statistics from the LANL failure data, and the packaged node table.

* ``edgeoff traces stats [--lanl PATH] [--nodes 7_1,19_1,...]``: one JSON object per node and line;
  mttf_h and availability are null for a node with a single outage. Without --lanl: the packaged table.
* ``edgeoff traces build --lanl PATH [--out FILE] [--replay-out FILE]``: regenerate the node table
  ``edgeoff/data/lanl_nodes.json`` and beside it the replay table ``edgeoff/data/lanl_replay.json`` (each
  node's test part and its outages, what ``--failures replay`` replays).
* ``edgeoff traces backtest [--lanl PATH] [--nodes ...] [--out DIR] [--seed N]``: honest forecasting
  backtests per node (daily and hourly, :mod:`edgeoff.forecasting.backtest`); writes ``backtest.json``,
  ``backtest.md`` and ``backtest.png`` to DIR (default ``backtest/``), all or nothing, and prints a
  summary table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeoff import traces
from edgeoff.errors import TraceError
from edgeoff.files import check_output, staged_folder
from edgeoff.forecasting import backtest, prototype
from edgeoff.forecasting import report as backtest_report

BACKTEST_FILES = ("backtest.json", "backtest.md", "backtest.png")
BACKTEST_DIR_MODE = 0o755  # a new output folder is readable by all (temporary folders start at 0700)
PLOT_SIZE_IN = (14.0, 8.0)
PLOT_DPI = 120


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("traces", help="LANL failure traces", description=__doc__.splitlines()[0])
    actions = parser.add_subparsers(dest="traces_command", required=True, metavar="ACTION")

    stats = actions.add_parser("stats", help="failures, MTTF, MTTR and availability per node (JSON lines)")
    stats.add_argument(
        "--lanl", type=Path, help="raw LANL CSV (.csv or .csv.xz); default: the packaged table"
    )
    stats.add_argument(
        "--nodes",
        type=_node_list,
        default=traces.DATASET_NODES,
        help="comma-separated node names such as 7_1,19_1 (default: the 16 nodes of the paper's Table 2)",
    )

    build = actions.add_parser(
        "build", help="regenerate the packaged node and replay tables from the raw LANL file"
    )
    build.add_argument("--lanl", type=Path, required=True, help="raw LANL CSV (.csv or .csv.xz)")
    build.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output JSON (default: edgeoff/data/lanl_nodes.json in the source tree)",
    )
    build.add_argument(
        "--replay-out",
        type=Path,
        default=None,
        help="replay table JSON (default: lanl_replay.json beside the node table)",
    )

    run_backtest_parser = actions.add_parser(
        "backtest", help="chronological forecasting backtests per node, daily and hourly (json, md, png)"
    )
    run_backtest_parser.add_argument(
        "--lanl", type=Path, help="raw LANL CSV (.csv or .csv.xz); default: the packaged table"
    )
    run_backtest_parser.add_argument(
        "--nodes",
        type=_node_list,
        default=traces.DATASET_NODES,
        help="comma-separated node names such as 7_1,19_1 (default: the 16 nodes of the paper's Table 2)",
    )
    run_backtest_parser.add_argument(
        "--out", type=Path, default=Path("backtest"), help="output folder (default: backtest/)"
    )
    run_backtest_parser.add_argument(
        "--seed",
        type=int,
        default=prototype.DEFAULT_SEED,
        help=f"seed of the prototype's random split (default: {prototype.DEFAULT_SEED})",
    )
    parser.set_defaults(func=run)


def _node_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected at least one node name, e.g. 7_1,19_1")
    return names


def run(args: argparse.Namespace) -> int:
    """Run the chosen action; return the exit code."""
    if args.traces_command == "build":
        return run_build(args)
    if args.traces_command == "backtest":
        return run_backtest(args)
    return run_stats(args)


def _load_traces(lanl: Path | None, names: Sequence[str]) -> list[traces.NodeTrace]:
    """Traces of the named nodes from the raw file, or from the packaged table when ``lanl`` is None."""
    node_ids = [traces.parse_node(name) for name in names]
    if lanl is not None:
        records = traces.read_failure_records(lanl)
        return [traces.node_trace(records, node) for node in node_ids]
    table = traces.load_node_table()
    missing = [node.name for node in node_ids if node.name not in table]
    if missing:
        raise TraceError(
            f"unknown node {', '.join(missing)}: not in the packaged table"
            " (pass --lanl PATH to read the raw LANL file)"
        )
    return [table[node.name] for node in node_ids]


def run_stats(args: argparse.Namespace) -> int:
    for trace in _load_traces(args.lanl, args.nodes):
        print(json.dumps(traces.node_stats(trace)), file=sys.stdout)
    return 0


def run_build(args: argparse.Namespace) -> int:
    out: Path = args.out if args.out is not None else traces.packaged_table_path()
    replay_out: Path = args.replay_out or out.parent / traces.PACKAGED_REPLAY_TABLE  # beside the node table
    for path in (out, replay_out):
        check_output(path, folder=False)  # before reading the raw file: a folder or a path under a file
    records = traces.read_failure_records(args.lanl)
    source_file, source_sha256 = Path(args.lanl).name, traces.file_sha256(args.lanl)
    table = traces.build_node_table(
        records, traces.DATASET_NODES, source_file=source_file, source_sha256=source_sha256
    )
    node_traces = [traces.node_trace(records, name) for name in traces.DATASET_NODES]
    # built before anything is written: a node without outages in its test part leaves both files as they were
    replay = traces.build_replay_table(node_traces, source_file=source_file, source_sha256=source_sha256)
    traces.write_node_table(table, out)
    traces.write_replay_table(replay, replay_out)
    print(f"wrote {out} ({len(table['nodes'])} nodes from {len(records)} records)", file=sys.stdout)
    test_outages = sum(len(entry["outages"]) for entry in replay["nodes"].values())
    print(f"wrote {replay_out} ({len(replay['nodes'])} test parts, {test_outages} outages)", file=sys.stdout)
    return 0


def run_backtest(args: argparse.Namespace) -> int:
    """Backtest the nodes, write json/md/png into ``args.out`` all at once, print a summary."""
    check_output(args.out, folder=True)  # before the backtests, which take a while
    node_traces = _load_traces(args.lanl, args.nodes)
    source = str(args.lanl) if args.lanl is not None else f"packaged table {traces.PACKAGED_TABLE}"
    settings = backtest.BacktestSettings(seed=args.seed)
    started = time.perf_counter()
    results = backtest.backtest_nodes(node_traces, settings)
    elapsed_s = time.perf_counter() - started
    document = backtest_report.report(results, source=source, settings=settings)
    markdown = backtest_report.render_markdown(results, source=source, settings=settings)
    _write_backtest(args.out, document, markdown, results)
    print(_summary(results), file=sys.stdout)
    print(
        f"backtested {len(results)} nodes in {elapsed_s:.1f} s; wrote "
        + ", ".join(str(args.out / name) for name in BACKTEST_FILES),
        file=sys.stdout,
    )
    return 0


def _summary(results: Sequence[backtest.NodeBacktest]) -> str:
    """Plain-text table: per node and granularity the best forecaster, the selection, SVR vs naive."""
    header = (
        "node",
        "daily best",
        "daily selected",
        "svr>naive",
        "hourly best",
        "hourly selected",
        "svr>naive",
    )
    rows: list[tuple[str, ...]] = [header]
    for result in results:
        row: list[str] = [result.node]
        for run in (result.daily, result.hourly):
            beats = {True: "yes", False: "no", None: "n/a"}[run.svr_beats_naive]
            row += [run.best, run.selection_name, beats]
        rows.append(tuple(row))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _write_backtest(
    out: Path, document: dict[str, Any], markdown: str, results: Sequence[backtest.NodeBacktest]
) -> None:
    """Write the three files into a temporary folder next to ``out``, then move them into place."""
    try:
        with staged_folder(out, mode=BACKTEST_DIR_MODE) as staging:
            (staging / "backtest.json").write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
            (staging / "backtest.md").write_text(markdown, encoding="utf-8")
            _plot(results, staging / "backtest.png")
    except OSError as exc:
        raise TraceError(f"{out}: cannot write the backtest: {exc.strerror or exc}") from exc


def _plot(results: Sequence[backtest.NodeBacktest], path: Path) -> None:
    """Test MAE per forecaster per node, daily and hourly panels (log scale), as a PNG (Agg backend)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=PLOT_SIZE_IN, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 1)
    nodes = [result.node for result in results]
    positions = np.arange(len(nodes), dtype=np.float64)
    for ax, granularity in zip(axes, ("daily", "hourly"), strict=True):
        runs: list[backtest.SeriesBacktest] = [getattr(result, granularity) for result in results]
        names: list[str] = []
        for run in runs:
            names.extend(score.name for score in run.scores if score.name not in names)
        width = 0.8 / max(len(names), 1)
        for offset, name in enumerate(names):
            maes = [np.nan if (score := run.score(name)) is None else max(score.mae, 1e-6) for run in runs]
            ax.bar(positions + (offset - (len(names) - 1) / 2) * width, maes, width, label=name)
        ax.set_yscale("log")
        ax.set_xticks(positions, nodes)
        ax.set_ylabel("test MAE")
        ax.set_title(f"{granularity} one-step-ahead forecasts (chronological 80/20 split)")
        ax.legend(ncols=min(len(names), 7), fontsize="small")
    figure.savefig(path, dpi=PLOT_DPI)
