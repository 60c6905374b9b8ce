"""LANL failure traces (LA-UR-05-7318, 1996-2005): outages, MTTF/MTTR and a two-state model per node.

Los Alamos National Laboratory provided these data and asks to be acknowledged by anyone who uses them.

The package, by concern (every public name is also importable from ``edgeoff.traces``):

* :mod:`edgeoff.traces.lanl`: the raw file's parser (rows, node names, merged outages per node);
* :mod:`edgeoff.traces.model`: a node's trace in hours since :data:`EPOCH` (MTTF, MTTR, daily
  availability) and its two-state model;
* :mod:`edgeoff.traces.table`: the derived node table ``edgeoff/data/lanl_nodes.json`` (build, write, read).
"""

from edgeoff.traces.lanl import (
    DATASET_NODES,
    LANL_HEADER,
    PROTOTYPE_TO_LANL_SYSTEM,
    FailureRecord,
    NodeId,
    file_sha256,
    node_outages,
    node_trace,
    parse_node,
    read_failure_records,
)
from edgeoff.traces.model import (
    EPOCH,
    HOURS_PER_DAY,
    NodeTrace,
    TwoStateModel,
    daily_availability,
    hours_since_epoch,
    merge_intervals,
    node_stats,
    two_state_model,
)
from edgeoff.traces.table import (
    PACKAGED_TABLE,
    build_node_table,
    load_node_table,
    packaged_table_path,
    read_node_table,
    write_node_table,
)

__all__ = [
    "DATASET_NODES",
    "EPOCH",
    "HOURS_PER_DAY",
    "LANL_HEADER",
    "PACKAGED_TABLE",
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
