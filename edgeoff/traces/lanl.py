"""The raw LANL failure file (LA-UR-05-7318): node names, rows, and each node's merged outages.

Rules for rows of the raw file (:func:`read_failure_records`), chosen so the real file loads:

* An empty ``nodenum`` is a system-wide record (LANL system 17 has 126); it is kept with ``nodenum=None``
  and belongs to no node. Any other non-integer System or nodenum is an error.
* ``Down Time`` is the recorded downtime in whole minutes. It may disagree with ``Prob Fixed - Prob
  Started`` (399 real rows differ by 1 minute, 24 by a daylight-saving hour); intervals use the time
  stamps and ``down_minutes`` keeps the recorded value.
* An empty ``Prob Fixed`` with a ``Down Time`` means fixed = started + down time; an empty ``Down Time``
  with a ``Prob Fixed`` means down time = fixed - started. Both empty is an error.
* Wrong column count, unparsable date, fixed before started and negative downtime are errors
  ``"PATH:LINE: reason"``.

A node is named ``<prototype system>_<nodenum>`` (e.g. ``19_1``); the prototype's system ids map to LANL's
``System`` column through :data:`PROTOTYPE_TO_LANL_SYSTEM`. The only I/O here is reading the raw file.
"""

from __future__ import annotations

import csv
import hashlib
import lzma
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from edgeoff.errors import TraceError
from edgeoff.traces.model import FloatArray, NodeTrace, hours_since_epoch, merge_intervals

__all__ = [
    "DATASET_NODES",
    "LANL_HEADER",
    "PROTOTYPE_TO_LANL_SYSTEM",
    "FailureRecord",
    "NodeId",
    "file_sha256",
    "node_outages",
    "node_trace",
    "parse_node",
    "read_failure_records",
]

DATE_FORMAT = "%m/%d/%Y %H:%M"  # LANL's Prob Started / Prob Fixed, e.g. 6/21/2005 10:54

PROTOTYPE_TO_LANL_SYSTEM: dict[int, int] = {
    1: 7, 2: 24, 3: 22, 4: 8, 5: 20, 6: 21, 7: 18, 8: 19, 9: 3, 10: 4, 11: 5,
    12: 6, 13: 9, 14: 10, 15: 11, 16: 13, 17: 14, 18: 12, 19: 16, 20: 2, 21: 23, 22: 15,
}  # fmt: skip

# The 16 distinct nodes of the paper's Table 2, by role: ED, EC, ER, CD.
DATASET_NODES: tuple[str, ...] = (
    "7_1", "5_158", "5_165", "5_243", "5_48",
    "19_1", "19_11", "19_4", "19_8", "20_41",
    "3_0", "16_80", "4_55", "4_1", "4_3",
    "22_0",
)  # fmt: skip

LANL_HEADER: tuple[str, ...] = (
    "System", "machine type", "nodes", "procstot", "procsinnode", "nodenum", "nodenumz", "node install",
    "node prod", "node decom", "fru type", "mem", "cputype", "memtype", "num intercon", "purpose",
    "Prob Started", "Prob Fixed", "Down Time", "Facilities", "Hardware", "Human Error", "Network",
    "Undetermined", "Software", "Same Event",
)  # fmt: skip
_COL_SYSTEM = LANL_HEADER.index("System")
_COL_NODENUM = LANL_HEADER.index("nodenum")
_COL_STARTED = LANL_HEADER.index("Prob Started")
_COL_FIXED = LANL_HEADER.index("Prob Fixed")
_COL_DOWN = LANL_HEADER.index("Down Time")

_XZ_MAGIC = b"\xfd7zXZ\x00"
_NODE_NAME = re.compile(r"(\d+)_(\d+)")


# --------------------------------------------------------------------------- nodes


@dataclass(frozen=True)
class NodeId:
    """A node of the prototype: its name and where its records live in the LANL file."""

    name: str
    prototype_system: int
    lanl_system: int
    nodenum: int


def parse_node(name: str) -> NodeId:
    """Parse ``"<prototype system>_<nodenum>"`` (e.g. ``"19_1"`` -> LANL system 16, node 1)."""
    match = _NODE_NAME.fullmatch(name.strip())
    if match is None:
        raise TraceError(f"malformed node name {name!r}: expected <system>_<node>, e.g. 19_1")
    prototype_system, nodenum = int(match.group(1)), int(match.group(2))
    lanl_system = PROTOTYPE_TO_LANL_SYSTEM.get(prototype_system)
    if lanl_system is None:
        known = f"{min(PROTOTYPE_TO_LANL_SYSTEM)}..{max(PROTOTYPE_TO_LANL_SYSTEM)}"
        raise TraceError(
            f"unknown system {prototype_system} in node name {name!r}: known systems are {known}"
        )
    return NodeId(
        name=f"{prototype_system}_{nodenum}",
        prototype_system=prototype_system,
        lanl_system=lanl_system,
        nodenum=nodenum,
    )


# --------------------------------------------------------------------------- raw records


@dataclass(frozen=True)
class FailureRecord:
    """One row of the LANL file. ``nodenum`` is None for a system-wide record (no node number)."""

    lanl_system: int
    nodenum: int | None
    started: datetime
    fixed: datetime
    down_minutes: int


def read_failure_records(path: str | os.PathLike[str]) -> list[FailureRecord]:
    """Read every record of the LANL CSV file, plain or xz-compressed (detected from its first bytes)."""
    path = Path(path)
    try:
        with path.open("rb") as raw:
            magic = raw.read(len(_XZ_MAGIC))
        opener = lzma.open if magic == _XZ_MAGIC else open
        with opener(path, "rt", encoding="utf-8", newline="") as text:
            return list(_parse_rows(path, text))
    except OSError as exc:  # missing file, a folder, no permission
        raise TraceError(f"{path}: cannot read LANL failure data: {exc.strerror or exc}") from exc
    except (lzma.LZMAError, UnicodeDecodeError, csv.Error) as exc:
        raise TraceError(f"{path}: not a LANL failure CSV file: {exc}") from exc


def _parse_rows(path: Path, text: Iterable[str]) -> Iterator[FailureRecord]:
    reader = csv.reader(text)
    header = next(reader, None)
    if header is None or tuple(cell.strip() for cell in header) != LANL_HEADER:
        raise TraceError(f"{path}:1: not a LANL failure CSV file: header does not match LA-UR-05-7318")
    for row in reader:
        line = reader.line_num  # physical line of the row's end, 1-based, header is line 1
        if not any(cell.strip() for cell in row):
            continue  # blank line, e.g. at the end of the file
        try:
            yield _parse_row(row)
        except ValueError as exc:
            raise TraceError(f"{path}:{line}: {exc}") from None


def _parse_row(row: Sequence[str]) -> FailureRecord:
    if len(row) != len(LANL_HEADER):
        raise ValueError(f"expected {len(LANL_HEADER)} columns, got {len(row)}")
    lanl_system = _parse_int(row[_COL_SYSTEM], "System")
    node_cell = row[_COL_NODENUM].strip()
    nodenum = None if node_cell == "" else _parse_int(node_cell, "nodenum")
    started = _parse_date(row[_COL_STARTED], "Prob Started")
    fixed_cell, down_cell = row[_COL_FIXED].strip(), row[_COL_DOWN].strip()
    if fixed_cell == "" and down_cell == "":
        raise ValueError("both Prob Fixed and Down Time are empty")
    down_minutes = None if down_cell == "" else _parse_int(down_cell, "Down Time")
    if down_minutes is not None and down_minutes < 0:
        raise ValueError(f"negative Down Time {down_minutes}")
    if fixed_cell == "":
        assert down_minutes is not None
        fixed = started + timedelta(minutes=down_minutes)
    else:
        fixed = _parse_date(fixed_cell, "Prob Fixed")
    if fixed < started:
        raise ValueError(f"Prob Fixed {fixed_cell!r} is before Prob Started {row[_COL_STARTED].strip()!r}")
    if down_minutes is None:
        down_minutes = int((fixed - started).total_seconds() // 60)
    return FailureRecord(lanl_system, nodenum, started, fixed, down_minutes)


def _parse_int(cell: str, column: str) -> int:
    text = cell.strip()
    if not re.fullmatch(r"-?\d+", text):
        raise ValueError(f"{column} {cell!r} is not an integer")
    return int(text)


def _parse_date(cell: str, column: str) -> datetime:
    try:
        return datetime.strptime(cell.strip(), DATE_FORMAT)
    except ValueError:
        raise ValueError(f"{column} {cell!r} is not a date M/D/YYYY H:MM") from None


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (the raw file a table was built from)."""
    digest = hashlib.sha256()
    try:
        with Path(path).open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return digest.hexdigest()


def node_outages(records: Iterable[FailureRecord], node: NodeId) -> FloatArray:
    """Merged outages of one node, shape (k, 2): rows ``[start_h, end_h]`` in hours since EPOCH, sorted.

    Records that overlap or touch are merged; the result is disjoint with gaps > 0.
    """
    intervals = [
        (hours_since_epoch(r.started), hours_since_epoch(r.fixed))
        for r in records
        if r.lanl_system == node.lanl_system and r.nodenum == node.nodenum
    ]
    if not intervals:
        raise TraceError(
            f"unknown node {node.name}: no failure records"
            f" (LANL system {node.lanl_system}, node {node.nodenum})"
        )
    return merge_intervals(np.array(intervals, dtype=np.float64))


def node_trace(records: Iterable[FailureRecord], node: NodeId | str) -> NodeTrace:
    """The :class:`NodeTrace` of one node from the raw records."""
    node_id = parse_node(node) if isinstance(node, str) else node
    return NodeTrace(node=node_id.name, outages=node_outages(records, node_id))
