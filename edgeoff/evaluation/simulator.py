"""Seeded discrete-event simulator of the paper's experiment, vectorised over repetitions.

Every repetition runs `apps` applications drawn from the scenario's mix; its tasks are sampled per task from
their class ranges. The repetitions advance in lockstep: step k handles the k-th task of every repetition, so
one numpy operation serves all repetitions (the engines' own code, batched).

Time and failures. Each application run advances trace time by `trace_hours_per_app`; every failing site
follows
its node's two-state Markov chain (p(up->down) = 1 - exp(-dt/MTTF), p(down->up) = 1 - exp(-dt/MTTR)) stepped
once per application run, starting from its steady state. A site's state holds for the whole run of one
application. An offload to a site that is down fails after the detection time (10 x 150 ms); within the same
application run the agent then knows the site is down and does not try it again (Algorithm 2).

Common random numbers: the workload, the chains and the latency jitter come from three generators derived from
the seed and the dataset only, so every engine meets the same applications and the same failures; the same
seed gives byte-identical results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edgeoff.baselines import KubeHybridSettings, kubehybrid_scores
from edgeoff.cost import CostModel, TaskCosts
from edgeoff.decision import solve
from edgeoff.engines import Engine
from edgeoff.scenario import Scenario

__all__ = ["Group", "RunResult", "SiteBehaviour", "WindowForecaster", "simulate", "simulate_groups"]


class WindowForecaster(Protocol):
    """What the simulator needs of a fitted availability forecaster."""

    @property
    def lags(self) -> int: ...

    def predict_many(self, recent: np.ndarray) -> np.ndarray:
        """Next-window availability (k,) from the last `lags` windows (k, lags), oldest first."""
        ...


@dataclass(frozen=True)
class SiteBehaviour:
    """How one site fails: its node's MTTF and MTTR (hours) and, for forecasting engines, fitted forecasters
    by engine availability source ("svr", "selected") with the node's availability history per window (oldest
    first) that seeds their first lags."""

    mttf_h: float
    mttr_h: float
    forecasters: Mapping[str, WindowForecaster] = field(default_factory=dict)
    history: np.ndarray | None = None

    @property
    def steady_state(self) -> float:
        return self.mttf_h / (self.mttf_h + self.mttr_h)


@dataclass(frozen=True)
class RunResult:
    """Per-repetition totals, each of shape (R,) unless said otherwise."""

    rt_s: np.ndarray
    energy_j: np.ndarray
    offload_attempts: np.ndarray
    failures: np.ndarray
    infeasible: np.ndarray
    placements: np.ndarray  # (R, S): offloadable tasks finally run on each site
    predicted_availability: np.ndarray  # (R, S): mean availability the engine believed per site
    true_availability: np.ndarray  # (R, S): share of application runs each site was up


@dataclass(frozen=True)
class _Workload:
    """Task streams of all repetitions, padded to T steps: arrays of shape (R, T)."""

    valid: np.ndarray
    app: np.ndarray  # application run index 0..apps-1
    first: np.ndarray  # first task of its application run
    key: np.ndarray  # (app run, DAG level) index for the response time, 0..apps*levels-1
    source: np.ndarray  # step of the task whose site holds the input, -1 for the phone
    mi: np.ndarray
    input_kb: np.ndarray
    output_kb: np.ndarray
    memory_gb: np.ndarray
    offloadable: np.ndarray
    levels: int


def _workload(scenario: Scenario, apps: int, reps: int, rng: np.random.Generator) -> _Workload:
    classes = list(scenario.task_classes)
    rows: list[
        tuple[float, ...]
    ] = []  # one row per template task: app, class, memory, offloadable, level, source offset
    starts, lengths = [], []
    for a, app in enumerate(scenario.apps):
        starts.append(len(rows))
        lengths.append(len(app.tasks))
        for t, task in enumerate(app.tasks):
            rows.append(
                (
                    a,
                    classes.index(task.class_),
                    task.memory_gb,
                    task.offloadable,
                    app.levels[t],
                    app.sources[t],
                )
            )
    table = np.array(rows, dtype=float)
    start, length = np.array(starts), np.array(lengths)
    levels = int(table[:, 4].max()) + 1

    probs = np.array([app.probability for app in scenario.apps])
    choice = rng.choice(len(scenario.apps), size=(reps, apps), p=probs / probs.sum())
    lens = length[choice]  # (R, apps)
    steps = lens.sum(axis=1)
    T = int(steps.max())
    flat_len = lens.ravel()
    total = int(flat_len.sum())
    app_start_in_rep = np.cumsum(lens, axis=1) - lens  # (R, apps)
    rep_of = np.repeat(np.arange(reps), steps)
    offset_in_app = np.arange(total) - np.repeat(np.cumsum(flat_len) - flat_len, flat_len)
    template = np.repeat(start[choice].ravel(), flat_len) + offset_in_app
    app_of = np.repeat(np.tile(np.arange(apps), reps), flat_len)
    pos = np.repeat(app_start_in_rep.ravel(), flat_len) + offset_in_app

    def grid(values: np.ndarray, fill: float, dtype: type) -> np.ndarray:
        out: np.ndarray = np.full((reps, T), fill, dtype=dtype)
        out[rep_of, pos] = values
        return out

    src_offset = table[template, 5].astype(int)
    source = np.where(src_offset >= 0, np.repeat(app_start_in_rep.ravel(), flat_len) + src_offset, -1)
    cls = table[template, 1].astype(int)
    lo = np.array([[c.mi[0], c.input_kb[0], c.output_kb[0]] for c in scenario.task_classes.values()])
    hi = np.array([[c.mi[1], c.input_kb[1], c.output_kb[1]] for c in scenario.task_classes.values()])
    sizes = lo[cls] + rng.random((total, 3)) * (hi[cls] - lo[cls])
    return _Workload(
        valid=grid(np.ones(total, bool), False, bool),
        app=grid(app_of, 0, np.int64),
        first=grid(offset_in_app == 0, False, bool),
        key=grid(app_of * levels + table[template, 4].astype(int), 0, np.int64),
        source=grid(source, -1, np.int64),
        mi=grid(sizes[:, 0], 0.0, float),
        input_kb=grid(sizes[:, 1], 0.0, float),
        output_kb=grid(sizes[:, 2], 0.0, float),
        memory_gb=grid(table[template, 2], 0.0, float),
        offloadable=grid(table[template, 3].astype(bool), False, bool),
        levels=levels,
    )


def _site_states(
    sites: Mapping[int, SiteBehaviour],
    n_sites: int,
    apps: int,
    reps: int,
    dt_h: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Up (True) or down per repetition, application run and site: shape (R, apps, S)."""
    up = np.ones((reps, apps, n_sites), dtype=bool)
    idx = np.array(sorted(sites), dtype=int)
    if idx.size == 0:
        return up
    behaviours = [sites[i] for i in idx]
    p_fail = np.array([1.0 - np.exp(-dt_h / b.mttf_h) for b in behaviours])
    p_repair = np.array([1.0 - np.exp(-dt_h / b.mttr_h) for b in behaviours])
    steady = np.array([b.steady_state for b in behaviours])
    draws = rng.random((apps, reps, idx.size))
    state = draws[0] < steady
    up[:, 0, idx] = state
    for k in range(1, apps):
        state = np.where(state, draws[k] >= p_fail, draws[k] < p_repair)
        up[:, k, idx] = state
    return up


def _forecast_beliefs(
    source: str, sites: Mapping[int, SiteBehaviour], up: np.ndarray, dt_h: float, window_h: float
) -> np.ndarray:
    """Forecast availability per repetition, application run and site, shape (R, apps, S).

    The window w's forecast uses the last `lags` windows: the node's history, then the windows already
    simulated (the share of application runs the site was up), as the live prediction worker does.
    """
    reps, apps, n_sites = up.shape
    belief = np.ones((reps, apps, n_sites))
    window = (np.arange(apps) * dt_h // window_h).astype(int)
    n_windows = int(window[-1]) + 1
    for i, b in sites.items():
        forecaster = b.forecasters.get(source)
        if forecaster is None or b.history is None:
            raise ValueError(f"site {i}: a {source!r} forecaster and a history are needed")
        lags = forecaster.lags
        observed = np.zeros((reps, n_windows))
        counts = np.bincount(window, minlength=n_windows)
        for r_w in range(n_windows):
            observed[:, r_w] = up[:, window == r_w, i].sum(axis=1) / counts[r_w]
        seed_lags = b.history[b.history.size - lags :]
        series = np.concatenate([np.broadcast_to(seed_lags, (reps, lags)), observed], axis=1)
        forecast = np.empty((reps, n_windows))
        for w in range(n_windows):
            forecast[:, w] = forecaster.predict_many(series[:, w : w + lags])
        belief[:, :, i] = forecast[:, window]
    return belief


def _beliefs(
    engine: Engine, sites: Mapping[int, SiteBehaviour], up: np.ndarray, dt_h: float, window_h: float
) -> np.ndarray:
    """The availability each engine believes per repetition, application run and site: (R, apps, S)."""
    if engine.availability in ("svr", "selected"):
        return _forecast_beliefs(engine.availability, sites, up, dt_h, window_h)
    if engine.availability == "oracle":
        return up.astype(float)
    belief = np.ones(up.shape)
    if engine.availability == "assume-up":
        return belief
    for i, b in sites.items():
        mtbf = b.mttf_h + b.mttr_h
        if engine.availability == "mtbf-reliability":
            belief[:, :, i] = np.exp(-dt_h / mtbf)
        else:
            belief[:, :, i] = b.steady_state
    return belief


@dataclass(frozen=True)
class Group:
    """One setting to simulate: the sites' failure behaviour, the seed of its random streams and the trace
    hours per application run (None: the scenario's)."""

    sites: Mapping[int, SiteBehaviour]
    seed: tuple[int, ...]
    trace_hours_per_app: float | None = None


def _pad(x: np.ndarray, width: int, fill: float) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, width - x.shape[1])), constant_values=fill)


def _stack(works: Sequence[_Workload]) -> _Workload:
    """One workload of all groups' rows, padded to the longest stream."""
    width = max(w.valid.shape[1] for w in works)
    fills = {"source": -1}
    fields = {
        name: np.concatenate([_pad(getattr(w, name), width, fills.get(name, 0)) for w in works])
        for name in (
            "valid",
            "app",
            "first",
            "key",
            "source",
            "mi",
            "input_kb",
            "output_kb",
            "memory_gb",
            "offloadable",
        )
    }
    return _Workload(**fields, levels=works[0].levels)


def simulate(
    scenario: Scenario,
    sites: Mapping[int, SiteBehaviour],
    engine: Engine,
    *,
    apps: int,
    reps: int,
    seed: tuple[int, ...],
    kubehybrid: KubeHybridSettings | None = None,
) -> RunResult:
    """Run `reps` repetitions of `apps` application runs with one engine; `sites` maps site index to its
    failure behaviour (sites not in it never fail). `seed` keys the random streams."""
    return simulate_groups(
        scenario, [Group(sites, seed)], engine, apps=apps, reps=reps, kubehybrid=kubehybrid
    )[0]


def simulate_groups(
    scenario: Scenario,
    groups: Sequence[Group],
    engine: Engine,
    *,
    apps: int,
    reps: int,
    kubehybrid: KubeHybridSettings | None = None,
) -> list[RunResult]:
    """`simulate` for several groups (datasets, trace settings) in one lockstep pass: the same results as one
    call per group, since every group keeps its own random streams, in a fraction of the time."""
    kube = kubehybrid or KubeHybridSettings()
    model = CostModel.from_scenario(scenario)
    S, m = model.n_sites, model.mobile
    window_h = scenario.simulation.prediction_window_h
    decision = scenario.decision
    if engine.discount is not None:
        decision = decision.model_copy(update={"discount": engine.discount})
    works, ups, beliefs, jitter_rngs = [], [], [], []
    for group in groups:
        dt_h = group.trace_hours_per_app or scenario.simulation.trace_hours_per_app
        works.append(_workload(scenario, apps, reps, np.random.default_rng([*group.seed, 0])))
        ups.append(_site_states(group.sites, S, apps, reps, dt_h, np.random.default_rng([*group.seed, 1])))
        beliefs.append(_beliefs(engine, group.sites, ups[-1], dt_h, window_h))
        jitter_rngs.append(np.random.default_rng([*group.seed, 2]))
    work, up, belief = _stack(works), np.concatenate(ups), np.concatenate(beliefs)
    reps_per_group, reps = reps, reps * len(groups)

    net = scenario.network
    memory = scenario.memory_gb
    r_idx = np.arange(reps)
    sites_arange = np.arange(S)
    site_of = np.full((reps, work.valid.shape[1]), m, dtype=np.int64)
    task_time = np.zeros(work.valid.shape)
    energy = np.zeros(reps)
    attempts = np.zeros(reps, dtype=np.int64)
    failures = np.zeros(reps, dtype=np.int64)
    infeasible = np.zeros(reps, dtype=np.int64)
    placements = np.zeros((reps, S), dtype=np.int64)
    known_down = np.zeros((reps, S), dtype=bool)
    fail = model.failure()
    fail_time, fail_energy = fail.time_s[0, :, 0], fail.energy_j[0, :, 0]  # (S,) by state

    for t in range(work.valid.shape[1]):
        active = work.valid[:, t]
        known_down[work.first[:, t]] = False
        src = work.source[:, t]
        state = np.where(src >= 0, site_of[r_idx, np.maximum(src, 0)], m)
        app = work.app[:, t]
        p = belief[r_idx, app]  # (R, S)
        up_now = up[r_idx, app]  # (R, S)
        offloadable = work.offloadable[:, t]
        feasible = (memory[None, :] >= work.memory_gb[:, t, None]) & (
            offloadable[:, None] | (sites_arange == m)
        )

        expected = model.tasks(work.mi[:, t], work.input_kb[:, t], work.output_kb[:, t])
        here = TaskCosts(expected.time_s[r_idx, state], expected.energy_j[r_idx, state])  # (R, A)
        if engine.ranking == "mdp":
            # A task that must run on the phone needs no decision: solve only where there is a choice.
            q = np.where(sites_arange == m, 0.0, -np.inf) * np.ones((reps, 1))
            rows = np.flatnonzero(active & offloadable)
            if rows.size:
                solved = solve(
                    TaskCosts(expected.time_s[rows], expected.energy_j[rows]),
                    p[rows],
                    model,
                    decision,
                    feasible[rows],
                    validate=False,
                )
                q[rows] = solved.q[np.arange(rows.size), state[rows]]
        else:
            q = kubehybrid_scores(here, model.mips, p, feasible, kube)
        candidate = feasible & ~known_down
        order = np.argsort(np.where(candidate, -q, np.inf), axis=1, kind="stable")  # best first
        cand_o = np.take_along_axis(candidate, order, axis=1)
        ok_o = cand_o & np.take_along_axis(up_now, order, axis=1)
        found = ok_o.any(axis=1)
        first_ok = np.argmax(ok_o, axis=1)
        if engine.recovery == "local":  # try the policy's choice once, then re-execute on the phone
            first_cand = np.argmax(cand_o, axis=1)
            tried = cand_o & (np.arange(S) == first_cand[:, None])
            failed_o = tried & ~ok_o
            chosen = np.where(failed_o.any(axis=1), m, order[r_idx, first_cand])
            found = np.ones(reps, dtype=bool)
        else:
            failed_o = cand_o & (np.arange(S)[None, :] < first_ok[:, None])
            chosen = np.where(found, order[r_idx, first_ok], m)
        failed_sites = np.zeros((reps, S), dtype=bool)
        np.put_along_axis(failed_sites, order, failed_o, axis=1)
        known_down |= failed_sites
        n_failed = failed_sites.sum(axis=1)

        # The realised costs: the expected ones plus the sampled latency jitter of the two transfers (the same
        # draws whatever the engine chose, so engines stay comparable draw by draw).
        z = np.concatenate([g.standard_normal((2, reps_per_group)) for g in jitter_rngs], axis=1)
        link_up, link_down = (state, chosen), (chosen, np.full(reps, m))
        extra = [
            np.maximum(0.0, net.jitter_mean_s[link] + net.jitter_std_s[link] * z[k]) - net.jitter_mean_s[link]
            for k, link in enumerate((link_up, link_down))
        ]
        jitter = model.latency_deviation(state, chosen, extra[0], extra[1])
        time = here.time_s[r_idx, chosen] + jitter.time_s + n_failed * fail_time[state]
        spent = here.energy_j[r_idx, chosen] + jitter.energy_j + n_failed * fail_energy[state]
        if engine.recovery == "checkpoint":
            remote = chosen != m
            overhead = kube.checkpoint_overhead * work.mi[:, t] / model.mips[chosen]
            restore = np.where(n_failed > 0, kube.restore_s, 0.0)
            checkpoint = np.where(remote, overhead + restore, 0.0)
            time = time + checkpoint
            spent = spent + checkpoint * model.execute_power_w[chosen]

        remote_tries = n_failed + (chosen != m)
        attempts += np.where(active, remote_tries, 0)
        failures += np.where(active, n_failed, 0)
        infeasible += active & ~found
        site_of[:, t] = chosen
        task_time[:, t] = np.where(active, time, 0.0)
        energy += np.where(active, spent, 0.0)
        np.add.at(placements, (r_idx[active & offloadable], chosen[active & offloadable]), 1)

    # Response time: per application run, the sum over DAG levels of the slowest task of the level.
    slots = apps * work.levels
    level_max = np.zeros(reps * slots)
    np.maximum.at(level_max, (r_idx[:, None] * slots + work.key).ravel(), task_time.ravel())
    rt = level_max.reshape(reps, slots).sum(axis=1)
    predicted, true = belief.mean(axis=1), up.mean(axis=1)
    return [
        RunResult(
            rt_s=rt[rows],
            energy_j=energy[rows],
            offload_attempts=attempts[rows],
            failures=failures[rows],
            infeasible=infeasible[rows],
            placements=placements[rows],
            predicted_availability=predicted[rows],
            true_availability=true[rows],
        )
        for rows in (slice(g * reps_per_group, (g + 1) * reps_per_group) for g in range(len(groups)))
    ]
