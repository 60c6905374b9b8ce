"""Cost model: response time and the phone's energy for running a task on site b after site a.

A task has instructions `mi` (MI), an input of `input_kb` and an output of `output_kb` (KB). Run on site b
when its input sits on site a (the site of its source predecessor; the phone for an application's first
tasks):

- upload:    input_kb / bandwidth[a, b] + latency[a, b]   (nothing when a == b)
- execution: mi / mips[b]
- download:  output_kb / bandwidth[b, MD] + latency[b, MD] (nothing when b is the phone): every result
             returns to the phone, which needs it (UI, next local task).

The phone's power per phase: upload p_u when the phone sends (a is the phone), p_d when it receives (b is the
phone), p_i while two remote sites talk; execution p_c locally, p_i while a remote site computes;
download p_d.
An offload to a site that is down fails after the detector's verdict (10 x 150 ms), charged at p_u when the
phone was sending and at p_i otherwise.

Unlike the published prototype, every task is charged, leaves included, and so is every download.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeoff.scenario import Scenario

__all__ = ["CostModel", "TaskCosts"]


@dataclass(frozen=True)
class TaskCosts:
    """Time (s) and phone energy (J) of running tasks on every (from, to) pair: shape (N, S, S)."""

    time_s: np.ndarray
    energy_j: np.ndarray


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
        execute = mi / self.mips[None, None, :]  # (N, 1, S)
        to_phone = lat[..., :, self.mobile] if lat.ndim == 3 else lat[:, self.mobile]
        download = output_kb / self.bandwidth_kbps[None, None, :, self.mobile] + to_phone[..., None, :]
        download = np.where(np.arange(self.n_sites) == self.mobile, 0.0, download)  # (N, 1, S)
        time = upload + execute + download
        energy = (
            upload * self.upload_power_w + execute * self.execute_power_w + download * self.download_power_w
        )
        return TaskCosts(time_s=time, energy_j=energy)

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
