"""Generate the broker secrets of an edgeoff deployment: MQTT accounts, the rendered ACL, the Redis password.

Run it with the project's Python (it imports edgeoff), from anywhere:

    .venv/bin/python brokers/make-passwords.py                      # sites and agent of the paper scenario
    .venv/bin/python brokers/make-passwords.py --sites ed,ec,er,cd --agents md,tablet
    .venv/bin/python brokers/make-passwords.py --scenario my.toml --secrets /etc/edgeoff/secrets
    .venv/bin/python brokers/make-passwords.py --workers 1 --observers explorer,laptop

Writes into the secrets directory (default brokers/secrets/, git-ignored; mode 0700, files 0600):
  passwords/<username>   the password of each account (site-<id>, agent-<id>, worker, worker-<n>,
                         observer, observer-<name>, observer-probe), for MQTT and Redis alike
  passwd                 Mosquitto password file (hashed with `mosquitto_passwd -U`)
  acl                    brokers/mosquitto/acl expanded for these accounts
  redis-password         the password of Redis' `default` user (operators; no daemon, no health check)
  redis-auth.conf        brokers/redis/users.acl expanded for these accounts (password hashes only)
Each account holds one connection at a time (the broker uses the username as the client id): give each
extra worker and each extra watching tool its own account. Existing passwords are kept (so running
daemons keep working) unless --rotate. After a change, reload Mosquitto (SIGHUP) so it reads the new
passwd and acl, and restart Redis (its users come from an included config file, read at start only).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgeoff.errors import EdgeoffError
from edgeoff.scenario import load_scenario
from launcher.brokers import generate_secrets

HERE = Path(__file__).resolve().parent


def _ids(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make-passwords.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--secrets", type=Path, default=HERE / "secrets", help="secrets directory")
    parser.add_argument("--scenario", help="scenario file whose sites get accounts (default: the paper's)")
    parser.add_argument("--sites", help="comma-separated site ids (instead of the scenario's)")
    parser.add_argument(
        "--agents", help="comma-separated agent ids (default: the scenario's mobile device id)"
    )
    parser.add_argument("--workers", help="comma-separated ids of extra workers: accounts worker-<id>")
    parser.add_argument(
        "--observers", help="comma-separated names of extra observers: accounts observer-<name>"
    )
    parser.add_argument("--rotate", action="store_true", help="new passwords for every account")
    parser.add_argument("--mosquitto-passwd", help="path of mosquitto_passwd (default: from PATH)")
    args = parser.parse_args(argv)
    try:
        scenario = load_scenario(args.scenario) if args.sites is None or args.agents is None else None
        # The mobile device runs the agent, not a site daemon: it never fails and executes locally.
        sites = (
            _ids(args.sites)
            if scenario is None or args.sites is not None
            else [s for s in scenario.site_ids if s != scenario.mobile_id]
        )
        agents = _ids(args.agents) if scenario is None or args.agents is not None else [scenario.mobile_id]
        accounts = generate_secrets(
            args.secrets,
            sites=sites,
            agents=agents,
            workers=_ids(args.workers or ""),
            observers=_ids(args.observers or ""),
            acl_template=HERE / "mosquitto" / "acl",
            redis_users_template=HERE / "redis" / "users.acl",
            rotate=args.rotate,
            mosquitto_passwd=args.mosquitto_passwd,
        )
    except (EdgeoffError, OSError) as exc:
        print(f"make-passwords: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.secrets}: accounts {', '.join(a.username for a in accounts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
