"""LANL failure traces (LA-UR-05-7318, 1996-2005): outages, MTTF/MTTR and a two-state model per node.

Los Alamos National Laboratory provided these data and asks to be acknowledged by anyone who uses them.

Conventions, in the problem's words:

* Time is in **hours since** :data:`EPOCH` (1996-01-01 00:00), on LANL's local wall clock as recorded
  (daylight-saving shifts are not corrected). Whole days since the epoch are calendar days.
* A node is named ``<prototype system>_<nodenum>`` (e.g. ``19_1``); the prototype's system ids map to
  LANL's ``System`` column through :data:`PROTOTYPE_TO_LANL_SYSTEM`.
* An outage is the interval ``[Prob Started, Prob Fixed]`` of a record. A node's records are merged into
  disjoint outages: records that overlap or touch (one starts when another ends) become one outage.
* ``failures`` is the number of merged outages, ``mttr_h`` their mean duration, ``mttf_h`` the mean up
  time between the end of one outage and the start of the next. MTTF therefore needs at least two outages;
  for a node with one outage it is undefined: asking a trace for it raises :class:`TraceError`, and
  :func:`node_stats` (the table, ``edgeoff traces stats``) reports it, and the availability, as null.

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
"""

from __future__ import annotations

import csv
import hashlib
import json
import lzma
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeoff.errors import TraceError
from edgeoff.files import atomic_write

__all__ = [
    "DATASET_NODES",
    "EPOCH",
    "LANL_HEADER",
    "PROTOTYPE_TO_LANL_SYSTEM",
    "FailureRecord",
    "NodeId",
    "NodeTrace",
    "TwoStateModel",
    "build_node_table",
    "daily_availability",
    "file_sha256",
    "hours_since_epoch",
    "load_node_table",
    "merge_intervals",
    "node_outages",
    "node_stats",
    "node_trace",
    "packaged_table_path",
    "parse_node",
    "read_failure_records",
    "read_node_table",
    "two_state_model",
    "write_node_table",
]

FloatArray = npt.NDArray[np.float64]

# Start of the data set's nominal period (midnight, so whole days are calendar days); 1995 records are < 0.
EPOCH = datetime(1996, 1, 1)
DATE_FORMAT = "%m/%d/%Y %H:%M"  # LANL's Prob Started / Prob Fixed, e.g. 6/21/2005 10:54
MINUTES_PER_DAY = 1440
HOURS_PER_DAY = 24.0
MINUTES_PER_HOUR = 60.0
TABLE_HOURS_DECIMALS = 4  # 1e-4 h = 0.36 s, enough to recover the whole minutes exactly
TABLE_STATS_DECIMALS = 6  # summary values in the table are informational; traces recompute them exactly
TABLE_FORMAT_VERSION = 1
PACKAGED_TABLE = "lanl_nodes.json"
TABLE_FILE_MODE = 0o644  # a new table is readable by all, like any source file (temp files start at 0600)

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

_PAIR_LINES = re.compile(r"\[\s*(-?[\d.eE+-]+),\s*(-?[\d.eE+-]+)\s*\]")
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


# --------------------------------------------------------------------------- outages


def hours_since_epoch(moment: datetime) -> float:
    """Hours from :data:`EPOCH` to ``moment`` (negative before 1996)."""
    return (moment - EPOCH).total_seconds() / 3600.0


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


def merge_intervals(intervals: FloatArray) -> FloatArray:
    """Merge overlapping or touching intervals, shape (n, 2) -> (k, 2), sorted by start, k <= n."""
    ordered = intervals[np.lexsort((intervals[:, 1], intervals[:, 0]))]
    reach = np.maximum.accumulate(ordered[:, 1])  # latest end seen so far, (n,)
    new_block = np.ones(len(ordered), dtype=bool)
    new_block[1:] = ordered[1:, 0] > reach[:-1]  # strictly after everything before: a real up interval
    block_last = np.append(new_block[1:], True)  # last interval of each merged block
    return np.column_stack((ordered[new_block, 0], reach[block_last]))


# --------------------------------------------------------------------------- per-node statistics


@dataclass(frozen=True, eq=False)
class NodeTrace:
    """A node's merged outages, shape (k, 2), rows ``[start_h, end_h]`` in hours since EPOCH, k >= 1.

    Absolute hours (not relative to the first outage) keep whole days aligned with calendar days.
    """

    node: str
    outages: FloatArray

    def __post_init__(self) -> None:
        outages = np.array(self.outages, dtype=np.float64)
        if outages.ndim != 2 or outages.shape[1] != 2 or len(outages) == 0:
            raise TraceError(
                f"node {self.node}: outages must have shape (k, 2) with k >= 1, got {outages.shape}"
            )
        if np.any(outages[:, 1] < outages[:, 0]) or np.any(outages[1:, 0] <= outages[:-1, 1]):
            raise TraceError(f"node {self.node}: outages must be sorted, disjoint and separated by up time")
        outages.setflags(write=False)
        object.__setattr__(self, "outages", outages)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NodeTrace):
            return NotImplemented
        return self.node == other.node and np.array_equal(self.outages, other.outages)

    __hash__ = None  # type: ignore[assignment]  # holds an array: equal by value, not hashable

    @property
    def failures(self) -> int:
        """Number of merged outages."""
        return len(self.outages)

    @property
    def durations_h(self) -> FloatArray:
        """Outage durations in hours, shape (k,)."""
        return self.outages[:, 1] - self.outages[:, 0]

    @property
    def up_times_h(self) -> FloatArray:
        """Up times between consecutive outages in hours, shape (k - 1,)."""
        return self.outages[1:, 0] - self.outages[:-1, 1]

    @property
    def mttr_h(self) -> float:
        """Mean time to repair: mean outage duration, hours."""
        return float(np.mean(self.durations_h))

    @property
    def mttf_h(self) -> float:
        """Mean time to failure: mean up time between outages, hours. Needs at least two outages."""
        if self.failures < 2:
            raise TraceError(f"node {self.node} has a single outage: MTTF needs at least two")
        return float(np.mean(self.up_times_h))

    @property
    def availability(self) -> float:
        """Steady-state availability MTTF / (MTTF + MTTR), in [0, 1]."""
        return self.mttf_h / (self.mttf_h + self.mttr_h)


def node_stats(trace: NodeTrace, decimals: int | None = None) -> dict[str, Any]:
    """JSON-ready summary: node, failures, mttf_h, mttr_h, availability (None when undefined: one outage)."""

    def rounded(value: float) -> float:
        return value if decimals is None else round(value, decimals)

    has_up_time = trace.failures >= 2
    return {
        "node": trace.node,
        "failures": trace.failures,
        "mttf_h": rounded(trace.mttf_h) if has_up_time else None,
        "mttr_h": rounded(trace.mttr_h),
        "availability": rounded(trace.availability) if has_up_time else None,
    }


def node_trace(records: Iterable[FailureRecord], node: NodeId | str) -> NodeTrace:
    """The :class:`NodeTrace` of one node from the raw records."""
    node_id = parse_node(node) if isinstance(node, str) else node
    return NodeTrace(node=node_id.name, outages=node_outages(records, node_id))


def daily_availability(trace: NodeTrace) -> FloatArray:
    """Daily availability ``(1440 - down minutes that day) / 1440``, shape (days,).

    Days run from the calendar day of the first outage's start to the day of the last outage's end (its
    start for a zero-length outage that ends at midnight), outages spanning midnight counted on each day.
    """
    starts, ends = trace.outages[:, 0], trace.outages[:, 1]
    first_day = int(np.floor(starts[0] / HOURS_PER_DAY))
    last_day = max(int(np.floor(starts[-1] / HOURS_PER_DAY)), int(np.ceil(ends[-1] / HOURS_PER_DAY)) - 1)
    boundaries_h = np.arange(first_day, last_day + 2, dtype=np.float64) * HOURS_PER_DAY  # (days + 1,)
    # Cumulative downtime D(t) is piecewise linear through (start_i, down before i), (end_i, down through i).
    down_through = np.cumsum(ends - starts)
    knots_x = trace.outages.ravel()
    knots_y = np.column_stack((down_through - (ends - starts), down_through)).ravel()
    cumulative_h = np.interp(boundaries_h, knots_x, knots_y)
    down_minutes = np.diff(cumulative_h) * MINUTES_PER_HOUR
    return np.clip((MINUTES_PER_DAY - down_minutes) / MINUTES_PER_DAY, 0.0, 1.0)


# --------------------------------------------------------------------------- two-state model


@dataclass(frozen=True)
class TwoStateModel:
    """Up/down Markov model of a node: exponential times to failure and to repair, hours."""

    mttf_h: float
    mttr_h: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.mttf_h) and self.mttf_h > 0):
            raise TraceError(f"MTTF must be a positive number of hours, got {self.mttf_h}")
        if not (np.isfinite(self.mttr_h) and self.mttr_h >= 0):
            raise TraceError(f"MTTR must be a non-negative number of hours, got {self.mttr_h}")

    def p_fail(self, dt_h: float) -> float:
        """P(up -> down) within a step of ``dt_h`` hours: 1 - exp(-dt / MTTF)."""
        return float(-np.expm1(-_check_step(dt_h) / self.mttf_h))

    def p_repair(self, dt_h: float) -> float:
        """P(down -> up) within a step of ``dt_h`` hours: 1 - exp(-dt / MTTR); 1 when MTTR is 0."""
        dt_h = _check_step(dt_h)
        if self.mttr_h == 0:
            return 1.0 if dt_h > 0 else 0.0
        return float(-np.expm1(-dt_h / self.mttr_h))

    @property
    def steady_state_availability(self) -> float:
        """Long-run fraction of time up: MTTF / (MTTF + MTTR)."""
        return self.mttf_h / (self.mttf_h + self.mttr_h)


def _check_step(dt_h: float) -> float:
    if not (np.isfinite(dt_h) and dt_h >= 0):
        raise ValueError(f"time step must be a non-negative number of hours, got {dt_h}")
    return float(dt_h)


def two_state_model(trace: NodeTrace) -> TwoStateModel:
    """The two-state model with the trace's MTTF and MTTR."""
    return TwoStateModel(mttf_h=trace.mttf_h, mttr_h=trace.mttr_h)


# --------------------------------------------------------------------------- the derived node table


def packaged_table_path() -> Path:
    """Where ``edgeoff traces build`` writes the packaged table in the source tree (next to this module)."""
    return Path(__file__).parent / "data" / PACKAGED_TABLE


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
        "acknowledgement": "Failure data provided by Los Alamos National Laboratory (LA-UR-05-7318)",
        "epoch": EPOCH.isoformat(),
        "units": "outages: [start_h, end_h] in hours since epoch, LANL local wall clock",
        "nodes": table_nodes,
    }


def _to_whole_minutes(hours: FloatArray) -> FloatArray:
    """Snap hours to whole minutes: undoes the table's 4-decimal rounding exactly."""
    return np.round(hours * MINUTES_PER_HOUR) / MINUTES_PER_HOUR


def write_node_table(table: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write the table as JSON atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    text = _PAIR_LINES.sub(r"[\1, \2]", json.dumps(table, indent=1)) + "\n"  # one outage per line
    mode = path.stat().st_mode & 0o777 if path.exists() else TABLE_FILE_MODE
    try:
        atomic_write(path, text, mode=mode)
    except OSError as exc:
        raise TraceError(f"{path}: cannot write node table: {exc.strerror or exc}") from exc


def read_node_table(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The raw JSON table; ``None`` reads the packaged ``edgeoff/data/lanl_nodes.json``."""
    where = str(path) if path is not None else f"packaged {PACKAGED_TABLE}"
    try:
        if path is None:
            text = resources.files("edgeoff").joinpath("data", PACKAGED_TABLE).read_text(encoding="utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
        table = json.loads(text)
    except OSError as exc:
        raise TraceError(f"{where}: cannot read node table: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TraceError(f"{where}: not a node table: {exc}") from exc
    if not isinstance(table, dict) or not isinstance(table.get("nodes"), dict):
        raise TraceError(f"{where}: not a node table: no 'nodes' object")
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
