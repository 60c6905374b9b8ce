"""The belief forecaster: the chain's stay-up probability per task, its window forecast, and its selection."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.linalg import expm

from edgeoff.errors import PredictionError
from edgeoff.forecasting import default_candidates, select_forecaster, walk_forward
from edgeoff.forecasting.backtest import backtest_node
from edgeoff.forecasting.belief import BeliefForecaster, ChainBelief
from edgeoff.traces import TwoStateModel, load_node_table
from prediction_worker.availability_trace import SitePredictor


def up_probability(observed_up: float, since: float, mttf: float, mttr: float) -> float:
    """P(up after `since` | P(up) = observed_up now), from the generator's matrix exponential (reference)."""
    lam, mu = 1.0 / mttf, 1.0 / mttr
    transition = expm(np.array([[-lam, lam], [mu, -mu]]) * since)
    return float(observed_up * transition[0, 0] + (1.0 - observed_up) * transition[1, 0])


def test_the_per_task_probability_is_up_now_times_no_failure_during_the_task() -> None:
    belief = ChainBelief(np.array([np.inf, 100.0, 20.0]), np.array([0.0, 5.0, 8.0]))  # phone, two sites
    observed = np.array([[True, True, False], [True, False, True]])  # (R, S)
    since = np.array([[0.0, 3.0, 12.0], [0.0, 40.0, 0.5]])
    duration = np.array([[2.0], [0.25]])  # one task per repetition
    got = belief.stays_up_probability(observed, since, duration)
    assert got.shape == (2, 3)
    for r in range(2):
        assert got[r, 0] == 1.0  # the phone never fails
        for s in (1, 2):
            mttf, mttr = belief.mean_up[s], belief.mean_down[s]
            expected = up_probability(float(observed[r, s]), since[r, s], mttf, mttr) * np.exp(
                -duration[r, 0] / mttf
            )
            assert got[r, s] == pytest.approx(expected, abs=1e-12)


def test_what_the_belief_knows_and_forgets() -> None:
    belief = ChainBelief(np.array([100.0]), np.array([5.0]))
    steady = 100.0 / 105.0
    assert belief.p_up_now(False, 0.0)[0] == 0.0  # just seen down: down
    assert belief.p_up_now(True, 0.0)[0] == 1.0
    assert belief.p_up_now(False, 1e6)[0] == pytest.approx(steady)  # long ago: the steady state
    assert belief.p_up_now(True, 1e6)[0] == pytest.approx(steady)
    # longer tasks are riskier, and an old "down" is more hopeful than a fresh one
    assert belief.stays_up_probability(True, 0.0, 10.0)[0] < belief.stays_up_probability(True, 0.0, 1.0)[0]
    assert belief.p_up_now(False, 10.0)[0] > belief.p_up_now(False, 1.0)[0] > 0.0
    # a site that is repaired at once: the observation at age 0, the chain after (no 0 x inf)
    instant = ChainBelief(np.array([100.0]), np.array([0.0]))
    assert instant.p_up_now(False, 0.0)[0] == 0.0
    assert instant.p_up_now(False, 0.5)[0] == 1.0


def test_chains_come_from_the_training_models_in_simulated_seconds() -> None:
    models = [None, TwoStateModel(mttf_h=86.8, mttr_h=8.7)]
    belief = ChainBelief.from_models(models, time_compression=3600.0)  # one trace hour per second
    np.testing.assert_allclose(belief.mean_up, [np.inf, 86.8])
    np.testing.assert_allclose(belief.mean_down, [0.0, 8.7])
    faster = ChainBelief.from_models(models, time_compression=7200.0)
    assert faster.mean_up[1] == pytest.approx(43.4)


@pytest.mark.parametrize(
    ("up", "down", "match"),
    [
        ([1.0, 2.0], [1.0], "must be equal"),
        ([0.0], [1.0], "mean up times"),
        ([1.0], [-1.0], "mean up times"),
        ([np.nan], [1.0], "mean up times"),
    ],
)
def test_bad_chains_are_one_error(up: list[float], down: list[float], match: str) -> None:
    with pytest.raises(PredictionError, match=match):
        ChainBelief(np.array(up), np.array(down))


def test_bad_queries_are_one_error() -> None:
    belief = ChainBelief(np.array([10.0]), np.array([1.0]))
    with pytest.raises(PredictionError, match="since"):
        belief.p_up_now(True, -1.0)
    with pytest.raises(PredictionError, match="durations"):
        belief.stays_up_probability(True, 0.0, np.inf)
    with pytest.raises(PredictionError, match="time compression"):
        ChainBelief.from_models([None], 0.0)


def test_the_window_forecast_is_the_chains_expected_availability_of_the_next_window() -> None:
    model = TwoStateModel(mttf_h=50.0, mttr_h=5.0)
    forecaster = BeliefForecaster(model, window_h=24.0).fit(np.ones(10))
    for start in (1.0, 0.0, 0.7):
        expected = quad(lambda t, s=start: up_probability(s, t, 50.0, 5.0), 0.0, 24.0)[0] / 24.0
        assert forecaster.predict_next(np.array([0.2, start])) == pytest.approx(expected, abs=1e-4)
    windows = np.array([[1.0], [0.0], [0.7]])
    np.testing.assert_allclose(
        forecaster.predict_many(windows), [forecaster.predict_next(w) for w in windows], rtol=1e-12
    )
    assert forecaster.lags == 1
    assert BeliefForecaster(None, 24.0).predict_next(np.array([0.0])) == 1.0
    with pytest.raises(PredictionError, match="window_h"):
        BeliefForecaster(model, 0.0)


def chain_driven_series(n: int, model: TwoStateModel, window_h: float, seed: int = 0) -> np.ndarray:
    """Mostly what the chain implies after the last window (belief's exact case), now and then, at random,
    a shock: the median of the next window is belief's forecast, which MAE rewards."""
    forecaster = BeliefForecaster(model, window_h)
    rng = np.random.default_rng(seed)
    series = np.empty(n)
    series[0] = 0.8
    for i in range(1, n):
        shock = rng.random() < 0.3
        series[i] = rng.uniform(0.3, 1.0) if shock else forecaster.predict_next(series[i - 1 : i])
    return series


def test_the_selection_picks_belief_only_when_it_beats_the_naive_forecasters() -> None:
    model = TwoStateModel(mttf_h=50.0, mttr_h=5.0)
    series = chain_driven_series(400, model, 24.0)
    candidates = default_candidates(model.mttf_h, 24.0, chain=model)
    assert [c.name for c in candidates][-1] == "belief"
    assert "belief" not in [c.name for c in default_candidates(model.mttf_h, 24.0)]
    chosen = select_forecaster(series, candidates)
    assert chosen.name == "belief"
    assert chosen.inner_errors["belief"].mae < 0.99 * chosen.inner_errors["last-value"].mae
    # on a series the chain does not explain (a weekly maintenance pattern), it is not chosen
    weekly = np.resize([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5], 400)
    assert select_forecaster(weekly, default_candidates(model.mttf_h, 24.0, chain=model)).name != "belief"


def test_the_worker_offers_belief_and_then_publishes_the_stay_up_probability_of_a_task() -> None:
    model = TwoStateModel(mttf_h=50.0, mttr_h=5.0)
    series = chain_driven_series(120, model, 24.0)
    predictor = SitePredictor(seed_node="19_1", seed=model, window_h=24.0, task_windows=0.5)
    forecast = predictor.forecast(series)
    assert forecast.model == "belief"
    # the detector holds the site up: P(no failure during half a window = 12 trace hours)
    assert forecast.availability == pytest.approx(np.exp(-12.0 / 50.0))
    assert forecast.error_mae is not None
    unseeded = SitePredictor(window_h=24.0).forecast(series)
    assert unseeded.model != "belief"
    with pytest.raises(ValueError, match="task_windows"):
        SitePredictor(seed=model, task_windows=-1.0)


def test_the_backtests_score_belief_beside_the_others() -> None:
    result = backtest_node(load_node_table()["7_1"])
    for run in (result.daily, result.hourly):
        belief = run.score("belief")
        assert belief is not None
        assert 0.0 <= belief.mae <= 1.0
    assert result.hourly.score("belief").brier is not None  # type: ignore[union-attr]
    daily = walk_forward(np.resize([1.0, 0.9], 50), BeliefForecaster(TwoStateModel(100.0, 2.0), 24.0))
    assert daily.name == "belief"
