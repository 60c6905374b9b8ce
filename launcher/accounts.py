"""The accounts of an edgeoff deployment and the access rules rendered for them (pure: text in, text out).

One account per connection and per daemon, the same name on Mosquitto and on Redis:

    site-<site id>             one per site daemon, e.g. site-ed
    agent-<agent id>           one per mobile agent, e.g. agent-md
    worker, worker-<n>         one per prediction worker (the first is `worker`)
    observer, observer-<name>  read-only: people, MQTT Explorer, `edgeoff status`
    observer-probe             the brokers' health probes (compose healthchecks, k8s readiness): MQTT
                               `$SYS/broker/uptime` and Redis PING, nothing else; always present

Mosquitto uses the username as the client id (brokers/mosquitto/mosquitto.conf), so that no account can
take over another's connection; that is why two tools watching at once need two observer accounts, and
why the probes, which log in every few seconds, have an account of their own: as `observer` they would
kick MQTT Explorer off each time.

The templates (`brokers/mosquitto/acl`, `brokers/redis/users.acl`) name roles by placeholders: {site},
{agent}, {worker}, {observer}, {probe}. :func:`render_acl` writes a Mosquitto block (a `user` line and
the lines up to a blank line) once per account of the role on its `user` line, and repeats a line that
names another role once per id of that role; :func:`render_redis_users` does the same for one-line Redis
`user` rules and puts each account's password hash in place of {password}.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from edgeoff.errors import EdgeoffError
from edgeoff.wire.topics import validate_id

__all__ = [
    "ADMIN_USER",
    "PROBE_USER",
    "Account",
    "BrokerConfigError",
    "Role",
    "accounts",
    "agent_username",
    "observer_username",
    "password_hash",
    "render_acl",
    "render_redis_users",
    "site_username",
    "worker_username",
]

Role = Literal["site", "agent", "worker", "observer", "probe"]
ROLES: tuple[Role, ...] = ("site", "agent", "worker", "observer", "probe")
ADMIN_USER = "default"  # Redis: the operators' account (password in secrets/redis-password)
PROBE_USER = "observer-probe"  # the health probes' account (role probe); `--observers probe` would clash
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_PASSWORD = "password"


class BrokerConfigError(EdgeoffError):
    """A broker template, account list or secrets directory is not usable."""


@dataclass(frozen=True)
class Account:
    """One account: its username, its role and the site, agent, worker or observer id it stands for.

    `id` is None for the first worker (`worker`), the first observer (`observer`) and the probe.
    """

    username: str
    role: Role
    id: str | None = None


def site_username(site: str) -> str:
    return f"site-{validate_id(site, what='site id')}"


def agent_username(agent: str) -> str:
    return f"agent-{validate_id(agent, what='agent id')}"


def worker_username(worker: str | None = None) -> str:
    """`worker` for the first worker, `worker-<id>` for the others."""
    return "worker" if worker is None else f"worker-{validate_id(worker, what='worker id')}"


def observer_username(name: str | None = None) -> str:
    """`observer` for the first observer, `observer-<name>` for the others."""
    return "observer" if name is None else f"observer-{validate_id(name, what='observer name')}"


def _unique(ids: Iterable[str], what: str) -> tuple[str, ...]:
    out: list[str] = []
    for value in ids:
        validate_id(value, what=what)
        if value in out:
            raise BrokerConfigError(f"duplicate {what} {value!r}")
        out.append(value)
    return tuple(out)


def accounts(
    sites: Iterable[str],
    agents: Iterable[str],
    workers: Iterable[str] = (),
    observers: Iterable[str] = (),
) -> tuple[Account, ...]:
    """Every account of a deployment: one per site and agent, `worker`, `observer` and `observer-probe`,
    and one more per extra worker id (`worker-<id>`) and observer name (`observer-<name>`; `probe` is
    taken, a duplicate account name)."""
    return (
        *(Account(site_username(s), "site", s) for s in _unique(sites, "site id")),
        *(Account(agent_username(a), "agent", a) for a in _unique(agents, "agent id")),
        Account(worker_username(), "worker"),
        *(Account(worker_username(w), "worker", w) for w in _unique(workers, "worker id")),
        Account(observer_username(), "observer"),
        *(Account(observer_username(o), "observer", o) for o in _unique(observers, "observer name")),
        Account(PROBE_USER, "probe"),
    )


def _values(accts: Sequence[Account]) -> dict[str, tuple[str, ...]]:
    """What each role placeholder stands for: site and agent ids, worker, observer and probe usernames."""
    names = [a.username for a in accts]
    if len(set(names)) != len(names):
        raise BrokerConfigError(f"duplicate account names (observer name {PROBE_USER!r} is the probe's)")
    return {
        "site": tuple(a.id for a in accts if a.role == "site" and a.id is not None),
        "agent": tuple(a.id for a in accts if a.role == "agent" and a.id is not None),
        "worker": tuple(a.username for a in accts if a.role == "worker"),
        "observer": tuple(a.username for a in accts if a.role == "observer"),
        "probe": tuple(a.username for a in accts if a.role == "probe"),
    }


def _account_of(role: str, value: str, accts: Sequence[Account]) -> Account:
    """The account a role placeholder's value stands for (worker, observer, probe values are usernames)."""
    if role == "site":
        value = site_username(value)
    elif role == "agent":
        value = agent_username(value)
    return next(a for a in accts if a.username == value)


def _expand_line(
    line: str, bound: dict[str, str], values: dict[str, tuple[str, ...]], where: str
) -> list[str]:
    """`line` with the block's own placeholder(s) filled in, repeated once per id of any other role."""
    for name, value in bound.items():
        line = line.replace("{" + name + "}", value)
    others = sorted(set(_PLACEHOLDER.findall(line)))
    if not others:
        return [line]
    if len(others) > 1 or others[0] not in ("site", "agent"):
        raise BrokerConfigError(
            f"{where}: a line may repeat over one of {{site}} or {{agent}}, found {others}"
        )
    (name,) = others
    return [line.replace("{" + name + "}", value) for value in values[name]]


def _role_of(line: str, where: str) -> str | None:
    names: list[str] = sorted(set(_PLACEHOLDER.findall(line)) - {_PASSWORD})
    if not names:
        return None
    if len(names) > 1 or names[0] not in ROLES:
        raise BrokerConfigError(f"{where}: a user line names one role of {ROLES}, found {names}")
    return names[0]


def render_acl(template: str, accts: Sequence[Account]) -> str:
    """The Mosquitto ACL of `accts` from the template (see the module docstring).

    A placeholder outside a user block, an unknown one, or a block whose lines name two other roles is an
    error: the rendered file never contains a literal `{`.
    """
    values = _values(accts)
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
        where = f"ACL template line {i + 1}"
        role = _role_of(line, where)
        for n, value in enumerate(values[role] if role is not None else ("",)):
            if n:
                out.append("")
            bound = {role: value} if role is not None else {}
            for body in block:
                out.extend(_expand_line(body, bound, values, where))
        i = end
    return "\n".join(out) + "\n"


def password_hash(password: str) -> str:
    """A Redis ACL password rule for `password`: `#` and its SHA-256 in hex."""
    return "#" + hashlib.sha256(password.encode("utf-8")).hexdigest()


def render_redis_users(
    template: str, accts: Sequence[Account], passwords: Mapping[str, str], admin_password: str
) -> str:
    """Redis `user` rules of `accts` from the template; {password} is the hash of `passwords[username]`.

    The template must define the admin user (`user default`), with {password}: without that line Redis
    would let anyone in as `default` with every right.
    """
    values = _values(accts)
    out: list[str] = []
    admin = False
    for number, line in enumerate(template.splitlines(), start=1):
        where = f"Redis users template line {number}"
        if not line.startswith("user "):
            if not line.lstrip().startswith("#") and _PLACEHOLDER.search(line):
                raise BrokerConfigError(f"{where}: placeholder outside a user line")
            out.append(line)
            continue
        if "{" + _PASSWORD + "}" not in line or " nopass" in line:
            raise BrokerConfigError(f"{where}: every user needs {{password}} (and never nopass)")
        role = _role_of(line, where)
        if role is None:
            if line.split()[1] != ADMIN_USER:
                raise BrokerConfigError(f"{where}: only {ADMIN_USER!r} may be a user without a role")
            admin = True
            out.append(line.replace("{" + _PASSWORD + "}", password_hash(admin_password)))
            continue
        for value in values[role]:
            account = _account_of(role, value, accts)
            bound = {role: value, _PASSWORD: password_hash(passwords[account.username])}
            out.extend(_expand_line(line, bound, values, where))
    if not admin:
        raise BrokerConfigError(
            f"the Redis users template must define `user {ADMIN_USER} on {{password}} ...`"
        )
    return "\n".join(out) + "\n"
