"""Real outages replayed: the train/test split, the packaged replay table, and the vectorised queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeoff import traces
from edgeoff.errors import TraceError
from edgeoff.traces import (
    DATASET_NODES,
    LANL_HEADER,
    MIN_OUTAGE_MIN,
    NodeTrace,
    OutageReplay,
    ReplayNode,
    load_node_table,
    load_replay_table,
    replay_node,
    train_end_h,
    training_chain,
    training_trace,
)
from launcher.cli import main

H = 60  # minutes per hour


def trace_of(*outages_h: tuple[float, float], node: str = "19_1") -> NodeTrace:
    return NodeTrace(node=node, outages=np.array(outages_h, dtype=np.float64))


def state_by_brute_force(node: ReplayNode, offset_min: float, t_s: float, compression: float) -> bool:
    """Up at simulated time t_s, walking the test part minute by minute from its start (reference)."""
    position = (offset_min + t_s * compression / 60.0) % node.length_min
    for start, end in node.outages_min - node.start_min:
        if start <= position < max(end, start + MIN_OUTAGE_MIN):
            return False
    return True


# --------------------------------------------------------------------------- the split


def test_the_test_part_is_the_last_fifth_of_the_span() -> None:
    trace = trace_of((0.0, 1.0), (50.0, 52.0), (85.0, 86.0), (99.0, 100.0))
    assert train_end_h(trace) == pytest.approx(80.0)
    replay = replay_node(trace)
    assert (replay.start_min, replay.end_min) == (80 * H, 100 * H)
    np.testing.assert_array_equal(replay.outages_min, [[85 * H, 86 * H], [99 * H, 100 * H]])
    past = training_trace(trace)
    assert past is not None
    np.testing.assert_array_equal(past.outages, [[0.0, 1.0], [50.0, 52.0]])
    chain = training_chain(trace)
    assert chain is not None
    assert chain.mttf_h == pytest.approx(49.0)
    assert chain.mttr_h == pytest.approx(1.5)


def test_an_outage_across_the_split_is_clipped_to_the_test_part_and_left_out_of_training() -> None:
    trace = trace_of((0.0, 1.0), (10.0, 11.0), (78.0, 82.0), (99.0, 100.0))
    replay = replay_node(trace)
    np.testing.assert_array_equal(replay.outages_min, [[80 * H, 82 * H], [99 * H, 100 * H]])
    past = training_trace(trace)
    assert past is not None
    assert past.failures == 2
    assert training_chain(trace_of((0.0, 1.0), (99.0, 100.0))) is None  # one training outage: no MTTF


def test_a_node_without_an_outage_in_its_test_part_cannot_be_replayed() -> None:
    # the last outage starts before the split: down for the whole test part
    with pytest.raises(TraceError, match=r"node 19_1: no outage starts in its test part"):
        replay_node(trace_of((0.0, 1.0), (2.0, 100.0)))
    with pytest.raises(TraceError, match="train_fraction"):
        replay_node(trace_of((0.0, 1.0), (90.0, 100.0)), train_fraction=1.0)


# --------------------------------------------------------------------------- the packaged table


def test_the_packaged_replay_table_is_the_test_part_of_the_packaged_node_table() -> None:
    replays, nodes = load_replay_table(), load_node_table()
    assert list(replays) == list(DATASET_NODES)
    for name, replay in replays.items():
        assert replay == replay_node(nodes[name])
        assert replay.start_min == round(train_end_h(nodes[name]) * H)
        assert 0.0 < replay.down_share() < 0.5  # never without an outage, mostly up (4_55: 22 % down)
    size = traces.packaged_replay_table_path().stat().st_size
    assert size < 8_000  # compact: the 16 test parts, whole minutes


def test_build_regenerates_both_tables_from_the_raw_file(
    lanl_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nodes.json"
    assert main(["traces", "build", "--lanl", str(lanl_path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    replay = tmp_path / traces.PACKAGED_REPLAY_TABLE  # beside the node table
    assert str(replay) in printed
    assert out.read_bytes() == traces.packaged_table_path().read_bytes()
    assert replay.read_bytes() == traces.packaged_replay_table_path().read_bytes()


def raw_rows(outages: dict[str, list[tuple[str, str]]]) -> str:
    lines = [",".join(LANL_HEADER)]
    for name, spans in outages.items():
        node = traces.parse_node(name)
        for started, fixed in spans:
            cells = [""] * len(LANL_HEADER)
            cells[LANL_HEADER.index("System")] = str(node.lanl_system)
            cells[LANL_HEADER.index("nodenum")] = str(node.nodenum)
            cells[LANL_HEADER.index("Prob Started")] = started
            cells[LANL_HEADER.index("Prob Fixed")] = fixed
            lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def test_build_refuses_a_node_it_cannot_replay_in_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = [("1/1/2000 0:00", "1/1/2000 1:00"), ("1/2/2000 0:00", "1/2/2000 1:00")]
    rows = dict.fromkeys(DATASET_NODES, good)
    rows["19_4"] = [("1/1/2000 0:00", "1/1/2000 1:00"), ("1/1/2000 2:00", "1/5/2000 0:00")]
    raw = tmp_path / "raw.csv"
    raw.write_text(raw_rows(rows))
    out = tmp_path / "out" / "nodes.json"
    out.parent.mkdir()
    assert main(["traces", "build", "--lanl", str(raw), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "node 19_4: no outage starts in its test part" in err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert list(out.parent.iterdir()) == []


def test_a_bad_replay_table_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "replay.json"
    path.write_text('{"nodes": {"19_1": {"test": [0], "outages": []}}}')
    with pytest.raises(TraceError, match="node 19_1: bad test part"):
        load_replay_table(path)
    path.write_text('{"nodes": {"19_1": {"test": [0, 100], "outages": [[50, 150]]}}}')
    with pytest.raises(TraceError, match="inside the test part"):
        load_replay_table(path)


# --------------------------------------------------------------------------- the replay


@pytest.fixture
def node() -> ReplayNode:
    """A 1000-minute test part with outages at minutes 100-150, 400-401 and 990-1000 of it."""
    outages = np.array([[100, 150], [400, 401], [990, 1000]]) + 5000
    return ReplayNode(node="19_1", start_min=5000, end_min=6000, outages_min=outages)


@pytest.mark.parametrize("compression", [36.0, 3600.0, 36000.0])
def test_up_agrees_with_a_point_by_point_walk_for_every_repetition(
    node: ReplayNode, compression: float
) -> None:
    rng = np.random.default_rng(3)
    reps = 40
    uniform = rng.random((reps, 2))
    replay = OutageReplay([None, node], uniform, compression)
    horizon_s = 3 * node.length_min * 60 / compression  # three loops: the replay repeats the test part
    for t in rng.random(25) * horizon_s:
        up = replay.up(t)
        assert up.shape == (reps, 2)
        assert up[:, 0].all()  # the phone never fails
        expected = [state_by_brute_force(node, replay.offset_min[r, 1], t, compression) for r in range(reps)]
        np.testing.assert_array_equal(up[:, 1], expected)


def test_times_may_differ_per_repetition_and_site(node: ReplayNode) -> None:
    replay = OutageReplay([node, node], np.zeros((3, 2)), 60.0)  # one trace minute per simulated second
    t = np.array([[0.0, 100.0], [120.0, 150.0], [400.5, 990.0]])
    np.testing.assert_array_equal(replay.up(t), [[True, False], [False, True], [False, False]])
    np.testing.assert_array_equal(
        replay.up(np.array([0.0, 100.0, 160.0])), [[True] * 2, [False] * 2, [True] * 2]
    )


def test_until_change_is_the_next_flip(node: ReplayNode) -> None:
    rng = np.random.default_rng(5)
    compression = 600.0
    replay = OutageReplay([node, None], rng.random((30, 2)), compression)
    for t in rng.random(20) * 2 * node.length_min * 60 / compression:
        dt = replay.until_change(t)
        assert np.isinf(dt[:, 1]).all()
        step = dt[:, 0]
        assert (step > 0).all()
        before = replay.up(t)[:, 0]
        eps = 1e-6
        np.testing.assert_array_equal(replay.up(np.full(30, t) + step - eps)[:, 0], before)
        np.testing.assert_array_equal(replay.up(np.full(30, t) + step + eps)[:, 0], ~before)


def test_since_change_is_the_last_flip(node: ReplayNode) -> None:
    rng = np.random.default_rng(6)
    compression = 600.0
    replay = OutageReplay([node, None], rng.random((30, 2)), compression)
    loop_s = node.length_min * 60 / compression
    for t in loop_s + rng.random(20) * loop_s:  # a loop in: the last change is always inside the run
        back = replay.since_change(t)
        assert np.isinf(back[:, 1]).all()
        step = back[:, 0]
        assert (step >= 0).all()
        now = replay.up(t)[:, 0]
        eps = 1e-6
        np.testing.assert_array_equal(replay.up(np.full(30, t) - step + eps)[:, 0], now)
        np.testing.assert_array_equal(replay.up(np.full(30, t) - step - eps)[:, 0], ~now)


def test_a_zero_offset_starts_at_the_test_start_and_compression_scales_time(node: ReplayNode) -> None:
    for compression in (60.0, 600.0):
        replay = OutageReplay([node], np.zeros((1, 1)), compression)
        first_outage_s = 100 * 60 / compression  # 100 trace minutes
        assert replay.up(0.0)[0, 0]
        assert replay.until_change(0.0)[0, 0] == pytest.approx(first_outage_s)
        assert not replay.up(first_outage_s)[0, 0]
        assert replay.until_change(first_outage_s)[0, 0] == pytest.approx(50 * 60 / compression)


def test_down_across_the_seam_is_one_outage() -> None:
    # the first outage straddled the split (clipped to the test start) and the last ends the span
    straddling = ReplayNode(
        node="3_0", start_min=0, end_min=1000, outages_min=np.array([[0, 20], [500, 510], [980, 1000]])
    )
    replay = OutageReplay([straddling], np.array([[0.985]]), 60.0)  # at minute 985 of 1000
    assert not replay.up(0.0)[0, 0]
    assert replay.until_change(0.0)[0, 0] == pytest.approx(15.0 + 20.0)  # through the seam to minute 20
    assert not replay.up(30.0)[0, 0]
    assert replay.up(36.0)[0, 0]


def test_a_zero_length_outage_lasts_a_minute() -> None:
    instant = ReplayNode(node="4_3", start_min=0, end_min=100, outages_min=np.array([[50, 50]]))
    replay = OutageReplay([instant], np.zeros((1, 1)), 60.0)
    assert replay.up(49.9)[0, 0]
    assert not replay.up(50.0)[0, 0]
    assert not replay.up(50.9)[0, 0]
    assert replay.up(51.0)[0, 0]
    assert instant.down_share() == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("uniform", "compression", "match"),
    [
        (np.zeros((2, 3)), 60.0, r"shape \(R, 1\)"),
        (np.ones((2, 1)), 60.0, r"\[0, 1\)"),
        (np.zeros((2, 1)), 0.0, "positive"),
        (np.zeros((2, 1)), np.nan, "positive"),
    ],
)
def test_bad_replay_settings_are_one_error(
    node: ReplayNode, uniform: np.ndarray, compression: float, match: str
) -> None:
    with pytest.raises(TraceError, match=match):
        OutageReplay([node], uniform, compression)


def test_the_same_seed_gives_the_same_offsets(node: ReplayNode) -> None:
    a = OutageReplay.from_seed([None, node, node], 50, (4, 2), 3600.0)
    b = OutageReplay.from_seed([None, node, node], 50, (4, 2), 3600.0)
    other = OutageReplay.from_seed([None, node, node], 50, (5, 2), 3600.0)
    np.testing.assert_array_equal(a.offset_min, b.offset_min)
    assert not np.array_equal(a.offset_min, other.offset_min)
    assert (a.offset_min[:, 0] == 0).all()
    assert (a.offset_min[:, 1:] < node.length_min).all()
    assert len(np.unique(a.offset_min[:, 1])) == 50  # each repetition its own offset


def test_bad_times_are_one_error(node: ReplayNode) -> None:
    replay = OutageReplay([node], np.zeros((2, 1)), 60.0)
    for bad in (-1.0, np.inf, np.nan):
        with pytest.raises(TraceError, match="finite and non-negative"):
            replay.up(bad)
