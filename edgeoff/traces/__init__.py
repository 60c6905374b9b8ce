"""LANL failure traces (LA-UR-05-7318, 1996-2005): outages, MTTF/MTTR and a two-state model per node.

Los Alamos National Laboratory provided these data and asks to be acknowledged by anyone who uses them.

The package, by concern (every public name is also importable from ``edgeoff.traces``):

* :mod:`edgeoff.traces.lanl`: the raw file's parser (rows, node names, merged outages per node);
* :mod:`edgeoff.traces.model`: a node's trace in hours since :data:`EPOCH` (MTTF, MTTR, daily
  availability) and its two-state model;
* :mod:`edgeoff.traces.replay`: the chronological train/test split of a node, and its real outages replayed
  in simulated time (``--failures replay``);
* :mod:`edgeoff.traces.table`: the derived tables ``edgeoff/data/lanl_nodes.json`` (every outage) and
  ``edgeoff/data/lanl_replay.json`` (each node's test part), build, write, read.
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
from edgeoff.traces.replay import (
    DEFAULT_TRAIN_FRACTION,
    MIN_OUTAGE_MIN,
    OutageReplay,
    ReplayNode,
    past_trace,
    replay_node,
    train_end_h,
    training_chain,
    training_trace,
)
from edgeoff.traces.table import (
    PACKAGED_REPLAY_TABLE,
    PACKAGED_TABLE,
    build_node_table,
    build_replay_table,
    load_node_table,
    load_replay_table,
    packaged_replay_table_path,
    packaged_table_path,
    read_node_table,
    write_node_table,
    write_replay_table,
)

__all__ = [
    "DATASET_NODES",
    "DEFAULT_TRAIN_FRACTION",
    "EPOCH",
    "HOURS_PER_DAY",
    "LANL_HEADER",
    "MIN_OUTAGE_MIN",
    "PACKAGED_REPLAY_TABLE",
    "PACKAGED_TABLE",
    "PROTOTYPE_TO_LANL_SYSTEM",
    "FailureRecord",
    "NodeId",
    "NodeTrace",
    "OutageReplay",
    "ReplayNode",
    "TwoStateModel",
    "build_node_table",
    "build_replay_table",
    "daily_availability",
    "file_sha256",
    "hours_since_epoch",
    "load_node_table",
    "load_replay_table",
    "merge_intervals",
    "node_outages",
    "node_stats",
    "node_trace",
    "packaged_replay_table_path",
    "packaged_table_path",
    "parse_node",
    "past_trace",
    "read_failure_records",
    "read_node_table",
    "replay_node",
    "train_end_h",
    "training_chain",
    "training_trace",
    "two_state_model",
    "write_node_table",
    "write_replay_table",
]
