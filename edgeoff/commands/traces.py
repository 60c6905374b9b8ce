"""`edgeoff traces`: per-node failure statistics from the LANL failure data, and the packaged node table.

* ``edgeoff traces stats [--lanl PATH] [--nodes 7_1,19_1,...]``: one JSON object per node and line;
  mttf_h and availability are null for a node with a single outage. Without --lanl: the packaged table.
* ``edgeoff traces build --lanl PATH [--out FILE]``: regenerate ``edgeoff/data/lanl_nodes.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edgeoff import traces
from edgeoff.errors import TraceError


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

    build = actions.add_parser("build", help="regenerate the packaged node table from the raw LANL file")
    build.add_argument("--lanl", type=Path, required=True, help="raw LANL CSV (.csv or .csv.xz)")
    build.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output JSON (default: edgeoff/data/lanl_nodes.json in the source tree)",
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
    return run_stats(args)


def run_stats(args: argparse.Namespace) -> int:
    node_ids = [traces.parse_node(name) for name in args.nodes]
    if args.lanl is not None:
        records = traces.read_failure_records(args.lanl)
        node_traces = [traces.node_trace(records, node) for node in node_ids]
    else:
        table = traces.load_node_table()
        missing = [node.name for node in node_ids if node.name not in table]
        if missing:
            raise TraceError(
                f"unknown node {', '.join(missing)}: not in the packaged table"
                " (pass --lanl PATH to read the raw LANL file)"
            )
        node_traces = [table[node.name] for node in node_ids]
    for trace in node_traces:
        print(json.dumps(traces.node_stats(trace)), file=sys.stdout)
    return 0


def run_build(args: argparse.Namespace) -> int:
    out: Path = args.out if args.out is not None else traces.packaged_table_path()
    records = traces.read_failure_records(args.lanl)
    table = traces.build_node_table(
        records,
        traces.DATASET_NODES,
        source_file=Path(args.lanl).name,
        source_sha256=traces.file_sha256(args.lanl),
    )
    traces.write_node_table(table, out)
    print(f"wrote {out} ({len(table['nodes'])} nodes from {len(records)} records)", file=sys.stdout)
    return 0
