"""The command line of `edgeoff up`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from launcher.up.command import run
from mobile_agent.planner import LIVE_ENGINES

__all__ = ["add_parser"]

# Failure injection: each site follows its LANL node's Markov chain with `--time-compression` trace seconds
# per wall second. The default is the scenario's [simulation] time_compression (3600, one trace hour per
# second), the setting the offline simulator uses too: DS1 then sees about three failures in two minutes
# (sum of 1/MTTF over its four nodes is 0.024 per trace hour).


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "up",
        help="run the live system locally (brokers, sites, prediction worker, agent)",
        description="Run brokers, one site daemon per site of a dataset (failure injection on), a prediction "
        "worker and a mobile agent; print the results and write DIR/results.json.",
    )
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of applications (default 120)")
    parser.add_argument("--dataset", default="DS1", help="dataset configuration (default DS1)")
    parser.add_argument("--engine", default="mdp-svr", help=f"one of {', '.join(LIVE_ENGINES)}")
    parser.add_argument("--out", type=Path, default=Path("run"), help="output folder (default run/)")
    parser.add_argument(
        "--time-compression",
        type=float,
        default=None,
        help="trace seconds per wall second of failure injection (default: the scenario's [simulation] "
        "time_compression, 3600)",
    )
    parser.add_argument(
        "--broker", default="127.0.0.1:1883", help="MQTT broker host:port (started if absent)"
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL (started if absent)")
    parser.add_argument(
        "--own-brokers",
        action="store_true",
        help="always start the project's Mosquitto and Redis (brokers/: accounts, ACL, passwords) on free "
        "ports, even when --broker or --redis answers",
    )
    parser.add_argument("--scenario", type=Path, help="scenario TOML (default: the paper's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the workload and the failure chains")
    parser.add_argument("--time-scale", type=float, default=1.0, help="wall seconds per emulated second")
    parser.set_defaults(func=run)
