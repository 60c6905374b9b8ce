"""Tests of the availability predictors: hyperparameters, lag features, PaperSVR, forecasters, backtests."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import check_estimator

from edgeoff.errors import PredictionError
from edgeoff.forecasting import (
    Backtest,
    Forecaster,
    LastValueForecaster,
    MTTFForecaster,
    PaperSVR,
    SVRForecaster,
    TrainingMeanForecaster,
    compare_forecasters,
    lagged,
    paper_hyperparameters,
    walk_forward,
)
from edgeoff.forecasting.svr import C_FLOOR


def periodic_series(n: int = 300, seed: int = 0) -> npt.NDArray[np.float64]:
    """A weekly pattern (a maintenance dip every 7th day) plus small noise, in [0, 1]."""
    rng = np.random.default_rng(seed)
    week = np.array([1.0, 0.95, 0.9, 1.0, 0.6, 0.85, 1.0])
    return np.clip(np.resize(week, n) + rng.normal(0.0, 0.02, n), 0.0, 1.0)


def ar1_series(n: int = 300, seed: int = 1) -> npt.NDArray[np.float64]:
    """An AR(1) process around 0.5 (phi = 0.9), clipped to [0, 1]."""
    rng = np.random.default_rng(seed)
    values = np.empty(n)
    values[0] = 0.5
    for t in range(1, n):
        values[t] = 0.5 + 0.9 * (values[t - 1] - 0.5) + rng.normal(0.0, 0.08)
    return np.clip(values, 0.0, 1.0)


class RecordingForecaster:
    """Predicts the mean of the window it is given and records every window it saw."""

    name = "recording"

    def __init__(self, lags: int = 3) -> None:
        self._lags = lags
        self.windows: list[npt.NDArray[np.float64]] = []
        self.fits: list[int] = []

    @property
    def lags(self) -> int:
        return self._lags

    def fit(self, history: npt.ArrayLike) -> RecordingForecaster:
        self.fits.append(np.asarray(history).size)
        return self

    def predict_next(self, recent: npt.ArrayLike) -> float:
        window = np.asarray(recent, dtype=np.float64)[-self._lags :]
        self.windows.append(window.copy())
        return float(window.mean())

    def predict_many(self, recent_windows: npt.ArrayLike) -> npt.NDArray[np.float64]:
        windows = np.asarray(recent_windows, dtype=np.float64)
        self.windows.extend(row.copy() for row in windows)
        return np.asarray(windows.mean(axis=1), dtype=np.float64)


# paper_hyperparameters


def test_paper_hyperparameters_hand_computed() -> None:
    # y = [0, 1, 0, 1]: mean 0.5, σ 0.5, 3σ = 1.5, m = 4
    c, epsilon = paper_hyperparameters([0.0, 1.0, 0.0, 1.0])
    assert c == pytest.approx(2.0)  # max(|0.5 + 1.5|, |0.5 - 1.5|)
    assert epsilon == pytest.approx(1.5 * math.sqrt(math.log(4) / 4))  # 0.88306
    assert epsilon == pytest.approx(0.883058, abs=1e-6)


def test_paper_hyperparameters_constant_and_all_down() -> None:
    assert paper_hyperparameters([0.8] * 10) == pytest.approx((0.8, 0.0))
    assert paper_hyperparameters([0.0] * 10) == (C_FLOOR, 0.0)


@pytest.mark.parametrize("y", [[], [0.5], [[0.5, 0.5]], [0.5, np.nan]])
def test_paper_hyperparameters_rejects_degenerate_targets(y: npt.ArrayLike) -> None:
    with pytest.raises(PredictionError):
        paper_hyperparameters(y)


# lagged


def test_lagged_shapes_and_content() -> None:
    series = np.arange(6) / 10  # 0.0 .. 0.5
    X, y = lagged(series, 3)
    assert X.shape == (3, 3)
    assert y.shape == (3,)
    np.testing.assert_allclose(X, [[0.0, 0.1, 0.2], [0.1, 0.2, 0.3], [0.2, 0.3, 0.4]])
    np.testing.assert_allclose(y, [0.3, 0.4, 0.5])
    assert X.flags.c_contiguous
    assert X.flags.writeable


@pytest.mark.parametrize(("series", "lags"), [([1.0, 1.0, 1.0], 3), ([1.0, 1.0, 1.0], 0)])
def test_lagged_rejects_too_short_or_no_lags(series: list[float], lags: int) -> None:
    with pytest.raises(PredictionError):
        lagged(series, lags)


# PaperSVR


def test_paper_svr_follows_sklearn_conventions() -> None:
    X, y = lagged(periodic_series(100), 7)
    model = PaperSVR()
    assert model.get_params() == {"gamma": "scale", "bounds": (0.0, 1.0)}
    with pytest.raises(NotFittedError):
        model.predict(X)
    assert model.fit(X, y) is model
    c, epsilon = paper_hyperparameters(y)
    assert (model.C_, model.epsilon_) == (c, epsilon)
    assert c == model.svr_.C
    assert model.svr_.epsilon == epsilon
    assert model.n_features_in_ == 7
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    assert not hasattr(copy, "svr_")
    assert copy.set_params(gamma=0.5) is copy
    assert copy.gamma == 0.5
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:, :3])


def test_paper_svr_predictions_clipped_to_bounds() -> None:
    X = np.linspace(0.0, 1.0, 20).reshape(-1, 1)
    y = X[:, 0].copy()
    raw = PaperSVR(bounds=None).fit(X, y).predict(X)
    assert raw.min() < 0.4
    assert raw.max() > 0.6
    clipped = PaperSVR(bounds=(0.4, 0.6)).fit(X, y).predict(X)
    np.testing.assert_allclose(clipped, np.clip(raw, 0.4, 0.6))
    far = PaperSVR().fit(X, y).predict(np.array([[-50.0], [0.5], [60.0]]))
    assert np.all((far >= 0.0) & (far <= 1.0))


def test_predict_unchecked_matches_predict() -> None:
    X, y = lagged(ar1_series(200), 7)
    model = PaperSVR().fit(X, y)
    np.testing.assert_allclose(model.predict_unchecked(X), model.predict(X), atol=1e-10)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")  # array-API and pandas checks
def test_paper_svr_passes_sklearn_estimator_checks() -> None:
    check_estimator(PaperSVR(bounds=None))
    # the availability default clips to [0, 1], which the generic regression check's targets leave
    check_estimator(
        PaperSVR(),
        expected_failed_checks={"check_regressors_train": "targets outside [0, 1] are clipped"},
    )


# forecasters


def test_forecasters_satisfy_the_protocol() -> None:
    forecasters: list[Forecaster] = [
        SVRForecaster(),
        LastValueForecaster(),
        TrainingMeanForecaster(),
        MTTFForecaster(mttf_h=500.0, window_h=24.0),
    ]
    assert [f.name for f in forecasters] == ["svr", "last-value", "training-mean", "mttf"]
    assert [f.lags for f in forecasters] == [7, 1, 0, 0]


def test_svr_beats_training_mean_on_structured_series() -> None:
    for series in (periodic_series(), ar1_series()):
        svr, mean = compare_forecasters(series, [SVRForecaster(), TrainingMeanForecaster()])
        assert svr.mae < mean.mae
        assert svr.rmse < mean.rmse


def test_svr_beats_last_value_on_weekly_pattern() -> None:
    svr, last = compare_forecasters(periodic_series(), [SVRForecaster(), LastValueForecaster()])
    assert svr.mae < 0.5 * last.mae


@pytest.mark.parametrize("level", [1.0, 0.0, 0.73])
def test_svr_on_constant_series_predicts_the_constant(level: float) -> None:
    series = np.full(60, level)
    forecaster = SVRForecaster().fit(series)
    assert forecaster.predict_next(series[-7:]) == pytest.approx(level)
    backtest = walk_forward(series, SVRForecaster())
    np.testing.assert_allclose(backtest.predictions, level)
    assert backtest.mae == pytest.approx(0.0)


def test_svr_predict_next_equals_predict_many_and_uses_last_lags() -> None:
    series = ar1_series(120)
    forecaster = SVRForecaster(lags=5).fit(series)
    windows = np.lib.stride_tricks.sliding_window_view(series, 5)[-10:]
    batch = forecaster.predict_many(windows)
    one_by_one = [forecaster.predict_next(np.concatenate([[0.123, 0.456], row])) for row in windows]
    np.testing.assert_allclose(one_by_one, batch, atol=1e-12)
    assert np.all((batch >= 0.0) & (batch <= 1.0))


def test_forecaster_misuse_raises_prediction_error() -> None:
    with pytest.raises(PredictionError, match="not fitted"):
        SVRForecaster().predict_next(np.ones(7))
    with pytest.raises(PredictionError, match="not fitted"):
        TrainingMeanForecaster().predict_next(np.ones(1))
    fitted = SVRForecaster(lags=7).fit(periodic_series(50))
    with pytest.raises(PredictionError, match="at least 7"):
        fitted.predict_next(np.ones(6))
    with pytest.raises(PredictionError, match="shape"):
        fitted.predict_many(np.ones((3, 6)))
    with pytest.raises(PredictionError):
        fitted.predict_many(np.full((3, 7), np.nan))
    with pytest.raises(PredictionError, match="too short"):
        SVRForecaster(lags=7).fit(np.ones(8))
    with pytest.raises(PredictionError):
        SVRForecaster(lags=0)


def test_mttf_forecaster_is_the_reliability_over_the_window() -> None:
    forecaster = MTTFForecaster(mttf_h=480.0, window_h=24.0).fit(np.ones(10))
    assert forecaster.predict_next(np.empty(0)) == pytest.approx(math.exp(-0.05))
    np.testing.assert_allclose(forecaster.predict_many(np.empty((4, 0))), math.exp(-0.05))
    for mttf_h, window_h in [(0.0, 24.0), (100.0, -1.0), (math.nan, 24.0)]:
        with pytest.raises(PredictionError):
            MTTFForecaster(mttf_h=mttf_h, window_h=window_h)


def test_training_mean_and_last_value() -> None:
    history = np.array([1.0, 0.5, 1.0, 0.5])
    assert TrainingMeanForecaster().fit(history).predict_next(np.empty(0)) == pytest.approx(0.75)
    assert LastValueForecaster().fit(history).predict_next(history) == 0.5
    np.testing.assert_array_equal(LastValueForecaster().predict_many([[0.2], [0.9]]), [0.2, 0.9])


# walk_forward


def test_walk_forward_uses_only_past_values() -> None:
    # alternating 0, 1, 0, 1: yesterday is always the opposite of today, so a last-value forecast that really
    # looks only at the past is wrong by exactly 1 every day; any peek at series[t] would make it right
    series = np.resize([0.0, 1.0], 50)
    backtest = walk_forward(series, LastValueForecaster())
    assert backtest.mae == 1.0
    assert backtest.rmse == 1.0
    refitted = walk_forward(series, LastValueForecaster(), refit_every=3)
    assert refitted.mae == 1.0


@pytest.mark.parametrize("refit_every", [None, 1, 4])
def test_walk_forward_windows_are_the_true_past(refit_every: int | None) -> None:
    series = np.linspace(0.0, 1.0, 40)
    recorder = RecordingForecaster(lags=3)
    backtest = walk_forward(series, recorder, refit_every=refit_every)
    assert len(recorder.windows) == backtest.indices.size
    for t, window in zip(backtest.indices, recorder.windows, strict=True):
        np.testing.assert_array_equal(window, series[t - 3 : t])
    if refit_every is None:
        assert recorder.fits == [32]
    else:
        # refits on series[:t] every refit_every test days, only ever on the past
        assert recorder.fits == [32, *range(32 + refit_every, 40, refit_every)]


def test_walk_forward_split_is_chronological() -> None:
    series = ar1_series(101)
    backtest = walk_forward(series, SVRForecaster())
    n_train = int(101 * 0.8)
    np.testing.assert_array_equal(backtest.indices, np.arange(n_train, 101))
    np.testing.assert_array_equal(backtest.actual, series[n_train:])
    assert backtest.predictions.shape == (101 - n_train,)
    custom = walk_forward(series, TrainingMeanForecaster(), train_fraction=0.5)
    np.testing.assert_array_equal(custom.indices, np.arange(50, 101))
    np.testing.assert_allclose(custom.predictions, series[:50].mean())


def test_compare_forecasters_share_test_days() -> None:
    backtests = compare_forecasters(
        periodic_series(80),
        [SVRForecaster(), LastValueForecaster(), TrainingMeanForecaster(), MTTFForecaster(500.0, 24.0)],
    )
    assert [b.name for b in backtests] == ["svr", "last-value", "training-mean", "mttf"]
    for backtest in backtests[1:]:
        np.testing.assert_array_equal(backtest.indices, backtests[0].indices)


def test_backtest_is_frozen_and_read_only() -> None:
    backtest = walk_forward(periodic_series(40), LastValueForecaster())
    assert isinstance(backtest, Backtest)
    with pytest.raises(dataclasses.FrozenInstanceError):
        backtest.mae = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        backtest.predictions[0] = 0.0


@pytest.mark.parametrize(
    "series",
    [
        pytest.param(np.r_[np.ones(30), np.nan, np.ones(10)], id="nan"),
        pytest.param(np.r_[np.ones(30), 1.2, np.ones(10)], id="above-one"),
        pytest.param(np.r_[np.ones(30), -0.1, np.ones(10)], id="negative"),
        pytest.param(np.r_[np.ones(30), np.inf, np.ones(10)], id="inf"),
        pytest.param(np.ones((20, 2)), id="2-d"),
        pytest.param(np.ones(8), id="too-short-for-7-lags"),
        pytest.param(np.ones(1), id="one-value"),
        pytest.param(["up", "down"], id="not-numeric"),
    ],
)
def test_bad_series_raise_prediction_error(series: npt.ArrayLike) -> None:
    with pytest.raises(PredictionError):
        walk_forward(series, SVRForecaster())
    with pytest.raises(PredictionError):
        SVRForecaster().fit(series)


@pytest.mark.parametrize(("train_fraction", "refit_every"), [(0.0, None), (1.0, None), (0.8, 0)])
def test_walk_forward_rejects_bad_parameters(train_fraction: float, refit_every: int | None) -> None:
    with pytest.raises(PredictionError):
        walk_forward(
            periodic_series(50), LastValueForecaster(), train_fraction=train_fraction, refit_every=refit_every
        )
