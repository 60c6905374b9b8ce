"""The brokers of a run: reuse the MQTT broker and Redis that answer, or start the project's own.

A broker that answers at --broker (a Redis at --redis) is reused as it is, e.g. a developer's anonymous
Mosquitto on 1883. Otherwise, and always with --own-brokers, the run gets the project's own configuration
(brokers/, rendered by launcher.brokers): accounts site-<id> for the dataset's sites, worker,
agent-<mobile device id> and observer, generated into the run's work dir (mode 0700, files 0600; nothing
secret is written to --out); Mosquitto with that password file and ACL, no anonymous clients and persistence
in the work dir; Redis with AOF and a password. Each daemon gets its account through
EDGEOFF_<DAEMON>_BROKER__USERNAME and ..._PASSWORD_FILE and the Redis URL with the password; the progress
display and the printed `mosquitto_sub` line use the observer account.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from edgeoff.errors import EdgeoffError
from edgeoff.wire.settings import BrokerSettings
from launcher.brokers import (
    default_brokers_dir,
    generate_secrets,
    write_mosquitto_config,
    write_redis_config,
)
from launcher.up.children import Child, Children

__all__ = [
    "OBSERVER",
    "WORKER",
    "BrokerPlan",
    "Brokers",
    "MissingBinaryError",
    "plan_brokers",
    "redact",
    "start_brokers",
]

MQTT_PROBE_TIMEOUT_S = 3.0  # a broker that has not answered CONNECT by then is not one to reuse
START_TIMEOUT_S = 10.0  # a broker that does not listen by then is broken, not slow
POLL_S = 0.1
INSTALL_HINT = {  # Debian/Ubuntu packages of the binaries this command may start
    "mosquitto": "sudo apt-get install mosquitto",
    "mosquitto_passwd": "sudo apt-get install mosquitto (it ships mosquitto_passwd)",
    "redis-server": "sudo apt-get install redis-server",
}
OBSERVER = "observer"  # the read-only account of people and of this command's progress display
WORKER = "worker"


class MissingBinaryError(EdgeoffError):
    """mosquitto or redis-server is not installed."""


def _binary(name: str) -> str:
    path = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/local/sbin") / name) if p.is_file()), None
    )
    if path is None:
        raise MissingBinaryError(f"{name} is not installed; install it: {INSTALL_HINT[name]}")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listens(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False
    finally:
        client.close()


def _wait(condition: Callable[[], bool], child: Child, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not condition():
        if child.proc.poll() is not None or time.monotonic() > deadline:
            raise EdgeoffError(f"{what} did not start; see {child.log_path}")
        time.sleep(POLL_S)


@dataclass(frozen=True)
class Brokers:
    """Where the run's daemons connect, and with which accounts.

    `secrets` is None for a reused broker (used as it is, without accounts); otherwise it holds
    `passwords/<username>` of every account of the run (see launcher.brokers.generate_secrets).
    """

    host: str
    port: int
    redis_url: str
    secrets: Path | None = None
    redis_password_file: Path | None = None  # the password in redis_url, for `edgeoff status --run`

    def password_file(self, username: str) -> Path | None:
        return None if self.secrets is None else self.secrets / "passwords" / username

    def env(self, prefix: str, username: str) -> dict[str, str]:
        """The broker and Redis settings of one daemon (`prefix` e.g. EDGEOFF_SITE_)."""
        env = {
            f"{prefix}BROKER__HOST": self.host,
            f"{prefix}BROKER__PORT": str(self.port),
            f"{prefix}REDIS__URL": self.redis_url,
        }
        password_file = self.password_file(username)
        if password_file is not None:
            env[f"{prefix}BROKER__USERNAME"] = username
            env[f"{prefix}BROKER__PASSWORD_FILE"] = str(password_file)
        return env

    def settings(self, username: str) -> BrokerSettings:
        password_file = self.password_file(username)
        return BrokerSettings(
            host=self.host,
            port=self.port,
            username=None if password_file is None else username,
            password_file=password_file,
        )

    def connection(self) -> dict[str, Any]:
        """How an observer connects, without any secret: file paths instead of passwords (the
        `connection.json` of --out that `edgeoff status --run DIR` reads)."""
        password_file = self.password_file(OBSERVER)
        own_redis = self.redis_password_file is not None
        return {
            "broker": f"{self.host}:{self.port}",
            "username": None if password_file is None else OBSERVER,
            "password_file": None if password_file is None else str(password_file),
            "redis": _without_password(self.redis_url) if own_redis else redact(self.redis_url),
            "redis_password_file": str(self.redis_password_file) if own_redis else None,
        }

    def watch_command(self) -> str:
        auth = ""
        password_file = self.password_file(OBSERVER)
        if password_file is not None:
            auth = f' -u {OBSERVER} -P "$(cat {shlex.quote(str(password_file))})"'
        return f"mosquitto_sub -h {self.host} -p {self.port}{auth} -t 'edgeoff/#' -v"


def _redis_secret(secrets_dir: Path) -> None:
    """Only the Redis password (secrets_dir/redis-auth.conf, 0600), for a run that reuses its MQTT broker."""
    secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    password = secrets.token_hex(24)
    for name, text in (("redis-password", password), ("redis-auth.conf", f"requirepass {password}")):
        fd = os.open(secrets_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")


@dataclass(frozen=True)
class BrokerPlan:
    """What a run will use: the brokers that answer (reused) or binaries to start the project's own."""

    host: str
    port: int
    redis_url: str
    mosquitto: str | None = None  # binaries of the brokers to start; None: reuse
    mosquitto_passwd: str | None = None
    redis_server: str | None = None

    @property
    def own_mqtt(self) -> bool:
        return self.mosquitto is not None

    @property
    def own_redis(self) -> bool:
        return self.redis_server is not None


def _mqtt_connack(host: str, port: int) -> int | None:
    """The CONNACK reason code of an anonymous MQTT v5 client at host:port; None when none came."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    codes: list[int] = []
    done = threading.Event()

    def on_connect(client: paho.Client, userdata: object, flags: object, rc: Any, props: object) -> None:
        codes.append(int(getattr(rc, "value", rc)))
        done.set()

    def on_disconnect(client: paho.Client, userdata: object, *rest: object) -> None:
        done.set()

    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"edgeoff-up-probe-{os.getpid()}", protocol=paho.MQTTv5
    )
    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    try:
        client.connect(host, port, keepalive=10)
    except (OSError, ValueError):
        return None
    client.loop_start()
    try:
        done.wait(MQTT_PROBE_TIMEOUT_S)
    finally:
        client.disconnect()
        client.loop_stop()
    return codes[0] if codes else None


def plan_brokers(args: argparse.Namespace, say: Callable[[str], None]) -> BrokerPlan:
    """Decide, before anything is started or written, which brokers the run uses.

    Reused: the MQTT broker at --broker when it accepts an anonymous MQTT client, and the Redis at --redis
    when it answers PING (neither with --own-brokers). Refused with an EdgeoffError: a --broker that accepts
    TCP but does not answer MQTT, or refuses anonymous clients (a reused broker gets no accounts). A missing
    binary of a broker to start is a MissingBinaryError.
    """
    host, port = args.broker
    own_mqtt = bool(args.own_brokers) or not _listens(host, port)
    if not own_mqtt:
        code = _mqtt_connack(host, port)
        if code is None:
            raise EdgeoffError(
                f"--broker {host}:{port} accepts connections but does not answer MQTT; give a broker's "
                "address, or --own-brokers"
            )
        if code != 0:
            raise EdgeoffError(
                f"the MQTT broker at {host}:{port} refused an anonymous client (reason code {code}); "
                "`edgeoff up` reuses only a broker without accounts: use --own-brokers"
            )
    own_redis = bool(args.own_brokers) or not _redis_answers(args.redis)
    reused = []
    if not own_mqtt:
        reused.append(f"the MQTT broker at {host}:{port}")
    if not own_redis:
        reused.append(f"Redis at {redact(args.redis)}")
    if reused:
        say(
            f"reusing {' and '.join(reused)} as configured there (--own-brokers starts the project's "
            "brokers, with accounts and passwords, on free ports)"
        )
    return BrokerPlan(  # every binary first: a missing one stops the run before anything is started
        host,
        port,
        args.redis,
        mosquitto=_binary("mosquitto") if own_mqtt else None,
        mosquitto_passwd=_binary("mosquitto_passwd") if own_mqtt else None,
        redis_server=_binary("redis-server") if own_redis else None,
    )


def start_brokers(
    plan: BrokerPlan, sites: list[str], agent: str, children: Children, workdir: Path
) -> Brokers:
    """The reused brokers of `plan`, and Mosquitto and Redis started from brokers/ (accounts, ACL,
    persistence) on free ports in `workdir` for the others."""
    host, port = plan.host, plan.port
    secrets_dir = workdir / "secrets"
    if plan.mosquitto is not None:
        assert plan.mosquitto_passwd is not None
        generate_secrets(
            secrets_dir,
            sites=sites,
            agents=[agent],
            acl_template=default_brokers_dir() / "mosquitto" / "acl",
            mosquitto_passwd=plan.mosquitto_passwd,
        )
        port = _free_port()
        conf = write_mosquitto_config(
            workdir / "mosquitto", secrets_dir=secrets_dir, data_dir=workdir / "mosquitto-data", port=port
        )
        child = children.start("mosquitto", [plan.mosquitto, "-c", str(conf)])
        _wait(lambda: _listens("127.0.0.1", port), child, "mosquitto")
        host = "127.0.0.1"
    redis_url = plan.redis_url
    redis_password_file = None
    if plan.redis_server is not None:
        if not plan.own_mqtt:
            _redis_secret(secrets_dir)
        redis_port = _free_port()
        conf = write_redis_config(
            workdir / "redis", secrets_dir=secrets_dir, data_dir=workdir / "redis-data", port=redis_port
        )
        child = children.start("redis", [plan.redis_server, str(conf)])
        redis_password_file = secrets_dir / "redis-password"
        password = redis_password_file.read_text(encoding="utf-8").strip()
        redis_url = f"redis://:{password}@127.0.0.1:{redis_port}/0"
        _wait(lambda: _redis_answers(redis_url), child, "redis-server")
    return Brokers(
        host, port, redis_url, secrets_dir if plan.own_mqtt else None, redis_password_file=redis_password_file
    )


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def redact(url: str) -> str:
    """A Redis URL with its password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
