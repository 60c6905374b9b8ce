"""LANL failure traces: reading, merging, per-node statistics, the packaged table and `edgeoff traces`."""

from __future__ import annotations

import json
import lzma
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from edgeoff import traces
from edgeoff.errors import TraceError
from edgeoff.traces import (
    DATASET_NODES,
    LANL_HEADER,
    NodeId,
    NodeTrace,
    TwoStateModel,
    build_node_table,
    daily_availability,
    load_node_table,
    node_outages,
    node_trace,
    parse_node,
    read_failure_records,
    read_node_table,
    two_state_model,
    write_node_table,
)
from launcher.cli import main

HEADER = ",".join(LANL_HEADER)


def row(system: str, node: str, started: str, fixed: str, down: str) -> str:
    """One LANL CSV line with the given key cells and the rest filled like the real file."""
    machine = [system, "cluster", "49", "6152", "80", node, node, "5-Apr", "5-Jun", "current", "part", "80"]
    return ",".join(
        [*machine, "1", "1", "0", "compute", started, fixed, down, "", "Memory", "", "", "", "", "No"]
    )


# Node 19_1 is LANL system 16, node 1. Times are hours since 1996-01-01 00:00.
#   [0, 2] and [1, 3] overlap, [3, 4] touches: one outage [0, 4]
#   [23, 49] spans two midnights; [108, 109] on day 4; a record of another node and a system-wide one
EXAMPLE_ROWS = [
    row("16", "1", "1/1/1996 1:00", "1/1/1996 3:00", "120"),
    row("16", "1", "1/1/1996 0:00", "1/1/1996 2:00", "120"),
    row("16", "1", "1/1/1996 3:00", "", "60"),  # empty Prob Fixed: started + Down Time
    row("16", "1", "1/1/1996 23:00", "1/3/1996 1:00", "1560"),
    row("16", "1", "1/5/1996 12:00", "1/5/1996 13:00", "60"),
    row("16", "2", "1/2/1996 12:00", "1/2/1996 13:00", "60"),
    row("17", "", "1/2/1996 12:00", "1/2/1996 13:00", "60"),
]
EXAMPLE_OUTAGES = [[0.0, 4.0], [23.0, 49.0], [108.0, 109.0]]
EXAMPLE_MTTR = (4 + 26 + 1) / 3
EXAMPLE_MTTF = (19 + 59) / 2


def write_csv(path: Path, lines: Sequence[str]) -> Path:
    text = "\n".join([HEADER, *lines]) + "\n"
    if path.suffix == ".xz":
        path.write_bytes(lzma.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.fixture(params=["failures.csv", "failures.csv.xz"])
def example_csv(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return write_csv(tmp_path / request.param, EXAMPLE_ROWS)


@pytest.fixture
def example_trace(example_csv: Path) -> NodeTrace:
    return node_trace(read_failure_records(example_csv), "19_1")


# --------------------------------------------------------------------------- nodes


def test_parse_node_maps_prototype_system_to_lanl_system() -> None:
    assert parse_node("19_1") == NodeId(name="19_1", prototype_system=19, lanl_system=16, nodenum=1)
    assert parse_node("22_0").lanl_system == 15
    assert parse_node("7_1").lanl_system == 18


@pytest.mark.parametrize("name", ["19-1", "19_", "_1", "abc", "19_1_2", ""])
def test_parse_node_rejects_malformed_names(name: str) -> None:
    with pytest.raises(TraceError, match="malformed node name"):
        parse_node(name)


@pytest.mark.parametrize("name", ["0_1", "23_1", "99_4"])
def test_parse_node_rejects_unknown_systems(name: str) -> None:
    with pytest.raises(TraceError, match="unknown system"):
        parse_node(name)


def test_dataset_nodes_are_the_16_distinct_nodes_of_table_2() -> None:
    assert len(DATASET_NODES) == len(set(DATASET_NODES)) == 16
    assert all(parse_node(name).name == name for name in DATASET_NODES)


# --------------------------------------------------------------------------- reading and merging


def test_reads_plain_and_xz_files_alike(example_csv: Path) -> None:
    records = read_failure_records(example_csv)
    assert len(records) == len(EXAMPLE_ROWS)
    assert records[-1].nodenum is None  # system-wide record kept, attached to no node
    assert records[2].fixed.hour == 4  # empty Prob Fixed filled from Down Time
    assert records[3].down_minutes == 1560


def test_overlapping_and_touching_records_merge_into_one_outage(example_csv: Path) -> None:
    outages = node_outages(read_failure_records(example_csv), parse_node("19_1"))
    assert outages.shape == (3, 2)
    np.testing.assert_array_equal(outages, EXAMPLE_OUTAGES)


def test_merge_keeps_a_record_nested_inside_another(tmp_path: Path) -> None:
    lines = [
        row("16", "1", "1/1/1996 0:00", "1/1/1996 10:00", "600"),
        row("16", "1", "1/1/1996 2:00", "1/1/1996 3:00", "60"),
        row("16", "1", "1/1/1996 12:00", "1/1/1996 12:00", "0"),
    ]
    records = read_failure_records(write_csv(tmp_path / "f.csv", lines))
    np.testing.assert_array_equal(node_outages(records, parse_node("19_1")), [[0, 10], [12, 12]])


def test_node_without_records_is_unknown(example_csv: Path) -> None:
    with pytest.raises(TraceError, match="unknown node 19_3: no failure records"):
        node_outages(read_failure_records(example_csv), parse_node("19_3"))


@pytest.mark.parametrize(
    ("bad_row", "reason"),
    [
        (row("16", "1", "1/1/1996 0:00", "1/1/1996 1:00", "60") + ",extra", "expected 26 columns, got 27"),
        (
            row("16", "1", "1/32/1996 0:00", "1/2/1996 1:00", "60"),
            "Prob Started '1/32/1996 0:00' is not a date",
        ),
        (row("16", "1", "1/1/1996 0:00", "yesterday", "60"), "Prob Fixed 'yesterday' is not a date"),
        (row("16", "1", "1/2/1996 0:00", "1/1/1996 1:00", "60"), "Prob Fixed '1/1/1996 1:00' is before"),
        (row("16", "1", "1/1/1996 0:00", "1/1/1996 1:00", "-5"), "negative Down Time -5"),
        (row("16", "1", "1/1/1996 0:00", "1/1/1996 1:00", "1.5"), "Down Time '1.5' is not an integer"),
        (row("X", "1", "1/1/1996 0:00", "1/1/1996 1:00", "60"), "System 'X' is not an integer"),
        (row("16", "n1", "1/1/1996 0:00", "1/1/1996 1:00", "60"), "nodenum 'n1' is not an integer"),
        (row("16", "1", "1/1/1996 0:00", "", ""), "both Prob Fixed and Down Time are empty"),
    ],
)
def test_bad_row_names_file_and_line(tmp_path: Path, bad_row: str, reason: str) -> None:
    path = write_csv(tmp_path / "bad.csv", [EXAMPLE_ROWS[0], bad_row])
    with pytest.raises(TraceError) as caught:
        read_failure_records(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:3: ")
    assert reason in message
    assert "\n" not in message


def test_missing_file_is_a_trace_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="cannot read LANL failure data"):
        read_failure_records(tmp_path / "absent.csv")


@pytest.mark.parametrize(
    "content",
    [
        b"name,age\nada,36\n",  # another CSV
        b"\x00\xff\xfe binary \x80\x81",  # not text
        b"\xfd7zXZ\x00 truncated xz",  # corrupt xz stream
        b"",  # empty
    ],
)
def test_file_that_is_not_the_lanl_csv_is_a_trace_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "other.csv"
    path.write_bytes(content)
    with pytest.raises(TraceError, match=str(path)):
        read_failure_records(path)


# --------------------------------------------------------------------------- per-node statistics


def test_mttf_mttr_and_availability_of_the_hand_computed_example(example_trace: NodeTrace) -> None:
    assert example_trace.failures == 3
    assert example_trace.mttr_h == pytest.approx(EXAMPLE_MTTR)
    assert example_trace.mttf_h == pytest.approx(EXAMPLE_MTTF)
    assert example_trace.availability == pytest.approx(EXAMPLE_MTTF / (EXAMPLE_MTTF + EXAMPLE_MTTR))


def test_mttf_needs_two_outages() -> None:
    trace = NodeTrace(node="19_1", outages=np.array([[0.0, 2.0]]))
    assert trace.failures == 1
    assert trace.mttr_h == 2.0
    with pytest.raises(TraceError, match="single outage"):
        _ = trace.mttf_h


@pytest.mark.parametrize(
    "outages",
    [np.zeros((0, 2)), np.array([1.0, 2.0]), np.array([[2.0, 1.0]]), np.array([[0.0, 2.0], [2.0, 3.0]])],
)
def test_trace_rejects_outages_that_are_not_sorted_disjoint_intervals(outages: np.ndarray) -> None:
    with pytest.raises(TraceError):
        NodeTrace(node="19_1", outages=outages)


def test_daily_series_carries_outages_over_midnight_and_across_days(example_trace: NodeTrace) -> None:
    down_minutes = [5 * 60, 24 * 60, 60, 0, 60]  # Jan 1 .. Jan 5
    expected = [(1440 - minutes) / 1440 for minutes in down_minutes]
    np.testing.assert_allclose(daily_availability(example_trace), expected)


def test_daily_series_runs_to_the_day_an_outage_ends() -> None:
    # Starts at 22:00 on day 10, ends at 02:00 on day 11; a second outage ends exactly at midnight.
    trace = NodeTrace(node="19_1", outages=np.array([[24 * 10 + 22, 24 * 11 + 2], [24 * 11 + 23, 24 * 12]]))
    np.testing.assert_allclose(daily_availability(trace), [22 / 24, 21 / 24])


# --------------------------------------------------------------------------- two-state model


def test_two_state_probabilities() -> None:
    model = TwoStateModel(mttf_h=10.0, mttr_h=2.0)
    assert model.p_fail(1.0) == pytest.approx(1 - math.exp(-0.1))
    assert model.p_repair(1.0) == pytest.approx(1 - math.exp(-0.5))
    assert model.p_fail(0.0) == 0.0
    assert model.steady_state_availability == pytest.approx(10 / 12)
    assert TwoStateModel(mttf_h=10.0, mttr_h=0.0).p_repair(1.0) == 1.0
    with pytest.raises(ValueError, match="time step"):
        model.p_fail(-1.0)


@pytest.mark.parametrize(("mttf", "mttr"), [(0.0, 1.0), (-1.0, 1.0), (1.0, -1.0), (math.inf, 1.0)])
def test_two_state_model_rejects_impossible_times(mttf: float, mttr: float) -> None:
    with pytest.raises(TraceError):
        TwoStateModel(mttf_h=mttf, mttr_h=mttr)


def test_two_state_model_of_a_trace(example_trace: NodeTrace) -> None:
    model = two_state_model(example_trace)
    assert model == TwoStateModel(mttf_h=example_trace.mttf_h, mttr_h=example_trace.mttr_h)
    assert model.steady_state_availability == pytest.approx(example_trace.availability)


# --------------------------------------------------------------------------- the node table


def test_table_round_trip_rebuilds_traces_without_the_raw_file(example_csv: Path, tmp_path: Path) -> None:
    records = read_failure_records(example_csv)
    table = build_node_table(records, ["19_1", "19_2"], source_file=example_csv.name, source_sha256="0" * 64)
    out = tmp_path / "nodes.json"
    write_node_table(table, out)
    loaded = load_node_table(out)
    assert loaded == {"19_1": node_trace(records, "19_1"), "19_2": node_trace(records, "19_2")}
    stored = json.loads(out.read_text())
    assert stored["source"] == {"file": example_csv.name, "sha256": "0" * 64}
    assert stored["nodes"]["19_1"]["failures"] == 3
    assert stored["nodes"]["19_1"]["mttf_h"] == pytest.approx(EXAMPLE_MTTF)
    assert stored["nodes"]["19_2"]["failures"] == 1
    assert stored["nodes"]["19_2"]["mttf_h"] is None  # one outage: no up time observed
    assert stored["nodes"]["19_2"]["availability"] is None


def test_failed_table_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "nodes.json"
    out.write_text("old")
    with pytest.raises(TypeError):
        write_node_table({"nodes": {"19_1": object()}}, out)
    assert out.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["nodes.json"]


def test_unreadable_table_is_a_trace_error(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(TraceError, match="not a node table"):
        load_node_table(tmp_path / "broken.json")
    with pytest.raises(TraceError, match="cannot read node table"):
        load_node_table(tmp_path / "absent.json")


def test_packaged_table_covers_the_dataset_nodes() -> None:
    table = load_node_table()
    assert set(table) == set(DATASET_NODES)
    for name, trace in table.items():
        assert trace.node == name
        assert trace.failures >= 2
        assert 0.0 < trace.availability < 1.0


# --------------------------------------------------------------------------- the real LANL file


@pytest.fixture(scope="module")
def lanl_records(lanl_path: Path) -> list[traces.FailureRecord]:
    return read_failure_records(lanl_path)


def test_real_file_loads(lanl_records: list[traces.FailureRecord]) -> None:
    assert len(lanl_records) == 23_739


def test_committed_table_matches_the_raw_file(
    lanl_path: Path, lanl_records: list[traces.FailureRecord]
) -> None:
    fresh = build_node_table(
        lanl_records, DATASET_NODES, source_file=lanl_path.name, source_sha256=traces.file_sha256(lanl_path)
    )
    assert read_node_table() == fresh


def test_real_nodes_sanity(lanl_records: list[traces.FailureRecord]) -> None:
    busy, quiet = node_trace(lanl_records, "19_1"), node_trace(lanl_records, "7_1")
    assert busy.failures > 10 * quiet.failures
    assert busy.availability < quiet.availability
    daily = daily_availability(busy)
    assert daily.min() >= 0.0
    assert daily.max() == 1.0
    assert daily.mean() == pytest.approx(busy.availability, abs=0.01)


# --------------------------------------------------------------------------- `edgeoff traces`


def stats_lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()]


def test_cli_stats_from_the_packaged_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["traces", "stats", "--nodes", "7_1,19_1"]) == 0
    lines = stats_lines(capsys.readouterr().out)
    assert [line["node"] for line in lines] == ["7_1", "19_1"]
    for line in lines:
        assert set(line) == {"node", "failures", "mttf_h", "mttr_h", "availability"}
        assert isinstance(line["failures"], int)
        assert all(isinstance(line[key], float) for key in ("mttf_h", "mttr_h", "availability"))


def test_cli_stats_defaults_to_the_dataset_nodes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["traces", "stats"]) == 0
    assert [line["node"] for line in stats_lines(capsys.readouterr().out)] == list(DATASET_NODES)


def test_cli_stats_from_a_raw_file(example_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["traces", "stats", "--lanl", str(example_csv), "--nodes", "19_1"]) == 0
    (line,) = stats_lines(capsys.readouterr().out)
    assert line["failures"] == 3
    assert line["mttf_h"] == pytest.approx(EXAMPLE_MTTF)
    assert line["mttr_h"] == pytest.approx(EXAMPLE_MTTR)


def test_cli_stats_reports_undefined_mttf_as_null(
    example_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["traces", "stats", "--lanl", str(example_csv), "--nodes", "19_2"]) == 0
    (line,) = stats_lines(capsys.readouterr().out)
    assert line == {"node": "19_2", "failures": 1, "mttf_h": None, "mttr_h": 1.0, "availability": None}


@pytest.mark.parametrize(
    "argv",
    [
        ["traces", "stats", "--nodes", "7_1,2_3"],  # well-formed, not in the packaged table
        ["traces", "stats", "--nodes", "99_1"],  # unknown system
        ["traces", "stats", "--nodes", "seven"],  # malformed
    ],
)
def test_cli_unknown_node_is_one_line_and_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("edgeoff traces: error: ")
    assert captured.err.count("\n") == 1
    assert "Traceback" not in captured.err


def test_cli_unknown_node_in_a_raw_file(example_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["traces", "stats", "--lanl", str(example_csv), "--nodes", "19_3"]) == 2
    assert "unknown node 19_3" in capsys.readouterr().err


def test_cli_build_from_a_bad_file_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_csv(tmp_path / "bad.csv", [row("16", "1", "1/1/1996 0:00", "1/1/1996 1:00", "-5")])
    out = tmp_path / "out" / "nodes.json"
    out.parent.mkdir()
    assert main(["traces", "build", "--lanl", str(bad), "--out", str(out)]) == 2
    assert f"{bad}:2: negative Down Time" in capsys.readouterr().err
    assert list(out.parent.iterdir()) == []


def test_cli_build_reproduces_the_committed_table(
    lanl_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nodes.json"
    assert main(["traces", "build", "--lanl", str(lanl_path), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert out.read_bytes() == traces.packaged_table_path().read_bytes()


@pytest.mark.parametrize("case", ["a folder", "under a file"])
def test_cli_build_refuses_a_bad_out_before_reading_and_leaves_no_temporary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("keep\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    out, message = {
        "a folder": (folder, f"{folder}: is a folder; give a file name"),
        "under a file": (blocker / "nodes.json", f"{blocker} is a file, not a folder"),
    }[case]
    missing_raw = tmp_path / "never-read.csv.xz"  # --out is refused before the raw file is even opened
    assert main(["traces", "build", "--lanl", str(missing_raw), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        err.splitlines() == [f"edgeoff traces: error: {out}: {message.split(': ', 1)[-1]}"] or message in err
    )
    assert message in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["file", "folder"]  # no .tmp anywhere
