"""The `edgeoff` umbrella command.

Each subcommand lives in its own module (`edgeoff.commands.<name>` for the commands over the pure core and
the wire contract, `launcher.<name>` for those that start processes) and exposes `add_parser(subparsers)`,
which registers its parser and sets `func(args) -> int`.
Any EdgeoffError becomes a one-line message on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence
from typing import TextIO

from edgeoff import __version__
from edgeoff.commands.parser import EXIT_USAGE, OneLineParser
from edgeoff.errors import EdgeoffError

# Subcommands and their one-line help. Only the module of the command being run is imported: the others
# pull in numpy, scikit-learn or the daemons, and `edgeoff health` must answer a Kubernetes probe quickly.
# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "evaluate": ("edgeoff.commands.evaluate", "run the paper's evaluation offline"),
    "traces": ("edgeoff.commands.traces", "LANL failure traces"),
    "twin": ("edgeoff.commands.twin", "replay a live run through the offline simulator and compare"),
    "up": ("launcher.up.arguments", "run the live system locally (brokers, sites, prediction worker, agent)"),
    "status": ("edgeoff.commands.status", "live table of sites, workers and agents"),
    "health": ("edgeoff.commands.health", "check a daemon's health file (probes)"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; `command` names the one subcommand whose module is imported (None: every one)."""
    parser = OneLineParser(prog="edgeoff", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"edgeoff {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if command is None or name == command:
            importlib.import_module(module).add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=help_text)
    return parser


def _warn_in_one_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A warning (e.g. a deprecated scenario key) as one line on stderr, like an error."""
    print(f"edgeoff: warning: {message}", file=sys.stderr if file is None else file)


def main(argv: Sequence[str] | None = None) -> int:
    warnings.showwarning = _warn_in_one_line
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((w for w in words if not w.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else "")
    args = parser.parse_args(words)
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
