"""The DAG-aware engines in the offline simulator: the live planner's decisions, reproducible, optimal."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from edgeoff.baselines import KubeHybridSettings
from edgeoff.cost import CostModel
from edgeoff.engines import ISSUE_9_ENGINES, get_engine
from edgeoff.evaluation.failures import fixed_path
from edgeoff.evaluation.lockstep import DelayDetector, Inputs, Totals, run_lockstep
from edgeoff.evaluation.simulator import SiteBehaviour, simulate
from edgeoff.evaluation.workload import RecordedTask, recorded_workload
from edgeoff.scenario import default_scenario
from edgeoff.wire.messages import Prediction, SiteStatus
from launcher.cli import main
from mobile_agent.dag_plan import start_application
from mobile_agent.planner import AgentView, Planner, PlannerSettings, TaskSpec, sample_app_run

MD, ED, EC, ER, CD = range(5)
SCENARIO = default_scenario()
FORECAST = np.array([1.0, 0.97, 0.5, 0.8, 0.9])  # the worker's window forecasts (the phone: 1)
MTTF_H = np.array([np.inf, 40.0, 20.0, 12.0, 300.0])
MTTR_H = np.array([0.0, 4.0, 6.0, 3.0, 1.0])


class ConstantForecast:
    """The same window forecast at every time (what a live worker last published)."""

    def at(self, now: np.ndarray) -> np.ndarray:
        return np.broadcast_to(FORECAST, (now.shape[0], FORECAST.size)).copy()


def _runs(names: tuple[str, ...]) -> list[tuple[TaskSpec, ...]]:
    rng = np.random.default_rng(11)
    runs = []
    for name in names:
        while (specs := sample_app_run(SCENARIO, rng))[0].app != name:
            pass
        runs.append(specs)
    return runs


def _simulate(
    engine: str,
    runs: list[tuple[TaskSpec, ...]],
    ed_since_h: float | None = None,
    ed_back_h: float | None = None,
    *,
    forecast: bool = True,
) -> Totals:
    """One repetition of `runs`: EC down since long before (the detector knows it), ED up, or down since
    `ed_since_h` (0.5 h before the start: unknown to the detector until 1 h) until `ed_back_h` (None: for
    good), every other site up throughout; no jitter."""
    recorded = [
        [RecordedTask(i, s.app, s.index, s.mi, s.input_kb, s.output_kb) for s in specs]
        for i, specs in enumerate(runs)
    ]
    up0, since0 = np.ones((1, 5), dtype=bool), np.full((1, 5), -np.inf)
    up0[0, EC] = False
    if ed_since_h is not None:
        up0[0, ED], since0[0, ED] = False, ed_since_h
    inputs = Inputs(
        path=fixed_path(up0, since0, [[[], [] if ed_back_h is None else [ed_back_h], [], [], []]]),
        detector=DelayDetector(SCENARIO.detection.detection_s * SCENARIO.simulation.trace_h_per_s),
        mean_up_h=MTTF_H[None, :].copy(),
        mean_down_h=MTTR_H[None, :].copy(),
        forecast=ConstantForecast() if forecast else None,
    )
    work = recorded_workload(SCENARIO, recorded)
    return run_lockstep(SCENARIO, get_engine(engine), work, inputs, KubeHybridSettings())


def _live_view() -> AgentView:
    view = AgentView(SCENARIO)
    for version, site in enumerate(("ed", "ec", "er", "cd")):
        status = SiteStatus(state="offline" if site == "ec" else "online", session=1, ts=0.0)
        view.apply_status(site, status)
        p = float(FORECAST[SCENARIO.site_ids.index(site)])
        view.apply_prediction(
            site, Prediction(site=site, availability=p, version=version, model="svr", ts=0.0)
        )
    return view


def _live(engine: str, specs: tuple[TaskSpec, ...], ed: str) -> tuple[list[int], list[int]]:
    """Where the live agent's DAG plan runs each task, and its failed attempts, when ED is "up", "down"
    (unknown to the detector until an attempt there fails, by when the detector has declared it down) or
    "blip" (down at the first attempt there, back before the detector noticed: the attempt times out)."""
    settings = PlannerSettings(
        mean_up_h=tuple(MTTF_H), mean_down_h=tuple(MTTR_H), time_compression=3600.0, time_scale=1.0
    )
    planner = Planner(SCENARIO, get_engine(engine), settings)
    view = _live_view()
    application = start_application(planner, specs, view)
    assert application is not None
    site_of: list[int] = []
    failures: list[int] = []
    for spec in specs:
        state = MD if spec.source < 0 else site_of[spec.source]
        task_plan = application.task_plan(spec, state, site_of, view)
        failed = 0
        while ed != "up" and task_plan.action == ED:  # a blip: ED failed once, then never tried again
            failed += 1
            unusable = np.zeros(5, dtype=bool)
            unusable[[ED, EC] if ed == "down" else [EC]] = True
            task_plan.fail("detector" if ed == "down" else "deadline", unusable=unusable)
        site_of.append(task_plan.action)
        failures.append(failed)
    return site_of, failures


APPS = tuple(app.name for app in SCENARIO.apps)


@pytest.mark.parametrize("engine", ["dag-svr", "dag-selected", "dag-reactive"])
@pytest.mark.parametrize("ed", ["up", "down", "blip"])
def test_the_simulated_plan_takes_the_live_planners_decisions(engine: str, ed: str) -> None:
    offloaded = fell_back = 0
    since, back = {"up": (None, None), "down": (-0.5, None), "blip": (-0.5, 0.9)}[ed]
    for specs in _runs(APPS):
        sim = _simulate(engine, [specs], since, back, forecast=engine != "dag-reactive")
        sites, failures = _live(engine, specs, ed)
        assert sim.site_of[0].tolist() == sites, specs[0].app
        assert sim.task_failures[0].tolist() == failures, specs[0].app
        offloaded += sum(s != MD for s in sites)
        fell_back += sum(failures)
    assert offloaded > 0  # the comparison saw offloads ...
    assert (fell_back > 0) == (ed != "up")  # ... and, with ED failing, the plan's fallback chain


def _plan_cost(model: CostModel, specs: tuple[TaskSpec, ...], sites: list[int]) -> float:
    """The weighted cost w_t time + w_e energy of running `specs` on `sites` (the plan's objective)."""
    costs = model.tasks(*(np.array([getattr(s, k) for s in specs]) for k in ("mi", "input_kb", "output_kb")))
    w = SCENARIO.decision
    total = 0.0
    for t, spec in enumerate(specs):
        s_in = MD if spec.source < 0 else sites[spec.source]
        total += w.time_weight_per_s * costs.time_s[t, s_in, sites[t]]
        total += w.energy_weight_per_j * costs.energy_j[t, s_in, sites[t]]
    return total


def test_with_every_site_up_dag_oracle_finds_the_cheapest_placement_and_never_loses_to_mdp_oracle() -> None:
    model = CostModel.from_scenario(SCENARIO)
    runs = _runs(("CHESS", "ANTIVIRUS", "FACEBOOK", "GPS", "FACERECOGNIZER", "GPS", "FACEBOOK"))
    no_failures: list[list[float]] = [[]] * 5
    inputs = Inputs(
        path=fixed_path(np.ones((1, 5), dtype=bool), np.full((1, 5), -np.inf), [no_failures]),
        detector=DelayDetector(1.5),
        mean_up_h=np.full((1, 5), np.inf),
        mean_down_h=np.zeros((1, 5)),
    )
    recorded = [
        [RecordedTask(i, s.app, s.index, s.mi, s.input_kb, s.output_kb) for s in specs]
        for i, specs in enumerate(runs)
    ]
    work = recorded_workload(SCENARIO, recorded)
    totals = {
        e: run_lockstep(SCENARIO, get_engine(e), work, inputs, KubeHybridSettings())
        for e in ("dag-oracle", "mdp-oracle")
    }
    steps = np.cumsum([0, *(len(specs) for specs in runs)])
    saved = 0.0
    for i, specs in enumerate(runs):
        placed = {e: t.site_of[0, steps[i] : steps[i + 1]].tolist() for e, t in totals.items()}
        choices = [[a for a in range(5) if a == MD or s.offloadable] for s in specs]
        best = min(_plan_cost(model, specs, list(p)) for p in itertools.product(*choices))
        dag, per_task = (_plan_cost(model, specs, placed[e]) for e in ("dag-oracle", "mdp-oracle"))
        assert dag == pytest.approx(best, rel=1e-12)  # brute force over every placement
        assert dag <= per_task + 1e-9
        saved += per_task - dag
    assert totals["dag-oracle"].failures.sum() == 0
    assert saved >= 0.0


def _sites() -> dict[int, SiteBehaviour]:
    class Constant:
        lags = 3

        def predict_many(self, recent: np.ndarray) -> np.ndarray:
            return np.full(recent.shape[0], 0.95)

    return {
        i: SiteBehaviour(30.0, 4.0, dict.fromkeys(("svr", "selected"), Constant()), np.ones(10))
        for i in (ED, EC, ER, CD)
    }


@pytest.mark.parametrize("engine", list(ISSUE_9_ENGINES))
def test_same_seed_same_bytes_other_seed_other_results(engine: str) -> None:
    def run(seed: int) -> tuple[bytes, ...]:
        r = simulate(SCENARIO, _sites(), get_engine(engine), apps=80, reps=3, seed=(seed,))
        return tuple(getattr(r, f).tobytes() for f in ("rt_s", "energy_j", "failures", "placements"))

    a, b, c = run(5), run(5), run(6)
    assert a == b
    assert a[0] != c[0]


def test_the_dag_engine_meets_failures_and_recovers_from_them() -> None:
    r = simulate(SCENARIO, _sites(), get_engine("dag-belief"), apps=200, reps=4, seed=(2,))
    assert r.failures.sum() > 0
    assert r.offload_attempts.sum() > r.failures.sum()
    assert r.infeasible.sum() == 0


def test_evaluate_runs_dag_engines_and_pairs_them_with_their_per_task_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r"
    args = ["--apps", "40", "--reps", "3", "--datasets", "DS1", "--workers", "1", "--quiet"]
    engines = "kubehybrid,mdp-belief,dag-belief,dag-oracle"
    assert main(["evaluate", "--out", str(out), "--engines", engines, *args]) == 0
    results = json.loads((out / "results.json").read_text())["results"]
    by = {r["engine"]: r for r in results}
    assert set(by) == {"kubehybrid", "mdp-belief", "dag-belief", "dag-oracle"}
    paired = by["dag-belief"]["paired_vs_per_task"]
    assert paired["engine"] == "mdp-belief"
    assert paired["low_s"] <= paired["mean_s"] <= paired["high_s"]
    diff = by["dag-belief"]["rt_s"]["mean"] - by["mdp-belief"]["rt_s"]["mean"]
    assert paired["mean_s"] == pytest.approx(diff)
    assert "paired_vs_per_task" not in by["dag-oracle"]  # mdp-oracle did not run
    assert "paired_vs_kubehybrid" in by["dag-oracle"]
    report = (out / "report.md").read_text()
    assert "## What the DAG-aware engine adds" in report
    assert "| DS1 | dag-belief | mdp-belief |" in report

    bad = tmp_path / "bad"
    assert main(["evaluate", "--out", str(bad), "--engines", "mdp-belief,dag-magic", *args]) == 2
    err = capsys.readouterr().err
    assert "unknown engine source 'magic'" in err
    assert err.count("\n") == 1
    assert not bad.exists()
