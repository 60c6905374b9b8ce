"""The `edgeoff` umbrella command.

Each subcommand lives in `edgeoff.commands.<name>` and exposes
`add_parser(subparsers)`, which registers its parser and sets `func(args) -> int`.
Any EdgeoffError becomes a one-line message on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from edgeoff import __version__
from edgeoff.errors import EdgeoffError

EXIT_USAGE = 2  # bad input: the same code argparse uses for usage errors


def build_parser() -> argparse.ArgumentParser:
    from edgeoff.commands import evaluate, health, status, traces, up

    parser = argparse.ArgumentParser(prog="edgeoff", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"edgeoff {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (evaluate, traces, up, status, health):
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except EdgeoffError as exc:
        print(f"edgeoff {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"edgeoff {args.command}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
