"""The argument parser of every edgeoff command and daemon: a usage error is one line, exit code 2.

    edgeoff evaluate: error: argument --seed: must be at least 0: '-1' (see edgeoff evaluate --help)

argparse prints the whole usage block before the error; for a newcomer the error is the news, and `--help`
is one command away.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

__all__ = ["EXIT_USAGE", "OneLineParser"]

EXIT_USAGE = 2  # the code argparse uses for usage errors


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line naming where to read more; subparsers made from
    it are of the same class."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
