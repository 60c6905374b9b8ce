"""brokers/ against real Mosquitto and Redis: accounts, ACL, size limits, TLS, persistence, Redis auth, AOF.

Every broker here runs the project's own configuration (brokers/mosquitto, brokers/redis) rendered by
edgeoff.brokers into the test's directory, with secrets made once per module by the project's own scripts
(brokers/make-passwords.py, brokers/make-tls.sh). Mosquitto acknowledges a refused QoS 1 publish and drops
it, so "refused" is proven by delivery: a watcher that may read the topic subscribes, the refused message
is published, then a marker that is allowed; once the marker has arrived, the refused message would have
arrived before it (Mosquitto is single-threaded and delivers to one subscriber in order), so its absence
is final. No test sleeps: each waits on a condition with a deadline.
"""

from __future__ import annotations

import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from redis.backoff import NoBackoff
from redis.retry import Retry

from edgeoff.wire import topics
from launcher.brokers import (
    MOSQUITTO_OVERRIDABLE,
    REDIS_OVERRIDABLE,
    BrokerConfigError,
    accounts,
    default_brokers_dir,
    render_acl,
    render_conf,
    render_redis_users,
    write_mosquitto_config,
    write_redis_config,
)

from .conftest import START_TIMEOUT_S, STOP_TIMEOUT_S, _accepts, _binary, _terminate, free_port, wait_for
from needs import missing

pytestmark = pytest.mark.timeout(60)

BROKERS = default_brokers_dir()
SITES = ("ed", "ec")
AGENTS = ("phone", "tablet")
OBSERVERS = ("late", "explorer")  # extra observer accounts: each connection needs an account of its own
NOT_AUTHORIZED = 0x87  # MQTT v5 reason code (CONNACK, SUBACK, PUBACK)
BAD_CREDENTIALS = 0x86
ACCEPTED = (0x00, 0x10)  # PUBACK: success, "no matching subscribers"
GRANTED = (0x00, 0x01, 0x02)  # SUBACK: granted QoS
WAIT_S = 5.0
MAX_PAYLOAD = 5 * 1024 * 1024  # the wire codec's limit; the broker allows it plus 64 KiB of headers
MAX_PACKET = MAX_PAYLOAD + 64 * 1024  # max_packet_size in brokers/mosquitto/mosquitto.conf


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Secrets made by the project's scripts: accounts for SITES and AGENTS, and TLS when openssl exists."""
    if shutil.which("mosquitto_passwd") is None:
        missing("mosquitto_passwd is not installed (Debian/Ubuntu: apt-get install mosquitto)")
    out = tmp_path_factory.mktemp("secrets")
    make_passwords = [sys.executable, str(BROKERS / "make-passwords.py"), "--secrets", str(out)]
    make_passwords += ["--sites", ",".join(SITES), "--agents", ",".join(AGENTS)]
    make_passwords += ["--observers", ",".join(OBSERVERS), "--workers", "1"]
    run_script(make_passwords)
    if shutil.which("openssl") is not None:
        run_script(["bash", str(BROKERS / "make-tls.sh"), "--secrets", str(out)])
    return out


def run_script(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        pytest.fail(f"{args[1]} failed with {done.returncode}: {done.stderr}")


def password(secrets: Path, username: str) -> str:
    return (secrets / "passwords" / username).read_text(encoding="utf-8").strip()


@dataclass
class Broker:
    """A Mosquitto running brokers/mosquitto rendered into a test directory; restartable on its data dir."""

    conf: Path
    port: int
    tls_port: int | None
    data_dir: Path
    log: Path
    secrets: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def db(self) -> Path:
        return self.data_dir / "mosquitto.db"

    def start(self) -> None:
        binary = _binary("mosquitto")
        with self.log.open("ab") as log:
            proc = subprocess.Popen([binary, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        self.proc = proc
        wait_for(
            lambda: proc.poll() is not None or _accepts(self.port), START_TIMEOUT_S, "mosquitto to listen"
        )
        if proc.poll() is not None:
            pytest.fail(f"mosquitto exited with {proc.returncode}: {self.log.read_text(errors='replace')}")

    def stop(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(STOP_TIMEOUT_S)

    def close(self) -> None:
        if self.proc is not None:
            _terminate(self.proc)


def make_broker(tmp_path: Path, secrets: Path, *, tls: bool = False) -> Broker:
    tls_port = free_port() if tls else None
    port = free_port()
    conf = write_mosquitto_config(
        tmp_path / "mosquitto", secrets_dir=secrets, data_dir=tmp_path / "data", port=port, tls_port=tls_port
    )
    return Broker(conf, port, tls_port, tmp_path / "data", tmp_path / "mosquitto.log", secrets)


@pytest.fixture
def broker(tmp_path: Path, secrets_dir: Path) -> Iterator[Broker]:
    b = make_broker(tmp_path, secrets_dir)
    b.start()
    yield b
    b.close()


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool


@dataclass
class Mqtt:
    """A paho-mqtt 2.x MQTT v5 client of the tests; records CONNACK, SUBACK, PUBACK codes and messages."""

    broker: Broker
    username: str | None
    client_id: str
    password: str | None = None
    port: int | None = None
    ca_file: Path | None = None
    clean_start: bool = True
    session_expiry_s: int = 0
    connack: tuple[int, bool] | None = None  # reason code, session present
    messages: list[Received] = field(default_factory=list)
    subacks: dict[int, list[int]] = field(default_factory=dict)
    pubacks: dict[int, int] = field(default_factory=dict)
    closed: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv5,
            reconnect_on_failure=False,
        )
        if self.username is not None:
            pw = self.password if self.password is not None else password(self.broker.secrets, self.username)
            c.username_pw_set(self.username, pw)
        if self.ca_file is not None:
            c.tls_set(ca_certs=str(self.ca_file))
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_publish = self._on_publish
        self.client = c

    # paho callbacks: record only (they run in paho's network thread)
    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        rc: ReasonCode,
        props: Properties | None,
    ) -> None:
        self.connack = (rc.value, flags.session_present)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        rc: ReasonCode,
        props: Properties | None,
    ) -> None:
        self.closed.set()

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        codes: list[ReasonCode],
        props: Properties | None,
    ) -> None:
        self.subacks[mid] = [c.value for c in codes]

    def _on_publish(
        self, client: paho.Client, userdata: object, mid: int, rc: ReasonCode, props: Properties
    ) -> None:
        self.pubacks[mid] = rc.value

    def connect(self) -> int:
        """Connect and wait for the CONNACK (or the connection closing); returns the reason code value."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves __init__ unannotated
        if self.session_expiry_s:
            props.SessionExpiryInterval = self.session_expiry_s
        self.client.connect(
            "127.0.0.1",
            self.port or self.broker.port,
            keepalive=10,
            clean_start=self.clean_start,
            properties=props,
        )
        self.client.loop_start()
        wait_for(
            lambda: self.connack is not None or self.closed.is_set(), WAIT_S, f"CONNACK for {self.client_id}"
        )
        return self.connack[0] if self.connack is not None else -1

    def subscribe(self, topic_filter: str) -> int:
        """Subscribe with QoS 1, wait for the SUBACK; its reason code (0-2 granted, >=0x80 refused)."""
        _, mid = self.client.subscribe(topic_filter, qos=1)
        assert mid is not None, f"the subscription to {topic_filter} was not sent"
        wait_for(lambda: mid in self.subacks, WAIT_S, f"SUBACK of {topic_filter}")
        return self.subacks[mid][0]

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int:
        """Publish with QoS 1 and wait for the PUBACK; returns its reason code (0: accepted)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        wait_for(lambda: info.mid in self.pubacks, WAIT_S, f"PUBACK of {topic}")
        return self.pubacks[info.mid]

    def on(self, topic: str) -> list[Received]:
        """Messages received on `topic` (a filter: `+` and `#` match as in a subscription)."""
        with self._lock:
            return [m for m in self.messages if paho.topic_matches_sub(topic, m.topic)]

    def wait_message(self, topic: str, payload: bytes) -> Received:
        return wait_for(
            lambda: next((m for m in self.on(topic) if m.payload == payload), None),
            WAIT_S,
            f"{payload!r} on {topic}",
        )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


ConnectFn = Callable[..., Mqtt]


@pytest.fixture
def clients(broker: Broker) -> Iterator[list[Mqtt]]:
    made: list[Mqtt] = []
    yield made
    for c in made:
        c.close()


@pytest.fixture
def connect(broker: Broker, clients: list[Mqtt]) -> ConnectFn:
    """`connect(username, **options)`: a connected client of `broker` (fails the test if refused)."""

    def make(username: str, **options: object) -> Mqtt:
        c = Mqtt(broker, username, client_id=f"test-{username}-{len(clients)}", **options)  # type: ignore[arg-type]
        clients.append(c)
        rc = c.connect()
        assert rc == 0, f"{username} was refused with reason code {rc:#x}"
        return c

    return make


def assert_not_delivered(
    watcher: Mqtt, topic: str, marker_from: Mqtt, marker_topic: str, marker: bytes
) -> None:
    """After a refused publish to `topic`: an allowed marker reaches `watcher`, the refused message never."""
    assert marker_from.publish(marker_topic, marker) in ACCEPTED
    watcher.wait_message(marker_topic, marker)
    assert watcher.on(topic) == [], f"a refused publish to {topic} was delivered"


# ------------------------------------------------------------------------------------------ pure renderers


def test_rendered_config_differs_from_the_repository_only_in_overridable_directives(
    tmp_path: Path, secrets_dir: Path
) -> None:
    conf = write_mosquitto_config(tmp_path, secrets_dir=secrets_dir, data_dir=tmp_path / "d", port=1234)
    redis_conf = write_redis_config(tmp_path, secrets_dir=secrets_dir, data_dir=tmp_path / "r", port=4321)
    for rendered, source, allowed in (
        (conf, BROKERS / "mosquitto" / "mosquitto.conf", MOSQUITTO_OVERRIDABLE),
        (redis_conf, BROKERS / "redis" / "redis.conf", REDIS_OVERRIDABLE),
    ):
        new, old = rendered.read_text().splitlines(), source.read_text().splitlines()
        assert len(new) == len(old)
        changed = {a.split()[0] for a, b in zip(new, old, strict=True) if a != b}
        assert changed <= allowed, source
    assert "listener 1234 127.0.0.1" in conf.read_text().splitlines()
    assert "port 4321" in redis_conf.read_text().splitlines()


def test_render_conf_refuses_unknown_missing_and_repeated_directives() -> None:
    with pytest.raises(BrokerConfigError, match="may not be overridden"):
        render_conf("listener 1\n", {"allow_anonymous": "true"}, allowed=MOSQUITTO_OVERRIDABLE)
    with pytest.raises(BrokerConfigError, match="exactly once"):
        render_conf("# listener 1\n", {"listener": "2"}, allowed=MOSQUITTO_OVERRIDABLE)
    with pytest.raises(BrokerConfigError, match="exactly once"):
        render_conf("listener 1\nlistener 2\n", {"listener": "3"}, allowed=MOSQUITTO_OVERRIDABLE)
    assert render_conf(
        "  listener 1\nuser x\n", {"listener": "2 127.0.0.1"}, allowed=MOSQUITTO_OVERRIDABLE
    ) == ("listener 2 127.0.0.1\nuser x\n")


def test_render_acl_expands_one_block_per_account_and_one_line_per_id() -> None:
    template = (BROKERS / "mosquitto" / "acl").read_text()
    acl = render_acl(template, accounts(["ed", "ec"], ["phone"], workers=["1"], observers=["up"]))
    rules = [line for line in acl.splitlines() if line and not line.startswith("#")]
    assert "{" not in "\n".join(rules)
    for user in ("site-ed", "site-ec", "agent-phone", "worker", "worker-1", "observer", "observer-up"):
        assert rules.count(f"user {user}") == 1, user
    assert "topic readwrite edgeoff/v1/sites/ec/status" in rules
    assert "topic write edgeoff/v1/results/phone/ec" in rules
    assert "topic read edgeoff/v1/results/phone/ed" in rules
    assert "topic write edgeoff/v1/sites/ec/tasks" in rules
    assert rules.count("topic readwrite edgeoff/v1/predictions/ed") == 2  # worker and worker-1
    assert not [r for r in rules if r.startswith("topic") and "+" in r], "a wildcard in a write rule"
    assert [a.username for a in accounts(["ed"], ["phone"])] == [
        "site-ed",
        "agent-phone",
        "worker",
        "observer",
        "observer-probe",
    ]
    assert rules[rules.index("user observer-probe") + 1 :] == ["topic read $SYS/broker/uptime"]
    with pytest.raises(BrokerConfigError, match="placeholder"):
        render_acl("topic read a/{site}\n", accounts(["ed"], []))
    with pytest.raises(BrokerConfigError, match="duplicate"):
        accounts(["ed", "ed"], [])
    with pytest.raises(BrokerConfigError, match="duplicate account names"):  # observer-probe is the probe's
        render_acl(template, accounts(["ed"], ["phone"], observers=["probe"]))
    with pytest.raises(BrokerConfigError, match="repeat over one"):
        render_acl("user {worker}\ntopic read a/{site}/{agent}\n", accounts(["ed"], ["phone"]))


def test_render_redis_users_gives_every_account_a_hashed_password_and_the_admin_a_line() -> None:
    template = (BROKERS / "redis" / "users.acl").read_text()
    accts = accounts(["ed", "ec"], ["phone"], workers=["1"])
    passwords = {a.username: f"pw-of-{a.username}" for a in accts}
    rendered = render_redis_users(template, accts, passwords, "admin-pw")
    users = [line for line in rendered.splitlines() if line.startswith("user ")]
    assert [u.split()[1] for u in users] == ["default", *(a.username for a in accts)]
    assert "pw-of" not in rendered  # hashes only
    assert "admin-pw" not in rendered
    assert all(" on #" in u for u in users)
    assert not [u for u in users if "nopass" in u]
    assert "~edgeoff:v1:site:ec:task:*" in next(u for u in users if u.startswith("user site-ec "))
    with pytest.raises(BrokerConfigError, match="default"):
        render_redis_users("user {worker} on {password} +ping\n", accts, passwords, "x")
    with pytest.raises(BrokerConfigError, match="password"):
        render_redis_users("user default on nopass +@all\n", accts, passwords, "x")


def test_secrets_are_private_and_hashed(secrets_dir: Path) -> None:
    assert secrets_dir.stat().st_mode & 0o077 == 0
    for path in [*secrets_dir.rglob("*")]:
        if path.is_file() and path.suffix != ".crt":
            assert path.stat().st_mode & 0o077 == 0, path
    passwd = (secrets_dir / "passwd").read_text()
    assert password(secrets_dir, "worker") not in passwd
    assert "worker:$7$" in passwd
    redis_users = (secrets_dir / "redis-auth.conf").read_text()
    for plain in [password(secrets_dir, "worker"), (secrets_dir / "redis-password").read_text().strip()]:
        assert plain not in redis_users  # the rendered Redis users hold hashes only


# ------------------------------------------------------------------------------------- authentication


def test_anonymous_client_is_refused(broker: Broker) -> None:
    client = Mqtt(broker, None, client_id="test-anonymous")
    try:
        assert client.connect() == NOT_AUTHORIZED
    finally:
        client.close()


def test_wrong_password_and_unknown_account_are_refused(broker: Broker) -> None:
    for username, pw in (("site-ed", "not-the-password"), ("site-zz", "whatever"), ("observer", "")):
        client = Mqtt(broker, username, client_id=f"test-wrong-{username}", password=pw)
        try:
            assert client.connect() in (BAD_CREDENTIALS, NOT_AUTHORIZED), username
        finally:
            client.close()


def test_an_agent_whose_password_is_refused_fails_at_once(broker: Broker, tmp_path: Path) -> None:
    """It does not run its whole duration without a broker and exit 0: exit 1 with the reason, no results."""
    wrong = tmp_path / "password"
    wrong.write_text("not-the-password\n")
    out = tmp_path / "agent.json"
    env = {
        "PATH": "/usr/bin:/bin",
        "EDGEOFF_AGENT_AGENT": "phone",
        "EDGEOFF_AGENT_BROKER__PORT": str(broker.port),
        "EDGEOFF_AGENT_BROKER__USERNAME": "agent-phone",
        "EDGEOFF_AGENT_BROKER__PASSWORD_FILE": str(wrong),
        "EDGEOFF_AGENT_WAIT_SITES_S": "600",  # refused credentials end the wait: it is not waited out
    }
    cmd = [sys.executable, "-m", "mobile_agent", "--out", str(out), "--duration-s", "600"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=50, env=env, check=False)
    assert done.returncode == 1, done.stderr
    reason = f"edgeoff-agent: error: the broker at 127.0.0.1:{broker.port} refused the account agent-phone"
    assert reason in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- ACL


def test_site_writes_only_its_own_topics(connect: ConnectFn) -> None:
    observer = connect("observer")
    assert observer.subscribe("edgeoff/#") in GRANTED
    ed = connect("site-ed")
    own, other = topics.site_topic("ed", "status"), topics.site_topic("ec", "status")
    assert ed.publish(other, b'{"state":"offline"}', retain=True) == NOT_AUTHORIZED
    assert ed.publish(topics.site_topic("ec", "heartbeat"), b"forged") == NOT_AUTHORIZED
    assert ed.publish(topics.site_topic("ec", "tasks"), b"forged") == NOT_AUTHORIZED
    assert ed.publish(topics.prediction("ed"), b"{}") == NOT_AUTHORIZED
    assert ed.publish(topics.agent_policy("phone"), b"{}") == NOT_AUTHORIZED
    assert_not_delivered(observer, other, ed, own, b'{"state":"online"}')
    for refused in ("heartbeat", "tasks"):
        assert observer.on(topics.site_topic("ec", refused)) == []
    assert observer.on(topics.prediction("ed")) == []
    assert observer.on(topics.agent_policy("phone")) == []
    # results go to any agent of the deployment, on the topic that names the site itself
    assert ed.publish(topics.results("phone", "ec"), b"forged-result") == NOT_AUTHORIZED
    assert ed.publish(topics.results("phone", "ed"), b"result") in ACCEPTED
    observer.wait_message(topics.results("phone", "ed"), b"result")
    assert observer.on(topics.results("phone", "ec")) == []
    # nothing was retained on the other site's status either, while its own retained status was
    assert ed.publish(own, b'{"state":"online"}', retain=True) in ACCEPTED
    late = connect("observer-late")
    assert late.subscribe(topics.all_sites("status")) in GRANTED
    late.wait_message(own, b'{"state":"online"}')
    assert late.on(other) == []


def test_site_receives_its_own_tasks_only(connect: ConnectFn) -> None:
    # Mosquitto 2.0 grants every SUBSCRIBE and applies the ACL to each message it would deliver.
    ed = connect("site-ed")
    for topic_filter in (topics.site_topic("ed", "tasks"), topics.all_sites("tasks"), "edgeoff/#"):
        assert ed.subscribe(topic_filter) in GRANTED
    agent = connect("agent-phone")
    assert agent.publish(topics.site_topic("ec", "tasks"), b"task-for-ec") in ACCEPTED
    assert agent.publish(topics.agent_policy("phone"), b"{}") in ACCEPTED
    assert agent.publish(topics.site_topic("ed", "tasks"), b"task-for-ed") in ACCEPTED
    ed.wait_message(topics.site_topic("ed", "tasks"), b"task-for-ed")
    assert ed.on(topics.site_topic("ec", "tasks")) == []
    assert ed.on(topics.agent_policy("phone")) == []


def test_worker_writes_predictions_but_not_tasks(connect: ConnectFn) -> None:
    observer = connect("observer")
    assert observer.subscribe("edgeoff/#") in GRANTED
    worker = connect("worker")
    assert worker.subscribe(topics.all_sites("heartbeat")) in GRANTED
    assert worker.subscribe(topics.all_sites("tasks")) in GRANTED  # granted, but nothing is delivered
    tasks = topics.site_topic("ed", "tasks")
    assert worker.publish(tasks, b"forged-task") == NOT_AUTHORIZED
    assert worker.publish(topics.site_topic("ed", "status"), b"{}") == NOT_AUTHORIZED
    assert_not_delivered(observer, tasks, worker, topics.prediction("ed"), b'{"p":0.9}')
    assert observer.on(topics.site_topic("ed", "status")) == []
    # it reads heartbeats, and no task of any site
    agent, ed = connect("agent-phone"), connect("site-ed")
    assert agent.publish(tasks, b"real-task") in ACCEPTED
    assert ed.publish(topics.site_topic("ed", "heartbeat"), b"beat") in ACCEPTED
    worker.wait_message(topics.site_topic("ed", "heartbeat"), b"beat")
    assert worker.on(tasks) == []


def test_agent_writes_tasks_and_its_own_policy_only(connect: ConnectFn) -> None:
    observer = connect("observer")
    assert observer.subscribe("edgeoff/#") in GRANTED
    phone = connect("agent-phone")
    other_policy = topics.agent_policy("tablet")
    assert phone.publish(other_policy, b"{}", retain=True) == NOT_AUTHORIZED
    assert phone.publish(topics.site_topic("ed", "status"), b"{}") == NOT_AUTHORIZED
    assert phone.publish(topics.prediction("ed"), b"{}") == NOT_AUTHORIZED
    assert phone.publish(topics.results("tablet", "ed"), b"{}") == NOT_AUTHORIZED
    assert phone.publish(topics.results("phone", "ed"), b"{}") == NOT_AUTHORIZED  # only sites answer
    assert_not_delivered(observer, other_policy, phone, topics.agent_policy("phone"), b'{"policy":[1]}')
    for refused in (topics.site_topic("ed", "status"), topics.prediction("ed"), "edgeoff/v1/results/#"):
        assert observer.on(refused) == []
    assert phone.publish(topics.site_topic("ec", "tasks"), b"task") in ACCEPTED
    observer.wait_message(topics.site_topic("ec", "tasks"), b"task")
    # it receives its own results, statuses and predictions; not another agent's results, nor heartbeats
    for topic_filter in ("edgeoff/v1/results/#", topics.all_sites("heartbeat"), topics.all_sites("status")):
        assert phone.subscribe(topic_filter) in GRANTED
    ed = connect("site-ed")
    assert ed.publish(topics.results("tablet", "ed"), b"for-tablet") in ACCEPTED
    assert ed.publish(topics.site_topic("ed", "heartbeat"), b"beat") in ACCEPTED
    assert ed.publish(topics.results("phone", "ed"), b"for-phone") in ACCEPTED
    assert ed.publish(topics.site_topic("ed", "status"), b"online") in ACCEPTED
    phone.wait_message(topics.results("phone", "ed"), b"for-phone")
    phone.wait_message(topics.site_topic("ed", "status"), b"online")
    assert phone.on(topics.results("tablet", "ed")) == []
    assert phone.on(topics.site_topic("ed", "heartbeat")) == []


def test_observer_reads_everything_and_writes_nothing(connect: ConnectFn) -> None:
    observer = connect("observer")
    assert observer.subscribe("edgeoff/#") in GRANTED
    ed = connect("site-ed")
    ed.publish(topics.site_topic("ed", "status"), b'{"state":"online"}', retain=True)
    observer.wait_message(topics.site_topic("ed", "status"), b'{"state":"online"}')
    forged = [
        topics.site_topic("ed", "status"),
        topics.site_topic("ed", "tasks"),
        topics.results("phone", "ed"),
        topics.prediction("ed"),
        topics.agent_policy("phone"),
        "edgeoff/v1/anything",
    ]
    for t in forged:
        assert observer.publish(t, b"forged") == NOT_AUTHORIZED
    assert_not_delivered(observer, forged[1], ed, topics.site_topic("ed", "heartbeat"), b"beat")
    assert all(m.payload != b"forged" for m in observer.messages)
    # broker statistics for MQTT Explorer
    assert observer.subscribe("$SYS/broker/version") in GRANTED
    wait_for(lambda: observer.on("$SYS/broker/version"), WAIT_S, "$SYS/broker/version")


def test_probe_reads_the_broker_uptime_only_and_leaves_observer_to_mqtt_explorer(connect: ConnectFn) -> None:
    """observer-probe (compose healthcheck, k8s readiness probe) logs in beside MQTT Explorer's `observer`
    without kicking it off (the username is the client id), receives `$SYS/broker/uptime`, and reads and
    writes nothing of the deployment."""
    explorer = connect("observer")
    assert explorer.subscribe("edgeoff/#") in GRANTED
    ed = connect("site-ed")
    status = topics.site_topic("ed", "status")
    ed.publish(status, b'{"state":"online"}', retain=True)
    explorer.wait_message(status, b'{"state":"online"}')
    probe = connect("observer-probe")
    # Retained messages come in the order of the subscriptions: once the uptime of the second is in, the
    # retained status of the first would have been delivered before it, had the ACL allowed it.
    assert probe.subscribe("edgeoff/#") in GRANTED  # a SUBSCRIBE is granted; each message is checked
    assert probe.subscribe("$SYS/broker/uptime") in GRANTED
    wait_for(lambda: probe.on("$SYS/broker/uptime"), WAIT_S, "$SYS/broker/uptime for the probe")
    assert probe.on(status) == []
    assert probe.publish(status, b"forged") == NOT_AUTHORIZED
    assert ed.publish(topics.site_topic("ed", "heartbeat"), b"beat") in ACCEPTED  # a marker after it
    explorer.wait_message(topics.site_topic("ed", "heartbeat"), b"beat")
    assert all(m.payload != b"forged" for m in explorer.messages), "the probe's publish was delivered"
    assert not explorer.closed.is_set(), "the probe's login kicked MQTT Explorer's observer off"


def test_payload_above_the_size_limit_is_not_delivered(connect: ConnectFn, broker: Broker) -> None:
    ed = connect("site-ed")
    tasks = topics.site_topic("ed", "tasks")
    assert ed.subscribe(tasks) in GRANTED
    # A packet above max_packet_size: Mosquitto 2.0.11 drops it and closes the connection (or answers with a
    # reason code that paho-mqtt takes as a protocol error). Either way it never reaches a subscriber.
    oversized = Mqtt(broker, "agent-phone", client_id="test-oversized")
    try:
        assert oversized.connect() == 0
        oversized.client.publish(tasks, b"x" * MAX_PACKET, qos=1)
        wait_for(
            lambda: oversized.closed.is_set() or oversized.pubacks, WAIT_S, "the broker to refuse the payload"
        )
    finally:
        oversized.close()
    agent = connect("agent-phone")
    assert agent.publish(tasks, b"y" * MAX_PAYLOAD) in ACCEPTED
    wait_for(lambda: ed.on(tasks), WAIT_S, "the largest allowed task")
    assert [len(m.payload) for m in ed.on(tasks)] == [MAX_PAYLOAD]


def test_broker_log_keeps_connections_without_autosave_or_deprecation_noise(
    connect: ConnectFn, broker: Broker
) -> None:
    """Every autosave (every 2 s) used to log a line, and message_size_limit a deprecation warning."""
    connect("site-ed")
    saves: list[int] = []

    def saved_again() -> bool:
        mtime = broker.db.stat().st_mtime_ns if broker.db.exists() else 0
        if mtime and mtime not in saves:
            saves.append(mtime)
        return len(saves) >= 2

    wait_for(saved_again, 4 * WAIT_S, "two autosaves of the broker's database")
    broker.stop(signal.SIGTERM)
    log = broker.log.read_text(errors="replace")
    assert "New client connected" in log  # connection messages are notices: kept
    assert "Saving in-memory database" not in log
    assert "message_size_limit" not in log


# ---------------------------------------------------------------------------------------------- TLS


def test_tls_listener_accepts_a_client_that_trusts_the_generated_ca(
    tmp_path: Path, secrets_dir: Path
) -> None:
    ca = secrets_dir / "tls" / "ca.crt"
    if not ca.is_file():
        missing("openssl is not installed: brokers/make-tls.sh could not make the certificates")
    broker = make_broker(tmp_path, secrets_dir, tls=True)
    broker.start()
    made: list[Mqtt] = []
    try:
        assert broker.tls_port is not None
        secure = Mqtt(broker, "site-ed", client_id="test-tls", port=broker.tls_port, ca_file=ca)
        made.append(secure)
        assert secure.connect() == 0
        assert secure.subscribe(topics.site_topic("ed", "tasks")) in GRANTED
        assert secure.publish(topics.site_topic("ed", "status"), b"over-tls") in ACCEPTED
        plain = Mqtt(broker, "observer", client_id="test-plain")
        made.append(plain)
        assert plain.connect() == 0  # the plain listener runs beside it
        # a client that does not trust the local CA refuses the broker's certificate
        untrusting = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="test-untrusting", protocol=paho.MQTTv5
        )
        untrusting.tls_set(ca_certs=str(secrets_dir / "tls" / "server.crt"))
        with pytest.raises(ssl.SSLError):
            untrusting.connect("127.0.0.1", broker.tls_port)
        # and anonymous clients are refused on the TLS listener too (per_listener_settings false)
        anonymous = Mqtt(broker, None, client_id="test-tls-anon", port=broker.tls_port, ca_file=ca)
        made.append(anonymous)
        assert anonymous.connect() == NOT_AUTHORIZED
    finally:
        for c in made:
            c.close()
        broker.close()


# ------------------------------------------------------------------------------------------ persistence


@pytest.mark.parametrize("how", ["sigterm", "sigkill-after-autosave"])
def test_restart_keeps_retained_statuses_and_queued_tasks(
    tmp_path: Path, secrets_dir: Path, how: str
) -> None:
    broker = make_broker(tmp_path, secrets_dir)
    broker.start()
    made: list[Mqtt] = []

    def client(username: str, client_id: str, **options: object) -> Mqtt:
        c = Mqtt(broker, username, client_id=client_id, **options)  # type: ignore[arg-type]
        made.append(c)
        assert c.connect() == 0
        return c

    status, tasks = topics.site_topic("ed", "status"), topics.site_topic("ed", "tasks")
    try:
        # The site has a persistent session (clean_start False, session expiry) subscribed to its tasks ...
        site = client("site-ed", "edgeoff-site-ed", clean_start=False, session_expiry_s=3600)
        assert site.subscribe(tasks) in GRANTED
        assert site.publish(status, b'{"state":"online","session":7}', retain=True) in ACCEPTED
        site.close()
        wait_for(site.closed.is_set, WAIT_S, "the site to disconnect")
        # ... and is offline while the agent sends it tasks, which the broker queues for it.
        agent = client("agent-phone", "edgeoff-agent-phone")
        sent = [f"task-{i}".encode() for i in range(3)]
        for payload in sent:
            assert agent.publish(tasks, payload) in ACCEPTED
        acked_ns = time.time_ns()
        agent.close()

        if how == "sigterm":
            broker.stop(signal.SIGTERM)  # Mosquitto saves its database on a clean exit
        else:
            # SIGKILL saves nothing: the tasks survive only if an autosave ran after they were acknowledged.
            wait_for(
                lambda: broker.db.is_file() and broker.db.stat().st_mtime_ns > acked_ns,
                START_TIMEOUT_S,
                "an autosave after the tasks were acknowledged",
            )
            broker.stop(signal.SIGKILL)
        broker.start()

        back = client("site-ed", "edgeoff-site-ed", clean_start=False, session_expiry_s=3600)
        assert back.connack is not None
        assert back.connack[1], "the persistent session did not survive"
        wait_for(lambda: len(back.on(tasks)) >= len(sent), WAIT_S, "the queued tasks after the restart")
        assert [m.payload for m in back.on(tasks)] == sent  # without subscribing again, in order
        observer = client("observer", "test-observer")
        assert observer.subscribe(topics.all_sites("status")) in GRANTED
        got = observer.wait_message(status, b'{"state":"online","session":7}')
        assert got.retain
    finally:
        for c in made:
            c.close()
        broker.close()


# ---------------------------------------------------------------------------------------------- Redis


def test_redis_requires_the_password_and_appends_to_its_aof(tmp_path: Path, secrets_dir: Path) -> None:
    binary = _binary("redis-server")
    port = free_port()
    data = tmp_path / "redis-data"
    conf = write_redis_config(tmp_path / "redis", secrets_dir=secrets_dir, data_dir=data, port=port)
    log_path = tmp_path / "redis.log"
    pw = (secrets_dir / "redis-password").read_text().strip()

    def launch() -> subprocess.Popen[bytes]:
        with log_path.open("ab") as log:
            proc = subprocess.Popen([binary, str(conf)], stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: proc.poll() is not None or _accepts(port), START_TIMEOUT_S, "redis-server to listen")
        if proc.poll() is not None:
            pytest.fail(f"redis-server exited with {proc.returncode}: {log_path.read_text(errors='replace')}")
        return proc

    proc = launch()
    once = Retry(NoBackoff(), 0)  # redis-py retries an AuthenticationError (a ConnectionError) with backoff
    anonymous = redis.Redis(host="127.0.0.1", port=port, socket_timeout=WAIT_S, retry=once)
    authed = redis.Redis(host="127.0.0.1", port=port, password=pw, socket_timeout=WAIT_S)
    wrong = redis.Redis(host="127.0.0.1", port=port, password="wrong", socket_timeout=WAIT_S, retry=once)
    try:
        with pytest.raises(redis.AuthenticationError):
            anonymous.set("edgeoff:probe", "1")
        with pytest.raises(redis.AuthenticationError):
            wrong.ping()
        assert authed.ping()
        assert authed.config_get("appendonly") == {"appendonly": "yes"}
        assert authed.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert authed.config_get("maxmemory-policy") == {"maxmemory-policy": "volatile-lru"}
        assert authed.config_get("protected-mode") == {"protected-mode": "yes"}
        # A write reaches the AOF (written before the reply's event loop turn, fsynced within a second)
        # and survives a SIGKILL of Redis.
        authed.set("edgeoff:claim:task-1:0", "site-ed")

        def in_aof() -> bool:
            return any(
                b"edgeoff:claim:task-1:0" in p.read_bytes() for p in data.rglob("*.aof*") if p.is_file()
            )

        wait_for(in_aof, WAIT_S, "the write to reach the append-only file")
        proc.kill()
        proc.wait(STOP_TIMEOUT_S)
        authed.connection_pool.disconnect()
        proc = launch()

        def loaded() -> bool:
            try:
                return bool(authed.ping())
            except redis.BusyLoadingError:
                return False

        wait_for(loaded, START_TIMEOUT_S, "redis-server to load its AOF")
        assert authed.get("edgeoff:claim:task-1:0") == b"site-ed"
    finally:
        for c in (anonymous, authed, wrong):
            c.close()
        _terminate(proc)
