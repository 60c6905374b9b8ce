"""`edgeoff evaluate` as a user runs it: outputs, reproducibility, and bad input."""

from __future__ import annotations

import hashlib
import json
import re
import statistics
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import edgeoff
from edgeoff.commands.evaluate import running_label
from launcher.cli import main

PAPER_TOML = Path(edgeoff.__file__).parent / "scenarios" / "paper.toml"
NODE_TABLE = Path(edgeoff.__file__).parent / "data" / "lanl_nodes.json"

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


def _no_long_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the simulation fail the test if it starts: bad input must be refused before it."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the long work started before the bad input was refused")

    for name in ("load_traces", "fit_forecasts", "run_experiment"):
        monkeypatch.setattr(f"edgeoff.commands.evaluate.{name}", forbidden)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seed", "-1"], "argument --seed: must be at least 0: '-1'"),
        (["--detection-s", "nan"], "argument --detection-s: seconds must be positive and finite: 'nan'"),
        (["--detection-s", "1.5,inf"], "must be positive and finite: '1.5,inf'"),
        (
            ["--time-compression", "nan"],
            "argument --time-compression: trace seconds per wall second must be positive and finite",
        ),
        (["--datasets", ","], "argument --datasets: no name in ','"),
        (["--engines", " , "], "argument --engines: no name in ' , '"),
    ],
)
def test_bad_arguments_are_refused_up_front(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    _no_long_work(monkeypatch)
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--out", str(tmp_path / "results"), "--quiet", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert err.startswith("edgeoff evaluate: error: ")
    assert message in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["existing file", "under a file", "unwritable folder"])
def test_bad_out_is_refused_before_the_simulation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    _no_long_work(monkeypatch)
    blocker = tmp_path / "file"
    blocker.write_text("keep me\n")
    out, message = {
        "existing file": (blocker, f"{blocker}: exists and is not a folder"),
        "under a file": (blocker / "results", f"{blocker} is a file, not a folder"),
        # nothing can be created in /proc, not even by root (a chmod would not stop root)
        "unwritable folder": (Path("/proc/self/results"), "cannot write in /proc/self"),
    }[case]
    assert main(["evaluate", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    assert blocker.read_text() == "keep me\n"


def test_results_say_where_they_came_from_and_only_the_run_block_varies(tmp_path: Path) -> None:
    bodies = []
    for name in ("a", "b"):
        assert main(["evaluate", "--out", str(tmp_path / name), "--seed", "3", *SMALL]) == 0
        bodies.append(_results(tmp_path / name))
    first = bodies[0]
    assert list(first) == [
        "config",
        "provenance",
        "forecast_errors",
        "forecaster_selection",
        "results",
        "run",
    ]
    prov = first["provenance"]
    assert prov["edgeoff_version"] == edgeoff.__version__
    assert prov["scenario_sha256"] == hashlib.sha256(PAPER_TOML.read_bytes()).hexdigest()
    assert prov["failure_data_sha256"] == hashlib.sha256(NODE_TABLE.read_bytes()).hexdigest()
    if (Path(edgeoff.__file__).parents[1] / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}", prov["commit"])
        assert isinstance(prov["commit_dirty"], bool)
    assert set(first["run"]) == {"started_at", "seconds", "host", "cpus"}
    assert datetime.fromisoformat(first["run"]["started_at"]).tzinfo is not None
    assert first["run"]["seconds"] > 0
    for body in bodies:
        body.pop("run")
    assert json.dumps(bodies[0]) == json.dumps(bodies[1])  # byte for byte, once `run` is set aside


def test_per_rep_gives_every_repetitions_values(tmp_path: Path) -> None:
    assert main(["evaluate", "--out", str(tmp_path / "r"), "--per-rep", *SMALL]) == 0
    data = _results(tmp_path / "r")
    assert data["config"]["per_rep"] is True
    for record in data["results"]:
        reps = record["per_rep"]
        assert set(reps) == {"rt_s", "battery_pct", "availability_pct", "failures"}
        assert all(len(values) == 3 for values in reps.values())
        assert statistics.fmean(reps["rt_s"]) == pytest.approx(record["rt_s"]["mean"])
        assert statistics.stdev(reps["battery_pct"]) == pytest.approx(record["battery_pct"]["std"])
    assert main(["evaluate", "--out", str(tmp_path / "s"), *SMALL]) == 0
    assert all("per_rep" not in r for r in _results(tmp_path / "s")["results"])


def test_the_default_sensitivity_section_has_a_detection_time_column(tmp_path: Path) -> None:
    assert main(["evaluate", "--out", str(tmp_path / "r"), *SMALL]) == 0  # default: two time compressions
    report = (tmp_path / "r" / "report.md").read_text()
    assert "## Sensitivity: time compression\n" in report
    header = (
        "| dataset | engine | time compression | detection (s) | failures | RT (s) | failures / 1000 apps |"
    )
    assert header in report
    assert re.search(r"^\| DS1 \| mdp-svr \| 360 \| 1\.5 \| markov \| [0-9.]+ \| [0-9.]+ \|$", report, re.M)


def test_the_progress_names_the_job_being_simulated() -> None:
    jobs = [(0, "mdp-svr"), (0, "kubehybrid"), (1, "mdp-svr"), (1, "kubehybrid")]
    labels = ["1 h/app, 1.5 s detection", "0.1 h/app, 1.5 s detection"]
    assert running_label(jobs, {}, 2, 2, labels) == "mdp-svr · 1 h/app, 1.5 s detection +1"
    done = {(0, "mdp-svr"): 2, (0, "kubehybrid"): 1}
    assert running_label(jobs, done, 2, 1, labels) == "kubehybrid · 1 h/app, 1.5 s detection"
    assert running_label(jobs, dict.fromkeys(jobs, 2), 2, 2, labels) == ""
