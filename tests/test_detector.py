"""Pure tests of the prediction worker's core (injected time): detectors, trace, forecast, shards."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from edgeoff.traces import load_node_table
from prediction_worker.availability_trace import SitePredictor, SiteTrace, seed_model, seed_windows
from prediction_worker.detector import Detector, FixedTimeoutDetector, PhiAccrualDetector, Shard, Verdict, phi

INTERVAL = 0.15


def beat_until(detector: Detector, site: str, session: int, end: float) -> float:
    """Regular heartbeats every INTERVAL from 0 up to `end`; returns the time of the last one."""
    t = 0.0
    last = 0.0
    while t <= end + 1e-9:
        detector.heartbeat(site, session, t)
        assert detector.poll(t) == []
        last = t
        t += INTERVAL
    return last


# ---------------------------------------------------------------------- fixed detector


def test_fixed_detector_suspects_exactly_after_timeout() -> None:
    detector = FixedTimeoutDetector(INTERVAL, 10)
    first = detector.heartbeat("ed", 1, 0.0)
    assert first == [Verdict("ed", True, 1, 0.0, "heartbeat")]
    last = beat_until(detector, "ed", 1, 3.0)
    assert not detector.suspected("ed", last + 1.5 - 1e-6)
    assert detector.poll(last + 1.5 - 1e-6) == []
    assert detector.suspected("ed", last + 1.5)
    down = detector.poll(last + 1.5)
    assert down == [Verdict("ed", False, 1, last + 1.5, "timeout")]
    assert detector.poll(last + 5.0) == []  # a transition is reported once


def test_fixed_detector_up_again_on_heartbeat_and_new_session() -> None:
    detector = FixedTimeoutDetector(INTERVAL, 10)
    detector.heartbeat("ed", 1, 0.0)
    assert detector.poll(2.0)[0].up is False
    # a late heartbeat of the same session (SIGSTOP then SIGCONT) brings it back
    assert detector.heartbeat("ed", 1, 2.1) == [Verdict("ed", True, 1, 2.1, "heartbeat")]
    assert detector.poll(4.0)[0].up is False
    assert detector.heartbeat("ed", 2, 4.1) == [Verdict("ed", True, 2, 4.1, "heartbeat")]
    assert detector.session("ed") == 2


def test_old_session_heartbeats_are_ignored() -> None:
    detector = FixedTimeoutDetector(INTERVAL, 10)
    detector.heartbeat("ed", 5, 0.0)
    assert detector.heartbeat("ed", 4, 1.0) == []
    # the stale heartbeat did not reset the timer: still suspected 1.5 s after the last session-5 beat
    assert detector.suspected("ed", 1.5)
    assert detector.session("ed") == 5


def test_offline_of_current_session_is_down_at_once_and_ends_it() -> None:
    detector = FixedTimeoutDetector(INTERVAL, 10)
    detector.heartbeat("ed", 3, 0.0)
    assert detector.status("ed", "offline", 3, 0.2) == [Verdict("ed", False, 3, 0.2, "offline")]
    assert detector.suspected("ed", 0.2)
    assert detector.heartbeat("ed", 3, 0.25) == []  # a heartbeat still in flight: the session ended
    assert detector.is_up("ed") is False


def test_late_offline_of_old_session_is_ignored() -> None:
    detector = FixedTimeoutDetector(INTERVAL, 10)
    detector.heartbeat("ed", 1, 0.0)
    detector.status("ed", "online", 2, 0.5)
    assert detector.session("ed") == 2
    assert detector.status("ed", "offline", 1, 0.6) == []  # the late Last Will of session 1
    assert detector.is_up("ed") is True
    assert not detector.suspected("ed", 0.7)


def test_online_starts_a_session_and_its_timer() -> None:
    detector = FixedTimeoutDetector(INTERVAL, 10)
    assert detector.status("ed", "online", 7, 1.0) == [Verdict("ed", True, 7, 1.0, "online")]
    assert detector.status("ed", "online", 7, 1.2) == []  # retained copy re-delivered
    assert not detector.suspected("ed", 2.4)
    assert detector.poll(2.5) == [Verdict("ed", False, 7, 2.5, "timeout")]


def test_offline_of_unknown_site_is_down() -> None:
    detector = FixedTimeoutDetector(INTERVAL, 10)
    assert detector.status("cd", "offline", 4, 0.0) == [Verdict("cd", False, 4, 0.0, "offline")]
    assert detector.heartbeat("cd", 4, 0.1) == []
    assert detector.heartbeat("cd", 5, 0.2)[0].up is True


def test_unknown_site_is_not_suspected() -> None:
    assert not FixedTimeoutDetector().suspected("nobody", 100.0)


# ---------------------------------------------------------------------- phi accrual


def test_phi_rises_with_silence() -> None:
    values = [phi(t, 0.15, 0.05) for t in (0.0, 0.15, 0.3, 0.45, 0.6, 1.0)]
    assert values == sorted(values)
    assert values[0] < 0.1
    assert values[-1] > 8


def test_phi_detector_stays_low_under_regular_heartbeats_then_suspects() -> None:
    detector = PhiAccrualDetector(threshold=8.0, window=100, min_std_s=0.05, acceptable_pause_s=0.3)
    rng = np.random.default_rng(1)
    t = 0.0
    for _ in range(400):
        detector.heartbeat("ed", 1, t)
        assert detector.phi_of("ed", t) < 1.0
        assert detector.poll(t) == []
        t += INTERVAL + float(rng.normal(0.0, 0.01))
    last = t - INTERVAL
    half_second_late = detector.phi_of("ed", last + INTERVAL + 0.3)
    assert half_second_late < 8.0
    silences = [detector.phi_of("ed", last + s) for s in (0.2, 0.5, 0.8, 1.2)]
    assert silences == sorted(silences)
    assert detector.suspected("ed", last + 1.2)
    down = detector.poll(last + 1.2)
    assert [v.reason for v in down] == ["phi"]


def test_phi_detector_sessions_reset_history() -> None:
    detector = PhiAccrualDetector()
    for i in range(20):
        detector.heartbeat("ed", 1, i * 1.0)  # slow sender: 1 s intervals
    assert not detector.suspected("ed", 19.0 + 1.5)
    detector.heartbeat("ed", 2, 21.0)  # new session: history reset to the nominal 150 ms
    assert detector.suspected("ed", 21.0 + 1.5)


# ---------------------------------------------------------------------- availability trace and forecast


def test_windows_hold_the_share_of_time_up() -> None:
    trace = SiteTrace(window_s=10.0, max_windows=5)
    trace.record(True, 0.0)
    trace.record(False, 15.0)  # window 0: up all along -> 1.0
    trace.record(True, 17.5)  # down 2.5 s of window 1
    assert trace.advance(20.0) == 1  # window 1 closes at 20
    assert trace.advance(40.0) == 2
    np.testing.assert_allclose(trace.series(), [1.0, 0.75, 1.0, 1.0])
    assert [(i.up, i.start, i.end) for i in trace.intervals] == [(True, 0.0, 15.0), (False, 15.0, 17.5)]
    trace.advance(100.0)
    assert len(trace.series()) == 5  # bounded


def test_long_gap_is_bounded() -> None:
    trace = SiteTrace(window_s=1.0, max_windows=10)
    trace.record(False, 0.0)
    assert trace.advance(1e9) == 10
    assert trace.series().tolist() == [0.0] * 10


def test_prior_before_enough_windows() -> None:
    assert SitePredictor().forecast(np.ones(3)).model == "prior"
    assert SitePredictor().forecast(np.ones(3)).availability == 1.0
    node = load_node_table()["7_1"]
    predictor = SitePredictor(seed_node="7_1", seed=seed_model(node))
    prior = predictor.forecast(np.ones(3))
    assert prior.model == "steady-state:7_1"
    assert prior.availability == pytest.approx(node.availability)


def test_forecast_selects_a_model_on_enough_windows() -> None:
    rng = np.random.default_rng(0)
    series = np.clip(1.0 - rng.exponential(0.05, 120) * (rng.random(120) < 0.3), 0.0, 1.0)
    predictor = SitePredictor(min_windows=10)
    forecast = predictor.forecast(series)
    assert 0.0 <= forecast.availability <= 1.0
    assert forecast.model not in ("prior",)
    assert predictor.reason_ is not None
    # the forecaster's selection backtest error travels with the forecast (and so with the prediction)
    assert forecast.error_mae is not None
    assert forecast.error_mae >= 0.0
    assert SitePredictor().forecast(np.ones(3)).error_mae is None  # a prior has no backtest


def test_seed_windows_from_a_lanl_node() -> None:
    node = load_node_table()["7_1"]
    seed = seed_windows(node, 100)
    assert seed.shape == (100,)
    assert np.all((seed >= 0.0) & (seed <= 1.0))
    trace = SiteTrace(window_s=60.0, max_windows=100, history=[float(v) for v in seed])
    forecast = SitePredictor(seed_node="7_1", seed=seed_model(node)).forecast(trace.series())
    assert 0.0 <= forecast.availability <= 1.0
    assert not forecast.model.startswith("steady-state")


# ---------------------------------------------------------------------- shards


def test_shards_partition_the_sites_and_are_stable() -> None:
    sites = [f"site-{i}" for i in range(200)] + ["md", "ed", "ec", "er", "cd"]
    for n in (1, 2, 3, 5):
        owners = [[i for i in range(n) if Shard(i, n).owns(site)] for site in sites]
        assert all(len(o) == 1 for o in owners)
        if n > 1:
            assert len({o[0] for o in owners}) == n  # every shard gets some
    # stable across processes: BLAKE2b, not Python's salted hash
    assert Shard.bucket("ed", 2) == Shard.bucket("ed", 2)
    assert [Shard.bucket(s, 7) for s in ("ed", "ec", "er", "cd")] == [
        int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "big") % 7
        for s in ("ed", "ec", "er", "cd")
    ]


@pytest.mark.parametrize("text", ["2/2", "-1/2", "a/b", "1", "0/0"])
def test_bad_shards_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="shard"):
        Shard.parse(text)


def test_shard_parse_roundtrip() -> None:
    assert Shard.parse(" 1/3 ") == Shard(1, 3)
    assert str(Shard(1, 3)) == "1/3"
