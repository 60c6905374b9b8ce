"""The derived tables in ``edgeoff/data/``, built from the raw records, written atomically, read back:

* the node table ``lanl_nodes.json``: per node, summary statistics and every merged outage (hours);
* the replay table ``lanl_replay.json``: per node, its test part and the merged outages inside it, whole
  minutes (:class:`~edgeoff.traces.replay.ReplayNode`), what ``--failures replay`` replays.

The only module of :mod:`edgeoff.traces` that reads or writes these files.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from edgeoff.errors import TraceError
from edgeoff.files import atomic_write
from edgeoff.traces.lanl import DATASET_NODES, FailureRecord, node_outages, parse_node
from edgeoff.traces.model import EPOCH, MINUTES_PER_HOUR, FloatArray, NodeTrace, node_stats
from edgeoff.traces.replay import DEFAULT_TRAIN_FRACTION, ReplayNode, replay_node

__all__ = [
    "PACKAGED_REPLAY_TABLE",
    "PACKAGED_TABLE",
    "build_node_table",
    "build_replay_table",
    "load_node_table",
    "load_replay_table",
    "packaged_replay_table_path",
    "packaged_table_path",
    "read_node_table",
    "write_node_table",
    "write_replay_table",
]

TABLE_HOURS_DECIMALS = 4  # 1e-4 h = 0.36 s, enough to recover the whole minutes exactly
TABLE_STATS_DECIMALS = 6  # summary values in the table are informational; traces recompute them exactly
TABLE_FORMAT_VERSION = 1
PACKAGED_TABLE = "lanl_nodes.json"
PACKAGED_REPLAY_TABLE = "lanl_replay.json"
REPLAY_FORMAT_VERSION = 1
ACKNOWLEDGEMENT = "Failure data provided by Los Alamos National Laboratory (LA-UR-05-7318)"
TABLE_FILE_MODE = 0o644  # a new table is readable by all, like any source file (temp files start at 0600)

_PAIR_LINES = re.compile(r"\[\s*(-?[\d.eE+-]+),\s*(-?[\d.eE+-]+)\s*\]")


def packaged_table_path() -> Path:
    """Where ``edgeoff traces build`` writes the packaged table in the source tree (edgeoff/data/)."""
    return Path(__file__).parent.parent / "data" / PACKAGED_TABLE


def packaged_replay_table_path() -> Path:
    """Where ``edgeoff traces build`` writes the packaged replay table in the source tree (edgeoff/data/)."""
    return Path(__file__).parent.parent / "data" / PACKAGED_REPLAY_TABLE


def build_node_table(
    records: Iterable[FailureRecord],
    nodes: Iterable[str] = DATASET_NODES,
    *,
    source_file: str,
    source_sha256: str,
) -> dict[str, Any]:
    """JSON-ready table of the given nodes: summary stats and merged outages (hours, 4 decimals)."""
    records = list(records)
    table_nodes: dict[str, Any] = {}
    for name in nodes:
        node = parse_node(name)
        exact = node_outages(records, node)
        rounded = np.round(exact, TABLE_HOURS_DECIMALS)
        trace = NodeTrace(node=node.name, outages=_to_whole_minutes(rounded))
        table_nodes[node.name] = {
            "lanl_system": node.lanl_system,
            "nodenum": node.nodenum,
            **{key: value for key, value in node_stats(trace, TABLE_STATS_DECIMALS).items() if key != "node"},
            "outages": rounded.tolist(),
        }
    return {
        "format": TABLE_FORMAT_VERSION,
        "source": {"file": source_file, "sha256": source_sha256},
        "acknowledgement": ACKNOWLEDGEMENT,
        "epoch": EPOCH.isoformat(),
        "units": "outages: [start_h, end_h] in hours since epoch, LANL local wall clock",
        "nodes": table_nodes,
    }


def _to_whole_minutes(hours: FloatArray) -> FloatArray:
    """Snap hours to whole minutes: undoes the table's 4-decimal rounding exactly."""
    return np.round(hours * MINUTES_PER_HOUR) / MINUTES_PER_HOUR


def write_node_table(table: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write the table as JSON atomically (temporary file in the same folder, then rename)."""
    text = _PAIR_LINES.sub(r"[\1, \2]", json.dumps(table, indent=1)) + "\n"  # one outage per line
    _write_text(Path(path), text, "node table")


def _write_text(path: Path, text: str, what: str) -> None:
    mode = path.stat().st_mode & 0o777 if path.exists() else TABLE_FILE_MODE
    try:
        atomic_write(path, text, mode=mode)
    except OSError as exc:
        raise TraceError(f"{path}: cannot write {what}: {exc.strerror or exc}") from exc


def read_node_table(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The raw JSON table; ``None`` reads the packaged ``edgeoff/data/lanl_nodes.json``."""
    return _read_table(path, PACKAGED_TABLE, "node table")


def _read_table(path: str | os.PathLike[str] | None, packaged: str, what: str) -> dict[str, Any]:
    where = str(path) if path is not None else f"packaged {packaged}"
    try:
        if path is None:
            text = resources.files("edgeoff").joinpath("data", packaged).read_text(encoding="utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
        table = json.loads(text)
    except OSError as exc:
        raise TraceError(f"{where}: cannot read {what}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TraceError(f"{where}: not a {what}: {exc}") from exc
    if not isinstance(table, dict) or not isinstance(table.get("nodes"), dict):
        raise TraceError(f"{where}: not a {what}: no 'nodes' object")
    return table


def load_node_table(path: str | os.PathLike[str] | None = None) -> dict[str, NodeTrace]:
    """Node traces from a table written by :func:`write_node_table` (default: the packaged one)."""
    table = read_node_table(path)
    traces: dict[str, NodeTrace] = {}
    for name, entry in table["nodes"].items():
        try:
            outages = np.array(entry["outages"], dtype=np.float64).reshape(-1, 2)
        except (TypeError, KeyError, ValueError) as exc:
            raise TraceError(f"{path or PACKAGED_TABLE}: node {name}: bad outages: {exc}") from exc
        traces[name] = NodeTrace(node=name, outages=_to_whole_minutes(outages))
    return traces


# --------------------------------------------------------------------------- the replay table


def build_replay_table(
    traces: Iterable[NodeTrace],
    *,
    source_file: str,
    source_sha256: str,
    train_fraction: float = DEFAULT_TRAIN_FRACTION,
) -> dict[str, Any]:
    """JSON-ready replay table: per node its test part ``[start, end]`` and the merged outages inside it
    (clipped), whole minutes since the epoch. TraceError for a node with no outage in its test part."""
    nodes: dict[str, Any] = {}
    for trace in traces:
        replay = replay_node(trace, train_fraction)
        nodes[trace.node] = {
            "test": [replay.start_min, replay.end_min],
            "outages": replay.outages_min.tolist(),
        }
    return {
        "format": REPLAY_FORMAT_VERSION,
        "source": {"file": source_file, "sha256": source_sha256},
        "acknowledgement": ACKNOWLEDGEMENT,
        "epoch": EPOCH.isoformat(),
        "units": "whole minutes since epoch, LANL local wall clock",
        "train_fraction": train_fraction,
        "rule": (
            "test: the last 1 - train_fraction of the span from the first outage's start to the last"
            " outage's end; outages: the node's merged outages inside it, clipped to it"
        ),
        "nodes": nodes,
    }


def write_replay_table(table: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write the replay table as JSON atomically, one node per line."""
    head = json.dumps({key: value for key, value in table.items() if key != "nodes"}, indent=1)
    rows = ",\n".join(f"  {json.dumps(name)}: {json.dumps(entry)}" for name, entry in table["nodes"].items())
    text = head.removesuffix("\n}") + ',\n "nodes": {\n' + rows + "\n }\n}\n"
    _write_text(Path(path), text, "replay table")


def load_replay_table(path: str | os.PathLike[str] | None = None) -> dict[str, ReplayNode]:
    """Test parts per node from a table written by :func:`write_replay_table` (default: the packaged one)."""
    table = _read_table(path, PACKAGED_REPLAY_TABLE, "replay table")
    replays: dict[str, ReplayNode] = {}
    for name, entry in table["nodes"].items():
        try:
            start, end = (int(value) for value in entry["test"])
            outages = np.array(entry["outages"], dtype=np.int64).reshape(-1, 2)
        except (TypeError, KeyError, ValueError) as exc:
            raise TraceError(f"{path or PACKAGED_REPLAY_TABLE}: node {name}: bad test part: {exc}") from exc
        replays[name] = ReplayNode(node=name, start_min=start, end_min=end, outages_min=outages)
    return replays
