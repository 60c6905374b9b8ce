"""`edgeoff evaluate --sweep` (the regime map) and the paired differences of the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeoff.evaluation.paired import paired_difference
from launcher.cli import main

TINY = ["--reps", "3", "--apps", "60", "--workers", "1", "--quiet"]


def test_a_small_map_has_one_record_per_cell_and_a_heatmap(tmp_path: Path) -> None:
    out = tmp_path / "map"
    grid = ["--sweep-compressions", "360,36000", "--sweep-detections", "0.3,3"]
    engines = ["--engines", "mdp-svr,kubehybrid"]
    assert main(["evaluate", "--sweep", "--out", str(out), *grid, *engines, *TINY]) == 0
    body = json.loads((out / "regime.json").read_text())
    cells = body["cells"]
    assert {(c["time_compression"], c["detection_s"]) for c in cells} == {
        (360.0, 0.3),
        (36000.0, 0.3),
        (360.0, 3.0),
        (36000.0, 3.0),
    }
    for c in cells:
        assert set(c["engines"]) == {"mdp-svr", "kubehybrid", "mdp-reactive", "mdp-oracle"}
        for figures in c["engines"].values():
            assert figures["rt_s"] > 0
            assert "gap_closed" in figures
        assert c["best_predicting"]["engine"] in (None, "mdp-svr", "kubehybrid")
    assert (out / "regime.png").stat().st_size > 0


@pytest.mark.parametrize(
    "bad",
    [
        ["--sweep-compressions", ""],
        ["--sweep-compressions", "0,3600"],
        ["--sweep-detections", "-1"],
        ["--datasets", "DS1,DS2"],
        ["--engines", "mdp-magic"],
    ],
)
def test_bad_grids_are_one_line_exit_2_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: list[str]
) -> None:
    out = tmp_path / "map"
    try:
        code = main(["evaluate", "--sweep", "--out", str(out), *bad, *TINY])
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    assert code == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .startswith(("edgeoff evaluate: error:", "edgeoff: error"))
    )
    assert not out.exists()


def test_paired_difference_on_hand_numbers() -> None:
    d = paired_difference([10.0, 12.0, 11.0], [9.0, 9.0, 9.0])  # differences 1, 3, 2
    assert d["mean_s"] == pytest.approx(2.0)
    assert d["se_s"] == pytest.approx(1.0 / 3**0.5)
    assert (d["low_s"], d["high_s"]) == pytest.approx((2.0 - 2 / 3**0.5, 2.0 + 2 / 3**0.5))
