"""Scenario as data: sites, links, power, task classes, applications and datasets.

A scenario is a human-editable TOML file validated by frozen pydantic models. `load_scenario()` turns any
problem into one `ScenarioError` naming the file, the field and the reason. `Scenario.arrays()` compiles the
model into the numpy arrays that the cost model, the engines and the simulator use.
"""

from __future__ import annotations

import tomllib
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from edgeoff.errors import ScenarioError
from edgeoff.ids import Id

__all__ = [
    "DEFAULT_TIME_COMPRESSION",
    "DEPRECATED_KEYS",
    "SITE_TYPES",
    "App",
    "Decision",
    "Detector",
    "Link",
    "NetworkArrays",
    "Power",
    "Scenario",
    "Simulation",
    "Site",
    "Task",
    "TaskClass",
    "default_scenario",
    "load_scenario",
]

SiteType = Literal["MD", "ED", "EC", "ER", "CD"]
SITE_TYPES: tuple[SiteType, ...] = ("MD", "ED", "EC", "ER", "CD")
SiteId = Id  # also safe as an MQTT topic level (edgeoff.ids)
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Site(_Model):
    id: SiteId
    type: SiteType
    mips: Positive
    memory_gb: Positive
    storage_gb: Positive


class Link(_Model):
    """A symmetric link; `between` names two site ids or two site types.

    `bandwidth_kbyte_s` is in kilobytes (not kilobits) per second; the former key `bandwidth_kbps`, which
    meant the same, is still read, with a warning (:data:`DEPRECATED_KEYS`).
    """

    between: tuple[str, str]
    bandwidth_kbyte_s: Positive
    latency_ms: NonNegative
    jitter_mean_ms: NonNegative = 0.0
    jitter_std_ms: NonNegative = 0.0


class Power(_Model):
    """The phone's power per phase (W) and its battery (J)."""

    upload_w: Positive
    download_w: Positive
    compute_w: Positive
    idle_w: NonNegative
    battery_j: Positive


class Detector(_Model):
    """The heartbeat failure detector: a site missing `missed_heartbeats` in a row is declared down."""

    heartbeat_ms: Positive = 150.0
    missed_heartbeats: Annotated[int, Field(ge=1)] = 10

    @property
    def detection_s(self) -> float:
        """Seconds from a site's failure to the detector's verdict."""
        return self.heartbeat_ms * self.missed_heartbeats / 1000.0


DEFAULT_TIME_COMPRESSION = 3600.0  # trace seconds per wall second: one LANL hour per second


class Simulation(_Model):
    """Time in the offline simulator and the live run (the same settings for both).

    `time_compression`: trace seconds per wall second; the sites' failures (the LANL chains, in trace
    time) advance this much faster than the tasks (in model seconds, one wall second each live at time
    scale 1). `edgeoff up`, the site daemons' failure injection and the simulator all take it from here.
    `think_s`: model seconds the phone waits between two application runs. `prediction_window_h`: the
    trace hours of one availability window of the forecasters (one LANL day).
    """

    time_compression: Positive = DEFAULT_TIME_COMPRESSION
    think_s: NonNegative = 0.0
    prediction_window_h: Positive = 24.0

    @property
    def trace_h_per_s(self) -> float:
        """Trace hours per model second."""
        return self.time_compression / 3600.0

    def window_s(self, time_compression: float | None = None) -> float:
        """Wall seconds of one availability window live: `prediction_window_h` at `time_compression`
        trace seconds per wall second (None: this one), the rate of the sites' failures."""
        return self.prediction_window_h * 3600.0 / (time_compression or self.time_compression)


class Decision(_Model):
    discount: Annotated[float, Field(ge=0, lt=1)] = 0.0
    time_weight_per_s: NonNegative = 1.0
    energy_weight_per_j: NonNegative = 1.0


class TaskClass(_Model):
    """Uniform ranges [low, high] of instructions (MI), input and output sizes (KB)."""

    mi: tuple[NonNegative, NonNegative]
    input_kb: tuple[NonNegative, NonNegative]
    output_kb: tuple[NonNegative, NonNegative]

    @model_validator(mode="after")
    def _ordered(self) -> TaskClass:
        for name in ("mi", "input_kb", "output_kb"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name}: low {low} is above high {high}")
        return self


class Task(_Model):
    name: str
    memory_gb: Positive
    class_: str = Field(alias="class")
    offloadable: bool
    after: tuple[str, ...] = ()


class App(_Model):
    name: str
    probability: Annotated[float, Field(ge=0, le=1)]
    tasks: tuple[Task, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _acyclic_in_order(self) -> App:
        seen: set[str] = set()
        for task in self.tasks:
            if task.name in seen:
                raise ValueError(f"task {task.name!r} appears twice")
            for pred in task.after:
                if pred not in seen:
                    raise ValueError(
                        f"task {task.name!r} runs after {pred!r}, which is not listed before it "
                        "(list tasks in a topological order)"
                    )
            seen.add(task.name)
        return self

    @cached_property
    def levels(self) -> tuple[int, ...]:
        """DAG level of each task: 0 for sources, else 1 + the deepest predecessor's level."""
        index = {t.name: i for i, t in enumerate(self.tasks)}
        level: list[int] = []
        for task in self.tasks:
            level.append(1 + max((level[index[p]] for p in task.after), default=-1))
        return tuple(level)

    @cached_property
    def sources(self) -> tuple[int, ...]:
        """Index of the predecessor whose site holds each task's input (-1: the phone).

        The input comes from the deepest predecessor (the last listed on ties): that is the MDP state.
        """
        index = {t.name: i for i, t in enumerate(self.tasks)}
        out: list[int] = []
        for task in self.tasks:
            preds = [index[p] for p in task.after]
            out.append(max(preds, key=lambda i: (self.levels[i], i)) if preds else -1)
        return tuple(out)


@dataclass(frozen=True)
class NetworkArrays:
    """Pairwise link properties, shape (S, S), symmetric, zero time on the diagonal.

    bandwidth_kbps is in kilobytes per second (the links' bandwidth_kbyte_s), +inf on the diagonal (no
    transfer); latency and jitter are in seconds.
    """

    bandwidth_kbps: np.ndarray
    latency_s: np.ndarray
    jitter_mean_s: np.ndarray
    jitter_std_s: np.ndarray

    @property
    def expected_latency_s(self) -> np.ndarray:
        latency: np.ndarray = self.latency_s + self.jitter_mean_s
        return latency


class Scenario(_Model):
    name: str
    description: str = ""
    sites: tuple[Site, ...] = Field(min_length=2)
    links: tuple[Link, ...]
    power: Power
    detection: Detector = Detector()
    simulation: Simulation = Simulation()
    decision: Decision = Decision()
    task_classes: dict[str, TaskClass]
    apps: tuple[App, ...] = Field(min_length=1)
    datasets: dict[str, dict[str, str]]
    _source: str = PrivateAttr(default="<scenario>")  # the file it was read from, for error messages

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        ids = [s.id for s in self.sites]
        if len(set(ids)) != len(ids):
            raise ValueError("site ids must be unique")
        if [s.type for s in self.sites].count("MD") != 1:
            raise ValueError("exactly one site must be the mobile device (type MD)")
        total = sum(a.probability for a in self.apps)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"app probabilities sum to {total:g}, not 1")
        for app in self.apps:
            for task in app.tasks:
                if task.class_ not in self.task_classes:
                    raise ValueError(f"app {app.name}: task {task.name}: unknown class {task.class_!r}")
        for name, mapping in self.datasets.items():
            for site in mapping:
                if site not in ids:
                    raise ValueError(f"dataset {name}: unknown site {site!r}")
                if site == self.mobile_id:
                    raise ValueError(f"dataset {name}: the mobile device {site!r} does not fail")
        self.network  # noqa: B018  (every pair must have a link: fail at load time, not mid-run)
        return self

    # --- derived views -------------------------------------------------------------------------------

    @property
    def site_ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.sites)

    @property
    def site_types(self) -> tuple[str, ...]:
        return tuple(s.type for s in self.sites)

    @property
    def mobile_id(self) -> str:
        return next(s.id for s in self.sites if s.type == "MD")

    @property
    def mobile_index(self) -> int:
        return self.site_ids.index(self.mobile_id)

    @property
    def mips(self) -> np.ndarray:
        """Shape (S,), MIPS of each site."""
        return np.array([s.mips for s in self.sites], dtype=float)

    @property
    def memory_gb(self) -> np.ndarray:
        """Shape (S,), memory of each site in GB."""
        return np.array([s.memory_gb for s in self.sites], dtype=float)

    @cached_property
    def network(self) -> NetworkArrays:
        n = len(self.sites)
        shape = (n, n)
        bandwidth = np.full(shape, np.inf)
        latency, jitter_mean, jitter_std = np.zeros(shape), np.zeros(shape), np.zeros(shape)
        for i, a in enumerate(self.sites):
            for j, b in enumerate(self.sites):
                if i == j:
                    continue
                link = self._link(a, b)
                bandwidth[i, j] = link.bandwidth_kbyte_s
                latency[i, j] = link.latency_ms / 1000.0
                jitter_mean[i, j] = link.jitter_mean_ms / 1000.0
                jitter_std[i, j] = link.jitter_std_ms / 1000.0
        return NetworkArrays(bandwidth, latency, jitter_mean, jitter_std)

    def _link(self, a: Site, b: Site) -> Link:
        by_type: Link | None = None
        for link in self.links:
            if set(link.between) == {a.id, b.id} and (a.id != b.id):
                return link
            if sorted(link.between) == sorted((a.type, b.type)):
                by_type = link
        if by_type is None:
            raise ValueError(f"no link between sites {a.id!r} and {b.id!r} (types {a.type}, {b.type})")
        return by_type

    @property
    def source(self) -> str:
        """The file this scenario was read from ("paper.toml" for the default), for error messages."""
        return self._source

    def node_field(self, datasets: Sequence[str], node: str) -> str:
        """The scenario field that names `node` first among `datasets`, e.g. "datasets.DS1.ed"."""
        return next(
            (
                f"datasets.{name}.{site}"
                for name in datasets
                for site, n in self.dataset(name).items()
                if n == node
            ),
            "datasets",
        )

    def require_nodes(self, datasets: Sequence[str], known: Collection[str], where: str) -> None:
        """Raise ScenarioError naming the file and the field of the first node of `datasets` that is not
        in `known` (the nodes of the failure data, described by `where`)."""
        for name in datasets:
            for node in self.dataset(name).values():
                if node not in known:
                    field = self.node_field([name], node)
                    raise ScenarioError(f"{self.source}: {field}: unknown node {node!r} (not in {where})")

    def dataset(self, name: str) -> dict[str, str]:
        """Site id -> LANL node name of one dataset configuration."""
        if name not in self.datasets:
            known = ", ".join(self.datasets)
            raise ScenarioError(f"unknown dataset {name!r} (scenario {self.name!r} has: {known})")
        return self.datasets[name]


def _format_validation_error(source: str, exc: ValidationError) -> str:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "(top level)"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{source}: {field}: {err['msg']}{more}"


# Keys renamed in a table of a scenario: (table, old key) -> new key. The old key is still read, with a
# FutureWarning naming the file and the field (shown by default, and by the edgeoff command as one line).
DEPRECATED_KEYS = {("links", "bandwidth_kbps"): "bandwidth_kbyte_s"}  # it was always KB/s, never kilobits


def _renamed_keys(raw: dict[str, object], source: str) -> None:
    """Rename deprecated keys in place, warning once per key; both keys in one table is an error."""
    for (table, old), new in DEPRECATED_KEYS.items():
        rows = raw.get(table)
        if not isinstance(rows, list):
            continue
        fields = []
        for i, row in enumerate(rows):
            if isinstance(row, dict) and old in row:
                if new in row:
                    raise ScenarioError(f"{source}: {table}.{i}: give {new} or {old} (deprecated), not both")
                row[new] = row.pop(old)
                fields.append(f"{table}.{i}.{old}")
        if fields:
            warnings.warn(
                f"{source}: {fields[0]}{' and others' if len(fields) > 1 else ''}: {old} is deprecated, "
                f"rename it {new} (same value: kilobytes per second)",
                FutureWarning,
                stacklevel=3,
            )


def parse_scenario(text: str, *, source: str = "<scenario>") -> Scenario:
    """Validate a scenario from TOML text; any problem is one ScenarioError naming source and field."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    _renamed_keys(raw, source)
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(_format_validation_error(source, exc)) from None
    scenario._source = source
    return scenario


def load_scenario(path: str | Path | None = None) -> Scenario:
    """Load a scenario file, or the paper's default scenario when path is None."""
    if path is None:
        text = resources.files("edgeoff.scenarios").joinpath("paper.toml").read_text(encoding="utf-8")
        return parse_scenario(text, source="paper.toml")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{p}: not a UTF-8 text file") from None
    return parse_scenario(text, source=str(p))


def default_scenario() -> Scenario:
    return load_scenario(None)
