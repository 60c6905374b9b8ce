"""`edgeoff evaluate` as a user runs it: outputs, reproducibility, and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from launcher.cli import main

SMALL = ["--apps", "40", "--reps", "3", "--datasets", "DS1,DS4", "--workers", "1", "--quiet"]


def _results(out: Path) -> dict[str, Any]:
    data = json.loads((out / "results.json").read_text())
    assert isinstance(data, dict)
    return data


def test_writes_results_report_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "results"
    assert main(["evaluate", "--out", str(out), *SMALL]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "availability_pct.png",
        "battery_pct.png",
        "report.md",
        "results.json",
        "rt_s.png",
    ]
    data = _results(out)
    assert data["config"]["apps"] == 40
    main_setting = [r for r in data["results"] if r["setting"] == 0]
    assert {(r["dataset"], r["engine"]) for r in main_setting} == {
        (d, e) for d in ("DS1", "DS4") for e in ("mdp-svr", "kubehybrid", "efpo")
    }
    record = main_setting[0]
    for key in ("rt_s", "battery_pct", "availability_pct"):
        assert set(record[key]) == {"mean", "std"}
    assert set(record["distribution_pct"]) == {"MD", "ED", "EC", "ER", "CD"}
    assert sum(record["distribution_pct"].values()) == pytest.approx(100.0)
    assert "failures_per_1000_apps" in record
    report = (out / "report.md").read_text()
    assert "| DS1 | kubehybrid |" in report
    assert "| 760 |" in report  # the paper's figure beside ours
    assert (out / "rt_s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_results_other_seed_different(tmp_path: Path) -> None:
    runs = {}
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        assert main(["evaluate", "--out", str(tmp_path / name), "--seed", seed, *SMALL]) == 0
        runs[name] = _results(tmp_path / name)["results"]
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--datasets", "DS9"], "unknown dataset 'DS9'"),
        (["--engines", "magic"], "unknown engine(s) magic"),
        (["--scenario", "/nonexistent.toml"], "cannot read"),
        (["--lanl", "/nonexistent.csv.xz"], "/nonexistent.csv.xz"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    out = tmp_path / "results"
    assert main(["evaluate", "--out", str(out), "--apps", "5", "--reps", "1", "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_malformed_scenario_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "s.toml"
    bad.write_text("name = 'x'\nsites = 3\n")
    assert main(["evaluate", "--out", str(tmp_path / "o"), "--scenario", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"edgeoff evaluate: error: {bad}: ")


def test_bounds_give_the_share_of_the_gap_closed(tmp_path: Path) -> None:
    out = tmp_path / "r"
    engines = "mdp-svr,mdp-reactive,mdp-oracle"
    args = ["evaluate", "--out", str(out), "--engines", engines, "--time-compression", "3600", *SMALL]
    assert main(args) == 0
    report = (out / "report.md").read_text()
    assert "reactive-to-oracle gap" in report
    assert "| DS1 | mdp-svr |" in report
    assert "Forecaster selected per node" in report
    data = _results(out)
    assert {row["node"] for row in data["forecaster_selection"]} >= {"7_1", "19_1", "3_0", "22_0"}
    by = {(r["dataset"], r["engine"]): r for r in data["results"]}
    for dataset in ("DS1", "DS4"):  # the oracle fails only when a site fails while it holds a task
        oracle, reactive = by[(dataset, "mdp-oracle")], by[(dataset, "mdp-reactive")]
        assert oracle["failures_per_1000_apps"] <= reactive["failures_per_1000_apps"]


def test_sensitivity_to_time_compression_and_detection_time(tmp_path: Path) -> None:
    out = tmp_path / "r"
    args = [
        "evaluate",
        "--out",
        str(out),
        "--time-compression",
        "3600,360",
        "--detection-s",
        "1.5,0.3",
        *SMALL,
    ]
    assert main(args) == 0
    data = _results(out)
    labels = [s["label"] for s in data["config"]["settings"]]
    assert labels == [
        "time compression 3600, 1.5 s detection",
        "time compression 360, 1.5 s detection",
        "time compression 3600, 0.3 s detection",
    ]
    by = {(r["dataset"], r["engine"], r["setting"]): r for r in data["results"]}
    slow, fast = by[("DS1", "kubehybrid", 0)], by[("DS1", "kubehybrid", 2)]
    # the same failure paths: a faster detector turns some failed attempts into known-down sites
    assert fast["failures_per_1000_apps"] <= slow["failures_per_1000_apps"]
    # sites fail ten times less often per application at a tenth of the compression
    slower_failures = by[("DS1", "kubehybrid", 1)]
    assert slower_failures["failures_per_1000_apps"] <= slow["failures_per_1000_apps"]
    assert "Sensitivity" in (out / "report.md").read_text()
