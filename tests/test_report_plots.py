"""The evaluation's plots as a reader sees them: units, error bars, the paper's figures, a useful range."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.lines import Line2D

from edgeoff.evaluation.report import PUBLISHED, plot_metric

CONFIG = {"apps": 1000, "reps": 100}


def _record(
    dataset: str, engine: str, rt: float, battery: float, avail: tuple[float, float]
) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "engine": engine,
        "setting": 0,
        "rt_s": {"mean": rt, "std": 7.0},
        "battery_pct": {"mean": battery, "std": 0.05},
        "availability_pct": {"mean": avail[0], "std": avail[1]},
    }


RESULTS = [
    _record("DS1", "mdp-svr", 820.0, 97.54, (99.55, 0.9)),  # mean + std above 100 %
    _record("DS1", "kubehybrid", 802.0, 97.62, (99.85, 0.2)),
    _record("DS4", "mdp-svr", 805.0, 97.57, (99.66, 0.5)),
    _record("DS4", "kubehybrid", 786.0, 97.57, (99.57, 0.5)),  # 2.3 % below mdp-svr on DS4
]


def _axes(metric: str, config: dict[str, Any] = CONFIG) -> Any:
    figure = plot_metric(RESULTS, metric, config)
    FigureCanvasAgg(figure).draw()  # type: ignore[no-untyped-call]  # lays out the legend, as savefig does
    return figure, figure.axes[0]


@pytest.mark.parametrize(
    ("metric", "unit"),
    [
        ("rt_s", "response time of 1000 application runs (s)"),
        ("battery_pct", "(%)"),
        ("availability_pct", "(%)"),
    ],
)
def test_the_y_axis_says_the_unit_and_a_note_says_what_the_error_bars_are(metric: str, unit: str) -> None:
    figure, ax = _axes(metric)
    assert unit in ax.get_ylabel()
    note = " ".join(t.get_text() for t in figure.texts)
    assert "standard deviation over the repetitions" in note
    assert "100 repetitions of 1000 application runs" in note


def test_error_bars_above_100_percent_are_not_clipped() -> None:
    _, ax = _axes("availability_pct")
    assert ax.get_ylim()[1] > 99.55 + 0.9  # the whisker's top is inside the axes


def test_the_legend_is_outside_the_axes() -> None:
    figure, ax = _axes("rt_s")
    renderer = figure.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.x0 >= ax.get_window_extent(renderer).x1
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "mdp-svr",
        "kubehybrid",
        "paper (published)",
    ]


def _paper_marks(ax: Any) -> list[tuple[str, float]]:
    return [
        (str(line.get_marker()), float(np.asarray(line.get_ydata())[0]))
        for line in ax.get_lines()
        if isinstance(line, Line2D) and line.get_marker() in ("*", "^", "v")
    ]


def test_the_papers_figures_are_marked_inside_or_at_the_edge() -> None:
    _, ax = _axes("availability_pct")
    marks = _paper_marks(ax)
    published = [
        PUBLISHED[("DS1", "mdp-svr")]["availability_pct"],
        PUBLISHED[("DS1", "kubehybrid")]["availability_pct"],
    ]
    published += [PUBLISHED[("DS4", "kubehybrid")]["availability_pct"]]
    low, high = ax.get_ylim()
    inside = [value for marker, value in marks if marker == "*"]
    assert all(low <= v <= high for v in inside)
    assert len(marks) == len(published)
    _, rt = _axes("rt_s")
    marks = _paper_marks(rt)  # 600 and 760 s far below the range, 950 s far above
    assert sorted(marker for marker, _ in marks) == ["^", "v", "v"]
    low, high = rt.get_ylim()
    assert all(low < value < low + 10 for marker, value in marks if marker == "v")
    texts = [t.get_text() for t in rt.texts]
    assert sorted(texts) == ["600", "760", "950"]  # each value outside the range beside its triangle


def test_the_papers_response_times_are_not_compared_with_another_number_of_applications() -> None:
    _, ax = _axes("rt_s", {"apps": 40, "reps": 3})
    assert _paper_marks(ax) == []
    assert "response time of 40 application runs (s)" in ax.get_ylabel()


def test_the_response_time_range_shows_a_2_percent_difference() -> None:
    _, ax = _axes("rt_s")
    low, high = ax.get_ylim()
    assert low > 0.5 * 786.0  # not from zero
    assert (805.0 - 786.0) / (high - low) > 0.1  # a tenth of the axis or more
