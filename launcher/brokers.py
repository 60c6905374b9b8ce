"""Accounts and configuration of the brokers (Mosquitto, Redis) from the files under `brokers/`.

The configuration files in `brokers/` are the single source: compose and k8s mount them as they are;
the tests, `edgeoff up` and host installs render a copy in which only the listed directives change
(ports, addresses, paths, the user to run as). Pure functions come first (`accounts`, `render_acl`,
`render_conf`); the thin functions at the end read the templates and write files (`write_*`,
`generate_secrets`), for `brokers/make-passwords.py`, `edgeoff up` and the tests.

The accounts and the rendering of their access rules (Mosquitto ACL, Redis users) are in
launcher.accounts; its names are re-exported here.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from edgeoff.files import atomic_write
from launcher.accounts import (
    Account,
    BrokerConfigError,
    Role,
    accounts,
    agent_username,
    observer_username,
    render_acl,
    render_redis_users,
    site_username,
    worker_username,
)

__all__ = [
    "MOSQUITTO_OVERRIDABLE",
    "REDIS_OVERRIDABLE",
    "Account",
    "BrokerConfigError",
    "Role",
    "accounts",
    "agent_username",
    "default_brokers_dir",
    "generate_secrets",
    "observer_username",
    "render_acl",
    "render_conf",
    "render_redis_users",
    "site_username",
    "worker_username",
    "write_mosquitto_config",
    "write_redis_config",
]

# Directives that a rendered copy may change; everything else is used exactly as written in brokers/.
MOSQUITTO_OVERRIDABLE = frozenset(
    {"listener", "user", "password_file", "acl_file", "persistence_location", "include_dir"}
)
MOSQUITTO_TLS_OVERRIDABLE = frozenset({"listener", "cafile", "certfile", "keyfile"})
REDIS_OVERRIDABLE = frozenset({"bind", "port", "dir", "include"})

_SECRET_MODE = 0o600
_SECRET_DIR_MODE = 0o700


def render_conf(template: str, overrides: Mapping[str, str], *, allowed: frozenset[str]) -> str:
    """Replace the value of each directive in `overrides` (each must occur exactly once in `template`).

    Works for both Mosquitto and Redis files (`directive value...`, `#` comments). A key outside
    `allowed`, missing from the template or present more than once is an error, so a template edit
    cannot make a rendered copy silently keep a production path.
    """
    unknown = set(overrides) - allowed
    if unknown:
        raise BrokerConfigError(
            f"directives {sorted(unknown)} may not be overridden (allowed: {sorted(allowed)})"
        )
    seen: dict[str, int] = dict.fromkeys(overrides, 0)
    out: list[str] = []
    for line in template.splitlines():
        stripped = line.strip()
        key = stripped.split(maxsplit=1)[0] if stripped and not stripped.startswith("#") else ""
        if key in overrides:
            seen[key] += 1
            value = overrides[key]
            if "\n" in value or "\r" in value:
                raise BrokerConfigError(f"value of {key} must be a single line")
            line = f"{key} {value}"
        out.append(line)
    wrong = {k: n for k, n in seen.items() if n != 1}
    if wrong:
        raise BrokerConfigError(f"each overridden directive must occur exactly once; found {wrong}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------- files


def default_brokers_dir() -> Path:
    """`brokers/` of the source tree this package runs from (an editable install or a clone)."""
    return Path(__file__).resolve().parent.parent / "brokers"


def _write_secret(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600 from the start (never readable by others, even briefly)."""
    atomic_write(path, text, mode=_SECRET_MODE)


def generate_secrets(
    secrets_dir: Path,
    *,
    sites: Iterable[str],
    agents: Iterable[str],
    workers: Iterable[str] = (),
    observers: Iterable[str] = (),
    acl_template: Path | None = None,
    redis_users_template: Path | None = None,
    rotate: bool = False,
    mosquitto_passwd: str | None = None,
    mqtt: bool = True,
) -> tuple[Account, ...]:
    """Create or update the secrets directory of a deployment (mode 0700, files 0600).

    - `passwords/<username>`: one random password per account (kept across runs unless `rotate`), the
      file a daemon points `BrokerSettings.password_file` and `RedisSettings.password_file` at (one
      password per account, for MQTT and Redis alike);
    - `passwd`: the Mosquitto password file (rebuilt from the accounts, hashed by `mosquitto_passwd -U`,
      so no password ever appears on a command line) and `acl`, the ACL template rendered for these
      accounts (both skipped with `mqtt=False`, for a run that reuses its MQTT broker);
    - `redis-password` (the operators' `default` user) and `redis-auth.conf`, included by
      brokers/redis/redis.conf: one ACL user per account with the SHA-256 of its password.
    `workers` and `observers` add accounts `worker-<id>` and `observer-<name>` beside `worker` and
    `observer`. Accounts that are no longer listed lose their password file, their line in `passwd`,
    their ACL block and their Redis user.
    """
    tool = shutil.which(mosquitto_passwd or "mosquitto_passwd") if mqtt else None
    if mqtt and tool is None:
        raise BrokerConfigError(
            "mosquitto_passwd not found: install the Mosquitto broker (Debian/Ubuntu: apt-get install "
            "mosquitto; it ships mosquitto_passwd) or pass its path"
        )
    brokers = default_brokers_dir()
    accts = accounts(sites, agents, workers, observers)
    acl = render_acl((acl_template or brokers / "mosquitto" / "acl").read_text(encoding="utf-8"), accts)
    users_template = (redis_users_template or brokers / "redis" / "users.acl").read_text(encoding="utf-8")

    pw_dir = secrets_dir / "passwords"
    for d in (secrets_dir, pw_dir):
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(_SECRET_DIR_MODE)

    def password(path: Path) -> str:
        if path.is_file() and not rotate:
            existing = path.read_text(encoding="utf-8").strip()
            if existing:
                return existing
        value = secrets.token_hex(24)  # 192 bits; hex is safe unquoted in URLs and both config syntaxes
        _write_secret(path, value + "\n")
        return value

    passwords = {a.username: password(pw_dir / a.username) for a in accts}
    for stale in set(pw_dir.iterdir()) - {pw_dir / a.username for a in accts}:
        stale.unlink()  # an account that is no longer listed keeps no password behind
    if tool is not None:
        _write_mosquitto_passwd(secrets_dir / "passwd", passwords, tool)
        _write_secret(secrets_dir / "acl", acl)

    admin = password(secrets_dir / "redis-password")
    _write_secret(
        secrets_dir / "redis-auth.conf", render_redis_users(users_template, accts, passwords, admin)
    )
    return accts


def _write_mosquitto_passwd(passwd: Path, passwords: Mapping[str, str], tool: str) -> None:
    _write_secret(passwd, "".join(f"{user}:{pw}\n" for user, pw in passwords.items()))
    try:
        subprocess.run([tool, "-U", str(passwd)], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        passwd.unlink(missing_ok=True)  # never leave a plain-text password file behind
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else ""
        raise BrokerConfigError(f"{tool} -U failed: {detail or exc}") from None
    passwd.chmod(_SECRET_MODE)


def write_mosquitto_config(
    out_dir: Path,
    *,
    secrets_dir: Path,
    data_dir: Path,
    port: int = 1883,
    host: str | None = "127.0.0.1",
    tls_port: int | None = None,
    run_as: str | None = None,
    brokers_dir: Path | None = None,
) -> Path:
    """Render brokers/mosquitto for this machine into `out_dir`; returns the path of mosquitto.conf.

    `host` None listens on every interface. `tls_port` enables the TLS listener (tls.conf, with the
    certificates of `secrets_dir/tls`). `run_as` is the user Mosquitto drops to when started as root
    (default: the current user, so it can read the secrets it was given).
    """
    src = (brokers_dir or default_brokers_dir()) / "mosquitto"
    conf_d = out_dir / "conf.d"
    conf_d.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    user = run_as or _current_user()
    main = render_conf(
        (src / "mosquitto.conf").read_text(encoding="utf-8"),
        {
            "listener": f"{port} {host}" if host else str(port),
            "user": user,
            "password_file": str(secrets_dir / "passwd"),
            "acl_file": str(secrets_dir / "acl"),
            "persistence_location": f"{data_dir}{os.sep}",
            "include_dir": str(conf_d),
        },
        allowed=MOSQUITTO_OVERRIDABLE,
    )
    (out_dir / "mosquitto.conf").write_text(main, encoding="utf-8")
    tls_out = conf_d / "tls.conf"
    if tls_port is None:
        tls_out.unlink(missing_ok=True)
    else:
        tls_dir = secrets_dir / "tls"
        tls = render_conf(
            (src / "tls.conf").read_text(encoding="utf-8"),
            {
                "listener": f"{tls_port} {host}" if host else str(tls_port),
                "cafile": str(tls_dir / "ca.crt"),
                "certfile": str(tls_dir / "server.crt"),
                "keyfile": str(tls_dir / "server.key"),
            },
            allowed=MOSQUITTO_TLS_OVERRIDABLE,
        )
        tls_out.write_text(tls, encoding="utf-8")
    return out_dir / "mosquitto.conf"


def write_redis_config(
    out_dir: Path,
    *,
    secrets_dir: Path,
    data_dir: Path,
    port: int = 6379,
    bind: str = "127.0.0.1",
    brokers_dir: Path | None = None,
) -> Path:
    """Render brokers/redis/redis.conf into `out_dir` (password from `secrets_dir/redis-auth.conf`)."""
    src = (brokers_dir or default_brokers_dir()) / "redis" / "redis.conf"
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    text = render_conf(
        src.read_text(encoding="utf-8"),
        {
            "bind": bind,
            "port": str(port),
            "dir": str(data_dir),
            "include": str(secrets_dir / "redis-auth.conf"),
        },
        allowed=REDIS_OVERRIDABLE,
    )
    path = out_dir / "redis.conf"
    path.write_text(text, encoding="utf-8")
    return path


def _current_user() -> str:
    import pwd  # POSIX only, like Mosquitto's `user` option

    return pwd.getpwuid(os.getuid()).pw_name
