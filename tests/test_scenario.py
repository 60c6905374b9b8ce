"""The scenario file: the paper's default loads; bad files give one error naming file, field and reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgeoff.errors import ScenarioError, TraceError
from edgeoff.scenario import default_scenario, load_scenario, parse_scenario
from edgeoff.traces import load_node_table
from launcher.cli import main
from site_daemon.failure_injection import failure_model_for_site

PAPER = (Path(__file__).parents[1] / "edgeoff" / "scenarios" / "paper.toml").read_text()


def test_default_scenario_is_the_papers_setup() -> None:
    s = default_scenario()
    assert s.site_ids == ("md", "ed", "ec", "er", "cd")
    assert s.mips.tolist() == [1000, 5000, 8000, 5000, 12000]
    assert s.network.bandwidth_kbps[0, 2] == 687.5
    assert s.network.bandwidth_kbps[2, 0] == 687.5  # symmetric
    assert s.network.expected_latency_s[0, 4] == pytest.approx(0.254)  # 54 ms + mean jitter 200 ms
    assert s.detection.detection_s == pytest.approx(1.5)
    assert sorted(s.datasets) == ["DS1", "DS2", "DS3", "DS4", "DS5"]
    assert s.dataset("DS1") == {"ed": "7_1", "ec": "19_1", "er": "3_0", "cd": "22_0"}
    assert sum(a.probability for a in s.apps) == pytest.approx(1.0)


def test_dag_levels_and_input_sources() -> None:
    gps = next(a for a in default_scenario().apps if a.name == "GPS")
    names = [t.name for t in gps.tasks]
    assert dict(zip(names, gps.levels, strict=True)) == {
        "CONF_PANEL": 0,
        "GPS": 0,
        "CONTROL": 1,
        "MAPS": 2,
        "TRAFFIC": 2,
        "PATH_CALC": 3,
        "VOICE_SYNTH": 4,
        "GUI": 4,
        "SPEED_TRAP": 4,
    }
    # PATH_CALC's input comes from its deepest predecessor (TRAFFIC, the last listed of MAPS and TRAFFIC)
    assert names[gps.sources[names.index("PATH_CALC")]] == "TRAFFIC"
    assert gps.sources[0] == -1


def test_more_sites_with_links_by_type() -> None:
    text = PAPER.replace(
        '[[sites]]\nid = "cd"',
        '[[sites]]\nid = "ec-2"\ntype = "EC"\nmips = 9000\nmemory_gb = 8\nstorage_gb = 150\n\n'
        '[[sites]]\nid = "cd"',
    )
    s = parse_scenario(text)
    assert len(s.sites) == 6
    i, j = s.site_ids.index("ec"), s.site_ids.index("ec-2")
    assert s.network.bandwidth_kbps[i, j] == 12500  # the EC-EC type link


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("mips = 8000", "mips = -1"), "sites.2.mips"),
        (lambda t: t.replace("probability = 0.45", "probability = 0.5"), "probabilities sum to 1.05"),
        (
            lambda t: t.replace(
                'class = "CI", offloadable = true, after = ["UPDATE_CHESS"]',
                'class = "XX", offloadable = true, after = ["UPDATE_CHESS"]',
            ),
            "unknown class 'XX'",
        ),
        (lambda t: t.replace('ed = "7_1"', 'zz = "7_1"'), "unknown site 'zz'"),
        (lambda t: t.replace("upload_w = 1.3", "upload_w = 1.3\nturbo = true"), "power.turbo"),
        (
            lambda t: t.replace('after = ["LOAD_LIBRARY", "SCAN_FILE"]', 'after = ["OUTPUT"]'),
            "not listed before",
        ),
        (lambda t: t.replace('between = ["EC", "ER"]', 'between = ["EC", "XX"]'), "no link between"),
        (lambda t: t + "\n[[[", "not valid TOML"),
    ],
)
def test_bad_scenario_is_one_clear_error(tmp_path: Path, edit: object, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(edit(PAPER))  # type: ignore[operator]
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    text = str(info.value)
    assert text.startswith(str(path))
    assert message in text
    assert "\n" not in text


def test_missing_file() -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario("/nonexistent/scenario.toml")


def test_unknown_dataset() -> None:
    with pytest.raises(ScenarioError, match="unknown dataset 'DS9'"):
        default_scenario().dataset("DS9")


@pytest.mark.parametrize("raw", [False, True])
def test_unknown_node_names_the_file_and_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest, raw: bool
) -> None:
    """`edgeoff evaluate` with a scenario whose dataset names a node the failure data does not have
    (the packaged node table, or the raw LANL file)."""
    lanl: Path | None = request.getfixturevalue("lanl_path") if raw else None
    path = tmp_path / "bad.toml"
    path.write_text(PAPER.replace('ed = "7_1"', 'ed = "99_1"', 1))
    args = ["evaluate", "--scenario", str(path), "--out", str(tmp_path / "out"), "--quiet"]
    args += ["--datasets", "DS1"] + (["--lanl", str(lanl)] if lanl else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert f"{path}: datasets.DS1.ed: unknown" in err
    assert "99_1" in err
    assert not (tmp_path / "out").exists()


def test_live_failure_injection_names_the_file_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(PAPER.replace('ed = "7_1"', 'ed = "99_1"', 1))
    with pytest.raises(TraceError, match=rf"^{re.escape(str(path))}: datasets\.DS1\.ed: unknown node '99_1'"):
        failure_model_for_site(load_scenario(path), "DS1", "ed", load_node_table())


def test_bandwidth_is_kilobytes_per_second_and_the_old_key_is_read_with_a_warning(tmp_path: Path) -> None:
    assert "bandwidth_kbps" not in PAPER  # the packaged scenario uses the new key
    old = tmp_path / "old.toml"
    old.write_text(PAPER.replace("bandwidth_kbyte_s =", "bandwidth_kbps ="))
    with pytest.warns(FutureWarning, match=rf"^{re.escape(str(old))}: links\.0\.bandwidth_kbps and others: "):
        scenario = load_scenario(old)
    assert scenario.network.bandwidth_kbps.tolist() == default_scenario().network.bandwidth_kbps.tolist()
    both = tmp_path / "both.toml"
    both.write_text(
        PAPER.replace("bandwidth_kbyte_s = 2500", "bandwidth_kbyte_s = 2500\nbandwidth_kbps = 2500", 1)
    )
    with pytest.raises(
        ScenarioError, match=r"links\.0: give bandwidth_kbyte_s or bandwidth_kbps \(deprecated\)"
    ):
        load_scenario(both)


def test_the_edgeoff_command_prints_the_deprecation_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old.toml"
    old.write_text(PAPER.replace("bandwidth_kbyte_s =", "bandwidth_kbps ="))
    args = ["evaluate", "--scenario", str(old), "--apps", "2", "--reps", "1", "--datasets", "DS1"]
    assert main([*args, "--engines", "efpo", "--workers", "1", "--quiet", "--out", str(tmp_path / "o")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "deprecated" in line]
    assert warnings == [
        f"edgeoff: warning: {old}: links.0.bandwidth_kbps and others: bandwidth_kbps is deprecated, "
        "rename it bandwidth_kbyte_s (same value: kilobytes per second)"
    ]
