"""Cost model: response time and the phone's energy of running tasks, and the rules that add them up.

A task has instructions `mi` (MI), an input of `input_kb` and an output of `output_kb` (KB). Its input is
the result of its source predecessor (the deepest one, on site a: the MDP state), and every result also
returns to the phone, so the input is on site a and on the phone (an application's first tasks: on the
phone only). Run on site b, the rules are:

1. Data moves once. Nothing moves when b holds the input already: b == a, or b is the phone (it has every
   result). Otherwise the input moves a -> b: input_kb / bandwidth[a, b] + latency[a, b].
2. Execution: mi / mips[b].
3. Download: a remote site's result returns to the phone, output_kb / bandwidth[b, MD] + latency[b, MD];
   nothing when b is the phone.
4. The phone's power per phase: the upload at p_u when the phone sends (a is the phone), at p_i while two
   remote sites talk; execution at p_c on the phone, p_i while a remote site computes; download at p_d.
   Sending, receiving and computing are the phone's *active* phases; the others are *idle*.
5. A failed attempt costs the wait for the failure's verdict (the detector's delay, 10 x 150 ms, when the
   site was already down; less when it fails while it holds the task), at p_u when the phone was sending
   and at p_i otherwise.
6. Parallel tasks (one DAG level) run at once: the level takes the time of its slowest task, and the
   phone's idle energy is charged once per interval in which it idles, not once per task: a level costs
   its tasks' active energy plus p_i x max(0, level time - the tasks' active time)
   (:func:`level_energy_j`).

A single task's costs (:meth:`CostModel.tasks`, what an engine decides on) charge its own idle phases;
rule 6 applies when tasks are added up (the simulator and the live meter both use it).

Unlike the published prototype, every task is charged, leaves included, and so is every download.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeoff.scenario import Scenario

__all__ = ["CostModel", "Phases", "TaskCosts", "level_energy_j"]


@dataclass(frozen=True)
class TaskCosts:
    """Time (s) and phone energy (J) of running tasks on every (from, to) pair: shape (N, S, S)."""

    time_s: np.ndarray
    energy_j: np.ndarray


@dataclass(frozen=True)
class Phases:
    """Expected seconds of each phase of N tasks on every action from their states: shape (N, A)."""

    upload_s: np.ndarray
    execute_s: np.ndarray
    download_s: np.ndarray

    @property
    def at_risk_s(self) -> np.ndarray:
        """The time the chosen site holds the task: from the start of the upload to the result."""
        out: np.ndarray = self.upload_s + self.execute_s
        return out

    @property
    def time_s(self) -> np.ndarray:
        out: np.ndarray = self.upload_s + self.execute_s + self.download_s
        return out


@dataclass(frozen=True)
class CostModel:
    """The scenario compiled into arrays; S sites, the phone at index `mobile`."""

    mips: np.ndarray  # (S,)
    bandwidth_kbps: np.ndarray  # (S, S), +inf on the diagonal
    latency_s: np.ndarray  # (S, S), expected one-way latency (base + mean jitter), 0 on the diagonal
    upload_power_w: np.ndarray  # (S, S): phone power while the input moves from a to b
    execute_power_w: np.ndarray  # (S,): phone power while site b computes
    download_power_w: float
    detection_s: float
    failure_power_w: np.ndarray  # (S,): phone power while waiting for the verdict, by the state it sent from
    mobile: int
    idle_power_w: float = 0.0  # the phone's power while it idles (rule 6)

    @classmethod
    def from_scenario(cls, scenario: Scenario) -> CostModel:
        n, m, p = len(scenario.sites), scenario.mobile_index, scenario.power
        upload = np.full((n, n), p.idle_w)
        upload[:, m] = p.download_w
        upload[m, :] = p.upload_w
        execute = np.full(n, p.idle_w)
        execute[m] = p.compute_w
        failure = np.full(n, p.idle_w)
        failure[m] = p.upload_w
        return cls(
            mips=scenario.mips,
            bandwidth_kbps=scenario.network.bandwidth_kbps,
            latency_s=scenario.network.expected_latency_s,
            upload_power_w=upload,
            execute_power_w=execute,
            download_power_w=p.download_w,
            detection_s=scenario.detection.detection_s,
            failure_power_w=failure,
            mobile=m,
            idle_power_w=p.idle_w,
        )

    @property
    def n_sites(self) -> int:
        return int(self.mips.shape[0])

    def tasks(
        self,
        mi: np.ndarray,
        input_kb: np.ndarray,
        output_kb: np.ndarray,
        latency_s: np.ndarray | None = None,
    ) -> TaskCosts:
        """Costs of N tasks (arrays of shape (N,)) on every (from, to) pair: shape (N, S, S).

        `latency_s` overrides the expected latency, shape (S, S) or (N, S, S) (sampled jitter).
        """
        lat = self.latency_s if latency_s is None else latency_s
        mi, input_kb, output_kb = (
            np.asarray(x, dtype=float)[:, None, None] for x in (mi, input_kb, output_kb)
        )
        upload = input_kb / self.bandwidth_kbps + lat  # (N, S, S); 0 on the diagonal (x/inf + 0)
        upload = np.where(np.arange(self.n_sites) == self.mobile, 0.0, upload)  # rule 1: on the phone
        execute = mi / self.mips[None, None, :]  # (N, 1, S)
        to_phone = lat[..., :, self.mobile] if lat.ndim == 3 else lat[:, self.mobile]
        download = output_kb / self.bandwidth_kbps[None, None, :, self.mobile] + to_phone[..., None, :]
        download = np.where(np.arange(self.n_sites) == self.mobile, 0.0, download)  # (N, 1, S)
        time = upload + execute + download
        energy = (
            upload * self.upload_power_w + execute * self.execute_power_w + download * self.download_power_w
        )
        return TaskCosts(time_s=time, energy_j=energy)

    def phases(
        self, mi: np.ndarray, input_kb: np.ndarray, output_kb: np.ndarray, state: np.ndarray
    ) -> Phases:
        """Expected phases (N, A) of N tasks (arrays (N,)) whose inputs sit on `state` (N,) site indices."""
        mi, input_kb, output_kb = (np.asarray(x, dtype=float)[:, None] for x in (mi, input_kb, output_kb))
        m = self.mobile
        to_phone = np.arange(self.n_sites) == m
        bw, lat = self.bandwidth_kbps[state], self.latency_s[state]  # (N, A)
        upload = np.where(to_phone, 0.0, input_kb / bw + lat)
        execute = mi / self.mips
        download = np.where(to_phone, 0.0, output_kb / self.bandwidth_kbps[:, m] + self.latency_s[:, m])
        return Phases(upload, execute, download)

    @property
    def upload_idle(self) -> np.ndarray:
        """(S, S) bool: the phone idles while the input moves from a to b (two remote sites talk)."""
        sites = np.arange(self.n_sites)
        out: np.ndarray = (sites[:, None] != self.mobile) & (sites[None, :] != self.mobile)
        return out

    def phase_power_w(self, kind: str, src: int, dst: int) -> float:
        """The phone's power (W) in a measured phase of a task (kinds: upload, execute, download, detect,
        checkpoint, restore) sent from `src` to `dst` (rules 4 and 5)."""
        match kind:
            case "upload":
                return float(self.upload_power_w[src, dst])
            case "execute" | "checkpoint" | "restore":
                return float(self.execute_power_w[dst])
            case "download":
                return float(self.download_power_w)
            case "detect":
                return float(self.failure_power_w[src])
        raise ValueError(f"unknown phase {kind!r}")

    def phase_active(self, kind: str, src: int, dst: int) -> bool:
        """Whether the phone works (sends, receives, computes) in that phase rather than idles."""
        match kind:
            case "upload":
                return not bool(self.upload_idle[src, dst])
            case "execute":
                return dst == self.mobile
            case "download":
                return True
            case "detect":
                return src == self.mobile
        return False  # checkpoint and restore: a remote site works

    def latency_deviation(
        self, src: np.ndarray, dst: np.ndarray, upload_extra_s: np.ndarray, download_extra_s: np.ndarray
    ) -> TaskCosts:
        """Extra time and energy (N,) when the upload src -> dst and the download dst -> phone take
        `upload_extra_s` and `download_extra_s` (N,) longer than expected (sampled latency jitter)."""
        up = np.where(src != dst, upload_extra_s, 0.0)
        down = np.where(dst != self.mobile, download_extra_s, 0.0)
        return TaskCosts(
            time_s=up + down,
            energy_j=up * self.upload_power_w[src, dst] + down * self.download_power_w,
        )

    def failure(self) -> TaskCosts:
        """Cost of one failed offload attempt by the state it was sent from: shape (1, S, 1)."""
        time = np.full((1, self.n_sites, 1), self.detection_s)
        return TaskCosts(time_s=time, energy_j=time * self.failure_power_w[None, :, None])


def level_energy_j(
    level: np.ndarray, time_s: np.ndarray, active_s: np.ndarray, active_j: np.ndarray, idle_w: float
) -> float:
    """The phone's energy (J) of tasks grouped into DAG levels (rule 6).

    Per task (arrays (N,)): its level key (any integers; one key per level of one application run), its
    time, the seconds the phone was active for it and the energy of those active phases. Each level adds
    its tasks' active energy and idle power for the rest of the level: max(0, slowest task - active time).
    """
    keys, inverse = np.unique(np.asarray(level), return_inverse=True)
    slowest = np.zeros(keys.size)
    np.maximum.at(slowest, inverse, np.asarray(time_s, dtype=float))
    active = np.bincount(inverse, weights=np.asarray(active_s, dtype=float), minlength=keys.size)
    idle = np.maximum(0.0, slowest - active)
    return float(np.sum(active_j) + idle_w * idle.sum())
