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


def test_data_already_on_the_phone_is_not_moved_again(model: CostModel) -> None:
    # the predecessor ran on ED and its result was downloaded to the phone then: a task on the phone
    # needs no transfer (rule 1), only its execution
    c = model.tasks(np.array([100.0]), np.array([8.0]), np.array([4.0]))
    assert c.time_s[0, ED, MD] == pytest.approx(0.1)
    assert c.energy_j[0, ED, MD] == pytest.approx(0.1 * 0.9)


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


def test_every_rule_on_a_hand_computed_dag(model: CostModel) -> None:
    """A (phone) -> {B on ED, C on EC} -> D (phone, input from C) -> E on ED (input from D, on the phone)."""
    from edgeoff.cost import level_energy_j

    def ph(mi: float, kb_in: float, kb_out: float, src: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = model.phases(np.array([mi]), np.array([kb_in]), np.array([kb_out]), np.array([src]))
        return p.upload_s[0], p.execute_s[0], p.download_s[0]

    a = ph(100, 6, 6, MD)
    b, c = ph(1000, 110, 70, MD), ph(150, 6, 6, MD)
    d, e = ph(100, 6, 6, EC), ph(150, 6, 6, MD)
    # rules 1-3 by hand
    assert (a[0][MD], a[1][MD], a[2][MD]) == pytest.approx((0.0, 0.1, 0.0))
    b_up, b_ex, b_down = 110 / 2500 + 0.015, 1000 / 5000, 70 / 2500 + 0.015
    assert (b[0][ED], b[1][ED], b[2][ED]) == pytest.approx((b_up, b_ex, b_down))
    c_up, c_ex, c_down = 6 / 687.5 + 0.015, 150 / 8000, 6 / 687.5 + 0.015
    assert (c[0][EC], c[1][EC], c[2][EC]) == pytest.approx((c_up, c_ex, c_down))
    assert (d[0][MD], d[1][MD], d[2][MD]) == pytest.approx((0.0, 0.1, 0.0))  # C's result is on the phone
    e_up, e_ex, e_down = 6 / 2500 + 0.015, 150 / 5000, 6 / 2500 + 0.015
    assert (e[0][ED], e[1][ED], e[2][ED]) == pytest.approx((e_up, e_ex, e_down))
    # rule 4: per task, active seconds and their energy (sending 1.3 W, computing 0.9 W, receiving 1.0 W)
    times = [0.1, b_up + b_ex + b_down, c_up + c_ex + c_down, 0.1, e_up + e_ex + e_down]
    active_s = [0.1, b_up + b_down, c_up + c_down, 0.1, e_up + e_down]
    active_j = [0.09, b_up * 1.3 + b_down, c_up * 1.3 + c_down, 0.09, e_up * 1.3 + e_down]
    # rule 6: the B/C level lasts B's time; the phone idles for what its active phases leave of it, once
    level_b_c = max(times[1], times[2])
    idle = (level_b_c - (active_s[1] + active_s[2])) + e_ex
    expected = sum(active_j) + 0.3 * idle
    assert level_energy_j(
        np.array([0, 1, 1, 2, 3]), np.array(times), np.array(active_s), np.array(active_j), 0.3
    ) == (pytest.approx(expected))
    per_task_idle = 0.3 * (b_ex + c_ex + e_ex)  # what charging idle per task would have added up to
    assert expected < sum(active_j) + per_task_idle
