"""`edgeoff status`: sites, workers and agents of a running system, from the broker and Redis.

    edgeoff status [--broker HOST:PORT] [--username observer --password-file FILE] [--redis URL]
                   [--run DIR] [--seconds 3] [--watch] [--json]

Subscribes to `edgeoff/v1/#` (as the read-only observer account, where the broker requires one) for
`--seconds`: retained statuses, profiles, predictions and policies arrive at once, heartbeats show each
site's last heartbeat age and rate. Reads the predictions of record and the workers' counters from Redis
when it answers (Redis is optional: without it the retained MQTT copies are shown). Prints one table per
kind (rich), or the same as one JSON object with `--json`; `--watch` keeps listening and redraws every
`--seconds` until Ctrl-C. An unreachable or refusing broker is one line on stderr and exit code 2.
`--run DIR` takes the broker, the observer account and Redis from the `connection.json` that `edgeoff up
--out DIR` writes (file paths only, no secret), so `edgeoff status --run run/` is all a user types.

Each site shows its detector verdict (`down` while the prediction worker's latest prediction for it is
`detector:down`, 10 missed heartbeats after a hang; `up` otherwise) beside its status (`offline` only after a
Last Will or a clean stop). The tables fit 80 columns; `--json` has every field (session, heartbeat rate,
prediction version and source).

Ages: see edgeoff.commands.observation.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from edgeoff.commands.observation import CONNECT_TIMEOUT_S, Listener, read_redis
from edgeoff.errors import EdgeoffError
from edgeoff.wire.settings import BrokerSettings

__all__ = ["add_parser", "render", "run"]

DEFAULT_BROKER = "127.0.0.1:1883"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
DEFAULT_SECONDS = 3.0  # enough for every retained message and about twenty heartbeats per site
EXIT_OK = 0
CONNECTION_FILE = "connection.json"  # written by `edgeoff up` into its --out (launcher.up.command)


def _broker_settings(args: argparse.Namespace) -> BrokerSettings:
    host, sep, port = str(args.broker).rpartition(":")
    if not sep or not port.isdigit():
        raise EdgeoffError(f"--broker must be HOST:PORT, got {args.broker!r}")
    try:
        return BrokerSettings(
            host=host or "127.0.0.1",
            port=int(port),
            username=args.username,
            password_file=args.password_file,
            connect_timeout_s=CONNECT_TIMEOUT_S,
        )
    except ValueError as exc:  # pydantic's ValidationError
        raise EdgeoffError(f"--broker {args.broker}: {exc}") from None


# ---------------------------------------------------------------------- rendering


def _fmt(value: object, spec: str = "", suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:{spec}}{suffix}" if spec else f"{value}{suffix}"


def _table(title: str, columns: Sequence[tuple[str, str]]) -> Any:
    """A compact table (a rule under the headers, two spaces between columns) that fits 80 columns; the
    last column wraps rather than being cut."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
        show_edge=False,
    )
    for k, (header, justify) in enumerate(columns):
        last = k == len(columns) - 1
        table.add_column(header, justify="right" if justify == "r" else "left", no_wrap=not last)
    return table


def _fallback(fallback: object) -> str:
    """An agent's last fallback in a few words: `from -> to: reason`."""
    if not isinstance(fallback, Mapping):
        return "-"
    to = fallback.get("to") or "none"
    return f"{fallback.get('from', '?')} -> {to}: {fallback.get('reason', '')}"


def render(report: Mapping[str, Any]) -> Any:
    """rich renderables of a report: one table per kind, each fitting 80 columns."""
    from rich.console import Group
    from rich.text import Text

    sites = _table(
        "sites",
        [
            ("site", "l"),
            ("type", "l"),
            ("state", "l"),
            ("detector", "l"),
            ("heartbeat", "r"),  # its age
            ("avail.", "r"),
            ("forecaster", "l"),
            ("worker", "l"),
        ],
    )
    for row in report["sites"]:
        state = row["state"] or "-"
        verdict = row.get("detector") or "-"
        hb_age = row["heartbeat_age_s"]
        sites.add_row(
            row["site"],
            _fmt(row["type"]),
            Text(state, style={"online": "green", "offline": "red"}.get(state, "yellow")),
            Text(verdict, style={"up": "green", "down": "red"}.get(verdict, "yellow")),
            "-" if hb_age is None else f"{hb_age:.1f} s",
            _fmt(row["availability"], ".4f"),
            _fmt(row["model"]),
            _fmt(row["worker"]),
        )
    parts: list[Any] = [sites]
    if report["workers"]:
        workers = _table(
            "workers",
            [
                ("worker", "l"),
                ("sites", "l"),
                ("heartbeats", "r"),
                ("verdicts up", "r"),
                ("down", "r"),
                ("predictions", "r"),
                ("dropped", "r"),
            ],
        )
        for row in report["workers"]:
            workers.add_row(
                row["worker"],
                ",".join(row["sites"]) or "-",
                str(row["heartbeats"]),
                str(row["verdicts_up"]),
                str(row["verdicts_down"]),
                str(row["predictions_published"]),
                str(row["dropped"]),
            )
        parts += [Text(""), workers]
    if report["agents"]:
        agents = _table(
            "agents",
            [
                ("agent", "l"),
                ("engine", "l"),
                ("policy", "r"),
                ("age", "r"),
                ("apps", "r"),
                ("fallbacks", "r"),
                ("last fallback", "l"),
            ],
        )
        for row in report["agents"]:
            progress = row["progress"] or {}
            agents.add_row(
                row["agent"],
                _fmt(row["engine"]),
                _fmt(row["policy_version"], "", ""),
                _fmt(row["policy_age_s"], ".1f", " s"),
                _fmt(progress.get("apps_done")),
                _fmt(progress.get("fallbacks")),
                _fallback(row["last_fallback"]),
            )
        parts += [Text(""), agents]
    redis_state = report.get("redis", "-")
    parts.append(
        Text(f"broker {report.get('broker')}, redis {redis_state}, {report.get('observed_s')} s observed")
    )
    return Group(*parts)


# ---------------------------------------------------------------------- the command


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status", help="live table of sites, workers and agents", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--broker", default=DEFAULT_BROKER, help=f"HOST:PORT (default {DEFAULT_BROKER})")
    parser.add_argument("--username", help="broker account (the observer account is read-only)")
    parser.add_argument("--password-file", type=Path, help="file holding the broker password")
    parser.add_argument("--redis", default=DEFAULT_REDIS, help=f"Redis URL (default {DEFAULT_REDIS})")
    parser.add_argument("--no-redis", action="store_true", help="do not read Redis")
    parser.add_argument(
        "--run",
        type=Path,
        metavar="DIR",
        help="the --out of a running `edgeoff up`: its broker, observer account and Redis (connection.json)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=DEFAULT_SECONDS,
        help=f"listening window (default {DEFAULT_SECONDS:g})",
    )
    parser.add_argument("--watch", action="store_true", help="refresh every --seconds until Ctrl-C")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.set_defaults(func=run)


def _report(listener: Listener, args: argparse.Namespace, observed_s: float) -> dict[str, Any]:
    redis_view = None if args.no_redis else read_redis(args.redis)
    report = listener.observation.report(now=listener.clock(), wall=time.time(), redis=redis_view)
    redis_state = "off" if args.no_redis else ("ok" if redis_view is not None else "unreachable")
    return {
        "broker": f"{listener.settings.host}:{listener.settings.port}",
        "redis": redis_state,
        "observed_s": round(observed_s, 3),
        **report,
    }


def _from_run(args: argparse.Namespace) -> None:
    """Fill the broker, account and Redis in `args` from DIR/connection.json (see `edgeoff up`)."""
    path = args.run / CONNECTION_FILE
    try:
        connection = json.loads(path.read_text(encoding="utf-8"))
        args.broker = str(connection["broker"])
        args.username = connection.get("username")
        password_file = connection.get("password_file")
        args.password_file = None if password_file is None else Path(password_file)
        redis_url = str(connection["redis"])
        redis_password_file = connection.get("redis_password_file")
    except FileNotFoundError:
        raise EdgeoffError(f"{path} does not exist: is {args.run} the --out of `edgeoff up`?") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EdgeoffError(f"{path}: not a connection file of `edgeoff up` ({exc})") from None
    ended = f"the run in {args.run} has ended (its work folder with the passwords is gone)"
    if args.password_file is not None and not args.password_file.exists():
        raise EdgeoffError(ended)
    if redis_password_file is not None:
        try:
            password = Path(redis_password_file).read_text(encoding="utf-8").strip()
        except OSError:
            raise EdgeoffError(ended) from None
        parts = urlsplit(redis_url)
        redis_url = urlunsplit(parts._replace(netloc=f":{password}@{parts.netloc}"))
    args.redis = redis_url


def run(args: argparse.Namespace) -> int:
    if args.seconds <= 0:
        raise EdgeoffError("--seconds must be positive")
    if args.run is not None:
        _from_run(args)
    logging.getLogger("edgeoff.wire.mqtt").setLevel(logging.ERROR)  # failures become our one line
    listener = Listener(_broker_settings(args))
    try:
        listener.connect()
        started = listener.clock()
        listener.listen(args.seconds)
        if args.watch:
            return _watch(listener, args, started)
        report = _report(listener, args, listener.clock() - started)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            from rich.console import Console

            Console().print(render(report))
        return EXIT_OK
    finally:
        listener.close()


def _watch(listener: Listener, args: argparse.Namespace, started: float) -> int:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    try:
        if args.json:
            while True:
                report = _report(listener, args, listener.clock() - started)
                print(json.dumps(report, separators=(",", ":")), flush=True)
                listener.listen(args.seconds)
        with Live(console=console, auto_refresh=False) as live:
            while True:
                live.update(render(_report(listener, args, listener.clock() - started)), refresh=True)
                listener.listen(args.seconds)
    except KeyboardInterrupt:
        return EXIT_OK
