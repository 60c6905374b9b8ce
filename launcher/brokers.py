"""Accounts and configuration of the brokers (Mosquitto, Redis) from the files under `brokers/`.

The configuration files in `brokers/` are the single source: compose and k8s mount them as they are;
the tests, `edgeoff up` and host installs render a copy in which only the listed directives change
(ports, addresses, paths, the user to run as). Pure functions come first (`accounts`, `render_acl`,
`render_conf`); the thin functions at the end read the templates and write files (`write_*`,
`generate_secrets`), for `brokers/make-passwords.py`, `edgeoff up` and the tests.

Account convention (see `brokers/mosquitto/acl`): `site-<site id>`, `agent-<agent id>`, `worker`,
`observer`; ids follow the wire contract's id pattern.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgeoff.errors import EdgeoffError
from edgeoff.files import atomic_write
from edgeoff.wire.topics import validate_id

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
    "render_acl",
    "render_conf",
    "site_username",
    "write_mosquitto_config",
    "write_redis_config",
]

Role = Literal["site", "agent", "worker", "observer"]

# Directives that a rendered copy may change; everything else is used exactly as written in brokers/.
MOSQUITTO_OVERRIDABLE = frozenset(
    {"listener", "user", "password_file", "acl_file", "persistence_location", "include_dir"}
)
MOSQUITTO_TLS_OVERRIDABLE = frozenset({"listener", "cafile", "certfile", "keyfile"})
REDIS_OVERRIDABLE = frozenset({"bind", "port", "dir", "include"})

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_SECRET_MODE = 0o600
_SECRET_DIR_MODE = 0o700


class BrokerConfigError(EdgeoffError):
    """A broker template, account list or secrets directory is not usable."""


@dataclass(frozen=True)
class Account:
    """One MQTT account: its username, its role and the site or agent id it stands for (if any)."""

    username: str
    role: Role
    id: str | None = None


def site_username(site: str) -> str:
    return f"site-{validate_id(site, what='site id')}"


def agent_username(agent: str) -> str:
    return f"agent-{validate_id(agent, what='agent id')}"


def _unique(ids: Iterable[str], what: str) -> tuple[str, ...]:
    out: list[str] = []
    for value in ids:
        validate_id(value, what=what)
        if value in out:
            raise BrokerConfigError(f"duplicate {what} {value!r}")
        out.append(value)
    return tuple(out)


def accounts(sites: Iterable[str], agents: Iterable[str]) -> tuple[Account, ...]:
    """Every account of a deployment: one per site, one per agent, the worker and the observer."""
    return (
        *(Account(site_username(s), "site", s) for s in _unique(sites, "site id")),
        *(Account(agent_username(a), "agent", a) for a in _unique(agents, "agent id")),
        Account("worker", "worker"),
        Account("observer", "observer"),
    )


def render_acl(template: str, *, sites: Iterable[str], agents: Iterable[str]) -> str:
    """Expand the ACL template: a block whose `user` line holds {site} ({agent}) once per site (agent).

    A block is a `user` line and the lines after it up to the next blank line. A placeholder anywhere
    else, or an unknown placeholder, is an error: the rendered file must never contain a literal `{`.
    """
    values: dict[str, tuple[str, ...]] = {
        "site": _unique(sites, "site id"),
        "agent": _unique(agents, "agent id"),
    }
    out: list[str] = []
    lines = template.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("user "):
            if not line.lstrip().startswith("#") and _PLACEHOLDER.search(line):
                raise BrokerConfigError(f"ACL template line {i + 1}: placeholder outside a user block")
            out.append(line)
            i += 1
            continue
        end = i
        while end < len(lines) and lines[end].strip():
            end += 1
        block = lines[i:end]
        names = set(_PLACEHOLDER.findall("\n".join(block)))
        if not names:
            out.extend(block)
        elif len(names) == 1 and names <= values.keys() and _PLACEHOLDER.search(line):
            (name,) = names
            for n, value in enumerate(values[name]):
                if n:
                    out.append("")
                out.extend(b.replace("{" + name + "}", value) for b in block)
        else:
            raise BrokerConfigError(
                f"ACL template line {i + 1}: a block may use one placeholder, {{site}} or {{agent}}, "
                f"on its user line (found {sorted(names)})"
            )
        i = end
    return "\n".join(out) + "\n"


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
    acl_template: Path,
    rotate: bool = False,
    mosquitto_passwd: str | None = None,
) -> tuple[Account, ...]:
    """Create or update the secrets directory of a deployment (mode 0700, files 0600).

    - `passwords/<username>`: one random password per account (kept across runs unless `rotate`), the
      file a daemon points `BrokerSettings.password_file` at;
    - `passwd`: the Mosquitto password file (rebuilt from the accounts, hashed by `mosquitto_passwd -U`,
      so no password ever appears on a command line);
    - `acl`: the ACL template rendered for these sites and agents;
    - `redis-password` and `redis-auth.conf` (`requirepass ...`, included by brokers/redis/redis.conf).
    Accounts that are no longer listed lose their password file, their line in `passwd` and their ACL
    block.
    """
    tool = shutil.which(mosquitto_passwd or "mosquitto_passwd")
    if tool is None:
        raise BrokerConfigError(
            "mosquitto_passwd not found: install the Mosquitto broker (Debian/Ubuntu: apt-get install "
            "mosquitto; it ships mosquitto_passwd) or pass its path"
        )
    site_ids = _unique(sites, "site id")
    agent_ids = _unique(agents, "agent id")
    accts = accounts(site_ids, agent_ids)
    acl = render_acl(acl_template.read_text(encoding="utf-8"), sites=site_ids, agents=agent_ids)

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

    lines = [f"{a.username}:{password(pw_dir / a.username)}" for a in accts]
    for stale in set(pw_dir.iterdir()) - {pw_dir / a.username for a in accts}:
        stale.unlink()  # an account that is no longer listed keeps no password behind
    passwd = secrets_dir / "passwd"
    _write_secret(passwd, "\n".join(lines) + "\n")
    try:
        subprocess.run([tool, "-U", str(passwd)], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        passwd.unlink(missing_ok=True)  # never leave a plain-text password file behind
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else ""
        raise BrokerConfigError(f"{tool} -U failed: {detail or exc}") from None
    passwd.chmod(_SECRET_MODE)
    _write_secret(secrets_dir / "acl", acl)

    redis_pw = password(secrets_dir / "redis-password")
    _write_secret(secrets_dir / "redis-auth.conf", f"requirepass {redis_pw}\n")
    return accts


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
