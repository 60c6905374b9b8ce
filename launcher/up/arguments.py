"""The command line of `edgeoff up`; every value is checked here, before anything is started or written."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from launcher.up.command import run
from mobile_agent.planner import LIVE_ENGINES

__all__ = ["add_parser", "host_port", "redis_url"]

# Failure injection: each site follows its LANL node's Markov chain with `--time-compression` trace seconds
# per wall second. The default is the scenario's [simulation] time_compression (3600, one trace hour per
# second), the setting the offline simulator uses too: DS1 then sees about three failures in two minutes
# (sum of 1/MTTF over its four nodes is 0.024 per trace hour).


def _positive(unit: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of {unit}: {text!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be a positive, finite number of {unit}: {text!r}")
        return value

    return parse


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0: {text!r}")
    return value


def host_port(text: str) -> tuple[str, int]:
    """HOST:PORT (HOST defaults to 127.0.0.1), the port in 1-65535."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def redis_url(text: str) -> str:
    """A URL that redis-py accepts (redis://, rediss:// or unix://)."""
    try:
        redis.Redis.from_url(text).close()  # parses only: no connection is made
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a Redis URL ({exc}): {text!r}") from None
    return text


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "up",
        help="run the live system locally (brokers, sites, prediction worker, agent)",
        description="Run brokers, one site daemon per site of a dataset (failure injection on), a prediction "
        "worker and a mobile agent; print the results and write DIR/results.json.",
    )
    parser.add_argument(
        "--duration", type=_positive("seconds"), default=120.0, help="seconds of applications (default 120)"
    )
    parser.add_argument("--dataset", default="DS1", help="dataset configuration (default DS1)")
    parser.add_argument(
        "--engine", default="mdp-svr", choices=LIVE_ENGINES, help=f"one of {', '.join(LIVE_ENGINES)}"
    )
    parser.add_argument("--out", type=Path, default=Path("run"), help="output folder (default run/)")
    parser.add_argument(
        "--time-compression",
        type=_positive("trace seconds per wall second"),
        default=None,
        help="trace seconds per wall second of failure injection (default: the scenario's [simulation] "
        "time_compression, 3600)",
    )
    parser.add_argument(
        "--broker",
        type=host_port,
        default="127.0.0.1:1883",
        help="MQTT broker HOST:PORT, reused when it answers MQTT (else the project's brokers are started)",
    )
    parser.add_argument(
        "--redis",
        type=redis_url,
        default="redis://127.0.0.1:6379/0",
        help="Redis URL, reused when it answers (else the project's Redis is started)",
    )
    parser.add_argument(
        "--own-brokers",
        action="store_true",
        help="always start the project's Mosquitto and Redis (brokers/: accounts, ACL, passwords) on free "
        "ports, even when --broker or --redis answers",
    )
    parser.add_argument("--scenario", type=Path, help="scenario TOML (default: the paper's)")
    parser.add_argument("--seed", type=_seed, default=0, help="seed of the workload and the failure chains")
    parser.add_argument(
        "--time-scale",
        type=_positive("wall seconds per emulated second"),
        default=1.0,
        help="wall seconds per emulated second",
    )
    parser.set_defaults(func=run)
