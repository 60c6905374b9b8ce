"""`edgeoff evaluate --failures replay`: real outages through the simulator, and its bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeoff import traces
from edgeoff.engines import get_engine
from edgeoff.evaluation.simulator import Group, SiteBehaviour, simulate_groups
from edgeoff.scenario import default_scenario
from edgeoff.traces import LANL_HEADER, OutageReplay, load_replay_table
from launcher.cli import main

SMALL = ["--apps", "60", "--reps", "3", "--datasets", "DS1", "--workers", "1", "--quiet"]


def test_replayed_sites_follow_the_replay_exactly() -> None:
    scenario = default_scenario()
    table = load_replay_table()
    nodes = scenario.dataset("DS1")
    sites = {
        scenario.site_ids.index(site): SiteBehaviour(50.0, 5.0, replay=table[node])
        for site, node in nodes.items()
    }
    # a fast time scale so that the replayed outages matter within 200 apps
    group = Group(sites, (4, 0), time_compression=36000.0, failures="replay")
    run = simulate_groups(scenario, [group], get_engine("mdp-oracle"), apps=200, reps=2)[0]
    replay = OutageReplay.from_seed(
        [table[nodes[sid]] if sid in nodes else None for sid in scenario.site_ids], 2, (4, 0, 3), 36000.0
    )
    # the share of decisions a site was up comes from the replay: ED is up most of the time, not always
    assert (run.true_availability[:, 0] == 1.0).all()  # the phone
    assert 0.5 < run.true_availability[:, 1:].mean() <= 1.0
    assert replay.up(np.zeros(2)).shape == (2, 5)


def test_both_failure_models_in_one_report(tmp_path: Path) -> None:
    out = tmp_path / "r"
    args = ["evaluate", "--out", str(out), "--failures", "markov,replay", "--engines", "all", *SMALL]
    assert main(args) == 0
    body = json.loads((out / "results.json").read_text())
    assert [s["failures"] for s in body["config"]["settings"]][-1] == "replay"
    models = {r["failures"] for r in body["results"]}
    assert models == {"markov", "replay"}
    report = (out / "report.md").read_text()
    assert "## Failure model `replay`" in report
    assert "## Failure model `markov`" in report
    assert "| DS1 | mdp-belief |" in report


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


def test_a_node_without_outages_in_its_test_part_is_one_line_exit_2_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = [
        ("1/1/2000 0:00", "1/1/2000 1:00"),
        ("1/2/2000 0:00", "1/2/2000 1:00"),
        ("1/3/2000 0:00", "1/3/2000 1:00"),
    ]
    rows = dict.fromkeys(default_scenario().dataset("DS1").values(), good)
    rows["19_1"] = [
        ("1/1/2000 0:00", "1/1/2000 1:00"),
        ("1/1/2000 2:00", "1/5/2000 0:00"),
    ]  # one long last outage
    raw = tmp_path / "raw.csv"
    raw.write_text(raw_rows(rows))
    out = tmp_path / "r"
    args = ["evaluate", "--out", str(out), "--failures", "replay", "--lanl", str(raw), *SMALL]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "node 19_1: no outage starts in its test part" in err
    assert err.count("\n") == 1
    assert not out.exists()


def test_unknown_failure_model_and_engine_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--out", str(out), "--failures", "coinflip", *SMALL])
    assert exc.value.code == 2
    assert main(["evaluate", "--out", str(out), "--engines", "dag-magic", *SMALL]) == 2
    assert "unknown engine source 'magic'" in capsys.readouterr().err
    assert not out.exists()
