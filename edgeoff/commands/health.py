"""`edgeoff health FILE [--max-age 10] [--ready]`: a daemon's health file as an exit code.

Exit 0 when the file was rewritten at most `--max-age` seconds ago (the serve loop is alive) and, with
`--ready`, the daemon is connected to the broker and Redis answers; exit 1 otherwise. One line of output
either way. This is the command behind the Kubernetes liveness (`edgeoff health FILE`) and readiness
(`edgeoff health FILE --ready`) probes and the compose healthchecks. `python -m edgeoff.commands.health
FILE` runs the same check in a third of the time (it loads no other subcommand): use it where a probe's
timeout is short.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from edgeoff.ops.health import check_health

__all__ = ["DEFAULT_MAX_AGE_S", "add_parser", "main", "run"]

DEFAULT_MAX_AGE_S = 10.0  # ten rewrites missed (1 s interval): a stuck loop, not a slow one
EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "health", help="check a daemon's health file (probes)", description=__doc__.splitlines()[0]
    )
    parser.add_argument("file", type=Path, help="the daemon's health file (its health_file setting)")
    parser.add_argument(
        "--max-age",
        type=float,
        default=DEFAULT_MAX_AGE_S,
        help=f"seconds since the last rewrite still counted as alive (default {DEFAULT_MAX_AGE_S:g})",
    )
    parser.add_argument(
        "--ready", action="store_true", help="also require readiness (broker connected, Redis reachable)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = check_health(args.file, max_age_s=args.max_age, need_ready=args.ready, now=time.time())
    print(result.message)
    return EXIT_HEALTHY if result.ok else EXIT_UNHEALTHY


def main(argv: list[str] | None = None) -> int:
    """`python -m edgeoff.commands.health FILE ...`: the same check without loading every subcommand."""
    parser = argparse.ArgumentParser(prog="edgeoff health", description=__doc__.splitlines()[0])
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["health", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
