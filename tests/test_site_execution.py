"""The site's pure core: emulated execution, handlers, antivirus scan, failure injection."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest

from edgeoff.cost import CostModel
from edgeoff.errors import ScenarioError
from edgeoff.scenario import default_scenario
from edgeoff.traces import load_node_table
from edgeoff.wire.messages import TaskRequest
from site_daemon.execution import (
    DEFAULT_HANDLERS,
    SCAN_CHUNK_BYTES,
    HandlerError,
    HandlerRegistry,
    antivirus_scan,
    decode_scan_output,
    encode_scan_request,
    execute,
    execution_time_s,
    scan_chunks,
)
from site_daemon.failure_injection import FailureModel, Period, failure_model_for_site, periods


def task(**fields: object) -> TaskRequest:
    base: dict[str, object] = {
        "task_id": "t-1",
        "attempt": 0,
        "agent": "agent-1",
        "app": "antivirus",
        "task": "scan",
        "mi": 1000.0,
        "input_kb": 0.0,
        "output_kb": 0.0,
        "memory_gb": 1.0,
        "deadline_s": 5.0,
    }
    return TaskRequest.model_validate({**base, **fields})


class FakeTime:
    """A clock that only moves when the code under test waits."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False  # never interrupted


# ------------------------------------------------------------------------------------------ emulation


def test_execution_time_is_the_cost_models_execution_term() -> None:
    scenario = default_scenario()
    model = CostModel.from_scenario(scenario)
    mi = np.array([0.0, 500.0, 12_345.0])
    no_latency = np.zeros((model.n_sites, model.n_sites))
    costs = model.tasks(mi, np.zeros(3), np.zeros(3), latency_s=no_latency)  # no transfer: only execution
    for site, site_id in enumerate(scenario.site_ids):
        for n, task_mi in enumerate(mi):
            expected = costs.time_s[n, site, site]
            assert execution_time_s(model, site, float(task_mi)) == pytest.approx(expected), site_id
    assert execution_time_s(model, scenario.site_ids.index("ed"), 5000.0) == pytest.approx(1.0)  # 5000 MIPS


def test_emulated_task_waits_its_duration_and_reports_it() -> None:
    fake = FakeTime()
    outcome = execute(
        task(), emulated_s=0.2, memory_gb=8, handlers=HandlerRegistry(), wait=fake.wait, clock=fake.clock
    )
    assert outcome is not None
    assert outcome.ok
    assert outcome.exec_s == pytest.approx(0.2)
    assert fake.waits == [0.2]


def test_an_interrupted_task_is_abandoned() -> None:
    outcome = execute(
        task(), emulated_s=5, memory_gb=8, handlers=HandlerRegistry(), wait=lambda s: True, clock=lambda: 0.0
    )
    assert outcome is None


def test_a_task_that_needs_more_memory_than_the_site_has_fails() -> None:
    fake = FakeTime()
    outcome = execute(
        task(memory_gb=16),
        emulated_s=1,
        memory_gb=8,
        handlers=HandlerRegistry(),
        wait=fake.wait,
        clock=fake.clock,
    )
    assert outcome is not None
    assert not outcome.ok
    assert "16" in (outcome.error or "")
    assert fake.waits == []


# ------------------------------------------------------------------------------------------ handlers


def test_handler_registry_registers_runs_and_rejects_twins() -> None:
    registry = HandlerRegistry()

    @registry.register("echo.upper")
    def upper(payload: bytes) -> bytes:
        return payload.upper()

    assert "echo.upper" in registry
    assert list(registry) == ["echo.upper"]
    fake = FakeTime()
    outcome = execute(
        task(handler="echo.upper", payload=b"abc"),
        emulated_s=9,
        memory_gb=8,
        handlers=registry,
        wait=fake.wait,
        clock=fake.clock,
    )
    assert outcome is not None
    assert outcome.ok
    assert outcome.output == b"ABC"
    assert fake.waits == []  # real work replaces the emulated wait
    with pytest.raises(ValueError, match="twice"):
        registry.register("echo.upper")(upper)


def test_unknown_and_failing_handlers_fail_the_task_only() -> None:
    registry = HandlerRegistry()

    @registry.register("bad")
    def bad(payload: bytes) -> bytes:
        raise HandlerError("cannot")

    for name, error in (("missing", "unknown handler"), ("bad", "cannot")):
        outcome = execute(
            task(handler=name),
            emulated_s=0,
            memory_gb=8,
            handlers=registry,
            wait=lambda s: False,
            clock=lambda: 0.0,
        )
        assert outcome is not None
        assert not outcome.ok
        assert error in (outcome.error or "")


def test_antivirus_scan_is_registered() -> None:
    assert DEFAULT_HANDLERS.get("antivirus.scan") is antivirus_scan


def test_scan_finds_planted_signatures() -> None:
    rng = np.random.default_rng(3)
    data = bytearray(rng.integers(0, 256, size=64 * SCAN_CHUNK_BYTES + 100, dtype=np.uint8).tobytes())
    virus = rng.integers(0, 256, size=SCAN_CHUNK_BYTES, dtype=np.uint8).tobytes()
    planted = [5 * SCAN_CHUNK_BYTES, 17 * SCAN_CHUNK_BYTES, 63 * SCAN_CHUNK_BYTES]
    for offset in planted:
        data[offset : offset + SCAN_CHUNK_BYTES] = virus
    tail = bytes(data[64 * SCAN_CHUNK_BYTES :])  # the short last chunk is hashed as it is
    signatures = {
        hashlib.sha256(virus).digest(),
        hashlib.sha256(tail).digest(),
        hashlib.sha256(b"other").digest(),
    }
    assert scan_chunks(bytes(data), signatures) == [*planted, 64 * SCAN_CHUNK_BYTES]
    assert scan_chunks(bytes(data), set()) == []
    assert scan_chunks(b"", signatures) == []
    # unaligned copies are not matches: signatures are of aligned chunks
    shifted = b"\x00" + bytes(data)
    assert scan_chunks(shifted, {hashlib.sha256(virus).digest()}) == []


def test_antivirus_handler_round_trip_and_bad_payloads() -> None:
    clean = b"\x01" * (3 * SCAN_CHUNK_BYTES)
    infected = clean[:SCAN_CHUNK_BYTES] + b"\x66" * SCAN_CHUNK_BYTES + clean[:SCAN_CHUNK_BYTES]
    signature = hashlib.sha256(b"\x66" * SCAN_CHUNK_BYTES).digest()
    assert decode_scan_output(antivirus_scan(encode_scan_request(infected, [signature]))) == [
        SCAN_CHUNK_BYTES
    ]
    assert decode_scan_output(antivirus_scan(encode_scan_request(clean, [signature]))) == []
    for payload in (b"", b"\xc1", encode_scan_request(clean, [b"short"]), b"\x80"):
        with pytest.raises(HandlerError):
            antivirus_scan(payload)


# ------------------------------------------------------------------------------------------ failures


def test_failure_model_scales_trace_hours_to_wall_seconds() -> None:
    model = FailureModel(mttf_h=86.8, mttr_h=8.7, time_compression=3600)
    assert model.mean_up_s == pytest.approx(86.8)
    assert model.mean_down_s == pytest.approx(8.7)
    assert FailureModel(mttf_h=2, mttr_h=1, time_compression=7200).mean_up_s == pytest.approx(1.0)
    for bad in (
        {"mttf_h": 0, "mttr_h": 1},
        {"mttf_h": 1, "mttr_h": -1},
        {"mttf_h": 1, "mttr_h": 1, "time_compression": 0},
    ):
        with pytest.raises(ValueError, match="must be"):
            FailureModel(**bad)


def test_phases_alternate_and_their_means_match_mttf_and_mttr() -> None:
    model = FailureModel(mttf_h=86.8, mttr_h=8.7, time_compression=3600)
    sample = list(itertools.islice(periods(model, np.random.default_rng(42)), 40_000))
    assert [p.state for p in sample[:4]] == ["up", "down", "up", "down"]
    up = np.array([p.duration_s for p in sample if p.state == "up"])
    down = np.array([p.duration_s for p in sample if p.state == "down"])
    assert len(up) == len(down) == 20_000
    # the mean of n exponentials has a relative standard error of 1/sqrt(n) (0.7 % here): allow 3 %
    assert up.mean() == pytest.approx(model.mean_up_s, rel=0.03)
    assert down.mean() == pytest.approx(model.mean_down_s, rel=0.03)
    assert np.std(up) == pytest.approx(model.mean_up_s, rel=0.05)  # exponential: std == mean
    assert np.all(up >= 0)
    assert np.all(down >= 0)


def test_phases_are_deterministic_by_seed() -> None:
    model = FailureModel(mttf_h=10, mttr_h=1)

    def first(seed: int) -> list[Period]:
        return list(itertools.islice(periods(model, np.random.default_rng(seed)), 50))

    assert first(7) == first(7)
    assert first(7) != first(8)


def test_zero_mttr_gives_zero_downtime() -> None:
    sample = list(itertools.islice(periods(FailureModel(mttf_h=1, mttr_h=0), np.random.default_rng(0)), 10))
    assert all(p.duration_s == 0 for p in sample if p.state == "down")


def test_failure_model_for_a_site_of_a_dataset() -> None:
    scenario = default_scenario()
    nodes = load_node_table()
    model = failure_model_for_site(scenario, "DS1", "ec", nodes, time_compression=3600)
    assert model is not None
    node = nodes[scenario.dataset("DS1")["ec"]]
    assert model.mttf_h == pytest.approx(node.mttf_h)
    assert model.mttr_h == pytest.approx(node.mttr_h)
    assert failure_model_for_site(scenario, "DS1", "md", nodes) is None  # the phone never fails
    with pytest.raises(ScenarioError):
        failure_model_for_site(scenario, "DS99", "ec", nodes)
