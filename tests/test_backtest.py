"""Forecasting backtests and per-site selection: forecasters, backtest and `edgeoff traces backtest`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from edgeoff.errors import PredictionError
from edgeoff.forecasting import (
    EWMForecaster,
    LastValueForecaster,
    MarkovForecaster,
    RecentHistoryForecaster,
    Selection,
    SVRFeaturesForecaster,
    TrainingMeanForecaster,
    default_candidates,
    select_forecaster,
    walk_forward,
)
from edgeoff.forecasting.backtest import BacktestSettings, backtest_node, hourly_states, training_model
from edgeoff.forecasting.metrics import brier_score, reliability_table
from edgeoff.forecasting.prototype import prototype_contrast
from edgeoff.forecasting.svr import windows_since_failure
from edgeoff.traces import NodeTrace, TwoStateModel, load_node_table
from launcher.cli import main

FloatArray = npt.NDArray[np.float64]


def noise_series(n: int = 400, seed: int = 0) -> FloatArray:
    """Independent days around 0.9: nothing to learn, the training mean is the best one can do."""
    return np.random.default_rng(seed).uniform(0.75, 1.0, n)


def weekly_series(n: int = 400, seed: int = 0) -> FloatArray:
    """A weekly maintenance pattern plus small noise: lag features predict it, naive forecasters cannot."""
    week = np.array([1.0, 0.95, 0.9, 1.0, 0.6, 0.85, 1.0])
    rng = np.random.default_rng(seed)
    return np.clip(np.resize(week, n) + rng.normal(0.0, 0.01, n), 0.0, 1.0)


def assert_never_lost_to_naive(selection: Selection) -> None:
    naive_mae = min(selection.inner_errors[name].mae for name in ("last-value", "training-mean"))
    if not selection.naive:
        assert selection.inner_errors[selection.name].mae < naive_mae


# --------------------------------------------------------------------------- selection


def test_selection_keeps_a_naive_forecaster_when_the_models_only_fit_noise() -> None:
    series = noise_series()
    selection = select_forecaster(series, default_candidates(None, 24.0))
    assert selection.naive
    assert selection.name == "training-mean"
    assert "did not beat it" in selection.reason
    assert_never_lost_to_naive(selection)


def test_selection_picks_a_structured_model_that_beats_the_naive_ones() -> None:
    selection = select_forecaster(weekly_series(), default_candidates(None, 24.0))
    assert not selection.naive
    assert selection.name in {"svr", "svr-features"}
    assert "beats the best naive" in selection.reason
    assert_never_lost_to_naive(selection)


@pytest.mark.parametrize("seed", range(6))
def test_selection_never_picks_a_model_that_lost_to_a_naive_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mix = rng.uniform()
    series = np.clip(mix * weekly_series(300, seed) + (1 - mix) * noise_series(300, seed), 0.0, 1.0)
    assert_never_lost_to_naive(select_forecaster(series, default_candidates(500.0, 24.0)))


class CopyOfLastValue(EWMForecaster):
    """A model-based forecaster that forecasts exactly like last value (alpha = 1): a tie, never a win."""

    name = "copy"

    def __init__(self) -> None:
        super().__init__(1.0, lags=1)


def test_a_tie_with_a_naive_forecaster_goes_to_the_naive_one() -> None:
    series = np.repeat(np.random.default_rng(3).uniform(0.5, 1.0, 40), 10)  # persistent: last value is good
    selection = select_forecaster(series, [CopyOfLastValue(), LastValueForecaster()], min_improvement=0.0)
    assert selection.inner_errors["copy"] == selection.inner_errors["last-value"]
    assert selection.name == "last-value"


def test_selection_adds_the_naive_references_and_refits_on_the_training_part() -> None:
    series = noise_series(200)
    selection = select_forecaster(series, [EWMForecaster(0.5, lags=3)], train_fraction=0.5)
    assert set(selection.inner_errors) == {"ewm", "last-value", "training-mean"}
    assert isinstance(selection.forecaster, TrainingMeanForecaster)
    assert selection.forecaster.mean_ == pytest.approx(series[:100].mean())


def test_selection_excludes_a_candidate_the_training_part_is_too_short_for() -> None:
    selection = select_forecaster(noise_series(40), [SVRFeaturesForecaster(7, context=60)])
    assert "svr-features" in selection.excluded
    assert selection.naive


def test_selection_rejects_duplicate_names_and_bad_fractions() -> None:
    with pytest.raises(PredictionError, match="distinct"):
        select_forecaster(noise_series(), [LastValueForecaster(), LastValueForecaster()])
    with pytest.raises(PredictionError, match="inner_fraction"):
        select_forecaster(noise_series(), [LastValueForecaster()], inner_fraction=1.0)


# --------------------------------------------------------------------------- forecasters


def test_windows_since_failure_counts_back_to_the_newest_failure_and_caps() -> None:
    windows = np.array([[1.0, 1.0, 0.5, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.9]])
    assert windows_since_failure(windows).tolist() == [1.0, 4.0, 0.0]


def test_svr_features_reads_its_context_and_forecasts_in_range() -> None:
    forecaster = SVRFeaturesForecaster(7, context=30)
    assert forecaster.lags == 30
    result = walk_forward(weekly_series(), forecaster)
    assert 0.0 <= result.predictions.min() <= result.predictions.max() <= 1.0
    one = forecaster.predict_next(weekly_series()[-30:])
    assert one == pytest.approx(forecaster.predict_many(weekly_series()[-30:].reshape(1, -1))[0])


def test_ewm_weights_sum_to_one_and_alpha_is_chosen_on_the_history() -> None:
    persistent = np.repeat(np.random.default_rng(1).uniform(0.0, 1.0, 60), 20)
    assert EWMForecaster(lags=10).fit(persistent).alpha_ == pytest.approx(0.9)
    chosen = EWMForecaster(lags=10).fit(noise_series()).alpha_
    assert chosen is not None
    assert chosen <= 0.1
    assert EWMForecaster(0.3, lags=5).fit([0.7]).predict_next([0.7] * 5) == pytest.approx(0.7)


def test_markov_forecaster_is_the_two_state_transition() -> None:
    model = TwoStateModel(mttf_h=100.0, mttr_h=5.0)
    markov = MarkovForecaster(model, 1.0)
    assert markov.predict_many([[1.0], [0.0]]).tolist() == pytest.approx(
        [math.exp(-1 / 100), 1 - math.exp(-1 / 5)]
    )


def test_recent_history_bounds_what_the_wrapped_forecaster_sees() -> None:
    wrapped = RecentHistoryForecaster(TrainingMeanForecaster(), max_samples=10)
    series = np.concatenate([np.zeros(100), np.ones(10)])
    assert wrapped.fit(series).predict_next([]) == 1.0
    assert wrapped.name == "training-mean"


# --------------------------------------------------------------------------- scores and series


def test_brier_score_of_a_perfect_forecaster_is_zero() -> None:
    outcomes = np.random.default_rng(0).integers(0, 2, 500).astype(np.float64)
    assert brier_score(outcomes, outcomes) == 0.0
    assert brier_score(np.full(500, 0.5), outcomes) == pytest.approx(0.25)


def test_calibration_bins_count_every_forecast_once() -> None:
    rng = np.random.default_rng(0)
    probabilities = np.concatenate([rng.uniform(0, 1, 997), [0.0, 1.0, 0.5]])
    outcomes = (rng.uniform(0, 1, probabilities.size) < probabilities).astype(np.float64)
    table = reliability_table(probabilities, outcomes, bins=10)
    assert len(table) == 10
    assert sum(b.count for b in table) == probabilities.size
    for b in table:
        assert b.mean_predicted is not None
        assert b.low <= b.mean_predicted <= b.high
    empty = reliability_table(np.array([0.95, 0.99]), np.array([1.0, 1.0]), bins=4)
    assert [b.count for b in empty] == [0, 0, 0, 2]
    assert empty[0].mean_predicted is None


def test_hourly_states_mark_every_hour_an_outage_touches() -> None:
    trace = NodeTrace(node="19_1", outages=np.array([[0.5, 2.0], [5.0, 5.0], [10.2, 10.4]]))
    first_hour, states = hourly_states(trace)
    assert first_hour == 0
    assert states.tolist() == [0, 0, 1, 1, 1, 0, 1, 1, 1, 1, 0]


def test_training_model_uses_only_outages_ended_by_the_cutoff() -> None:
    trace = NodeTrace(node="19_1", outages=np.array([[0.0, 1.0], [11.0, 13.0], [20.0, 40.0]]))
    model = training_model(trace, 30.0)
    assert model == TwoStateModel(mttf_h=10.0, mttr_h=1.5)
    assert training_model(trace, 12.0) is None


def test_random_split_interpolates_a_trend_that_the_chronological_split_cannot_forecast() -> None:
    rng = np.random.default_rng(0)
    trend = np.clip(np.linspace(1.0, 0.4, 400) + rng.normal(0.0, 0.01, 400), 0.0, 1.0)
    contrast = prototype_contrast(trend, seed=0)
    assert contrast.random_split.svr_mae < 0.05
    assert contrast.chronological.svr_mae > 3 * contrast.random_split.svr_mae
    assert contrast.random_split.svr_mae < contrast.random_split.best_constant_mae
    assert prototype_contrast(trend, seed=0) == contrast  # seeded


# --------------------------------------------------------------------------- a real node


def test_backtest_of_a_packaged_node_is_complete_and_json_ready() -> None:
    result = backtest_node(load_node_table()["22_0"])
    document = json.loads(json.dumps(result.to_dict()))
    assert set(document) == {
        "node",
        "failures",
        "train_mttf_h",
        "train_mttr_h",
        "daily",
        "hourly",
        "prototype",
    }
    hourly = document["hourly"]
    assert set(hourly["forecasters"]) == {
        "svr", "svr-features", "last-value", "training-mean", "ewm", "mttf", "markov", "belief",
    }  # fmt: skip
    assert all("brier" in scores for scores in hourly["forecasters"].values())
    for table in hourly["calibration"].values():
        assert sum(b["count"] for b in table) == hourly["n_test"]
    assert "markov" not in document["daily"]["forecasters"]
    assert "belief" in document["daily"]["forecasters"]
    assert document["hourly"]["selection"]["chosen"] in hourly["forecasters"]
    assert result.hourly.n_train + result.hourly.n_test == result.hourly.n_values


def test_backtest_settings_are_validated() -> None:
    with pytest.raises(PredictionError, match="train_fraction"):
        BacktestSettings(train_fraction=1.0)


# --------------------------------------------------------------------------- `edgeoff traces backtest`

CLI_NODES = "22_0,16_80,5_158"


def test_cli_backtest_writes_json_markdown_and_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert main(["traces", "backtest", "--nodes", CLI_NODES, "--out", str(out)]) == 0
    assert sorted(path.name for path in out.iterdir()) == ["backtest.json", "backtest.md", "backtest.png"]
    assert [path.name for path in tmp_path.iterdir()] == ["report"]  # no temporary folder left
    document = json.loads((out / "backtest.json").read_text())
    assert set(document) == {
        "format", "acknowledgement", "source", "settings", "hourly_state_rule", "summary", "nodes",
    }  # fmt: skip
    assert [node["node"] for node in document["nodes"]] == CLI_NODES.split(",")
    for node in document["nodes"]:
        for granularity in ("daily", "hourly"):
            run = node[granularity]
            assert {"forecasters", "best", "svr_beats_naive", "selection"} <= set(run)
            assert {"chosen", "reason", "inner", "test"} <= set(run["selection"])
        assert {"random_split", "chronological", "constant_beats_chronological"} <= set(node["prototype"])
    markdown = (out / "backtest.md").read_text()
    for section in ("## Daily", "## Hourly", "## Per-site selection", "## The prototype's method"):
        assert section in markdown
    assert (out / "backtest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stdout = capsys.readouterr().out
    assert stdout.splitlines()[0].split()[0] == "node"
    assert "backtested 3 nodes" in stdout


def test_cli_backtest_replaces_the_files_of_an_existing_folder(tmp_path: Path) -> None:
    (tmp_path / "backtest.md").write_text("old")
    (tmp_path / "notes.txt").write_text("keep")
    assert main(["traces", "backtest", "--nodes", "22_0", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "backtest.md").read_text().startswith("# Availability forecasting backtest")
    assert (tmp_path / "notes.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("nodes", ["22_0,2_3", "99_1", "seven"])
def test_cli_backtest_unknown_node_is_one_line_exit_2_and_writes_nothing(
    nodes: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert main(["traces", "backtest", "--nodes", nodes, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("edgeoff traces: error: ")
    assert captured.err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
