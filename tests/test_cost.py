"""The cost model on hand-computed numbers of the paper's setup."""

from __future__ import annotations

import numpy as np
import pytest

from edgeoff.cost import CostModel
from edgeoff.scenario import default_scenario

MD, ED, EC, ER, CD = range(5)


@pytest.fixture(scope="module")
def model() -> CostModel:
    return CostModel.from_scenario(default_scenario())


def test_local_execution(model: CostModel) -> None:
    c = model.tasks(np.array([600.0]), np.array([6.0]), np.array([6.0]))
    assert c.time_s[0, MD, MD] == pytest.approx(0.6)  # 600 MI / 1000 MIPS, no transfer
    assert c.energy_j[0, MD, MD] == pytest.approx(0.6 * 0.9)  # compute power


def test_offload_from_phone_charges_upload_execution_and_download(model: CostModel) -> None:
    c = model.tasks(np.array([600.0]), np.array([100.0]), np.array([60.0]))
    up = 100 / 687.5 + 0.015
    run = 600 / 8000
    down = 60 / 687.5 + 0.015
    assert c.time_s[0, MD, EC] == pytest.approx(up + run + down)
    assert c.energy_j[0, MD, EC] == pytest.approx(up * 1.3 + run * 0.3 + down * 1.0)


def test_edge_to_edge_input_while_phone_idles(model: CostModel) -> None:
    c = model.tasks(np.array([150.0]), np.array([110.0]), np.array([70.0]))
    up = 110 / 123000 + 0.010  # ED -> EC
    run = 150 / 8000
    down = 70 / 687.5 + 0.015  # the result returns to the phone
    assert c.time_s[0, ED, EC] == pytest.approx(up + run + down)
    assert c.energy_j[0, ED, EC] == pytest.approx(up * 0.3 + run * 0.3 + down * 1.0)


def test_back_to_the_phone_downloads_the_input(model: CostModel) -> None:
    c = model.tasks(np.array([100.0]), np.array([8.0]), np.array([4.0]))
    up = 8 / 2500 + 0.015  # ED -> phone: the phone receives
    assert c.time_s[0, ED, MD] == pytest.approx(up + 0.1)
    assert c.energy_j[0, ED, MD] == pytest.approx(up * 1.0 + 0.1 * 0.9)


def test_cloud_uses_expected_jitter(model: CostModel) -> None:
    c = model.tasks(np.array([0.0]), np.array([0.0]), np.array([0.0]))
    assert c.time_s[0, MD, CD] == pytest.approx(2 * (0.054 + 0.200))


def test_failure_is_the_detection_time_at_the_right_power(model: CostModel) -> None:
    f = model.failure()
    assert f.time_s.ravel().tolist() == pytest.approx([1.5] * 5)
    assert f.energy_j.ravel().tolist() == pytest.approx([1.5 * 1.3] + [1.5 * 0.3] * 4)


def test_latency_deviation_only_where_data_moves(model: CostModel) -> None:
    extra = model.latency_deviation(
        np.array([MD, CD, MD]), np.array([CD, CD, MD]), np.full(3, 0.1), np.full(3, 0.2)
    )
    assert extra.time_s.tolist() == pytest.approx([0.3, 0.2, 0.0])
    assert extra.energy_j.tolist() == pytest.approx([0.1 * 1.3 + 0.2 * 1.0, 0.2 * 1.0, 0.0])
