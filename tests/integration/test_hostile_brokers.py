"""The attacks of issue 14 on the brokers, repeated against the project's own Mosquitto and Redis.

Each broker runs brokers/ rendered by launcher.brokers, with secrets made by brokers/make-passwords.py, as
in test_brokers.py. What each test shows:
- client-id takeover (finding 5): every other account connecting with a daemon's client id, again and
  again, never disconnects the daemon (its disconnect counter stays 0, no Last Will fires);
- retained flood (finding 10): a site (or agent, worker) can retain only on the exact topics of the
  contract, so 400 retained messages of 64 KiB under its subtree leave nothing behind;
- forged results (finding 6): a site cannot publish a result on another site's results topic;
- one Redis password with +@all (finding 7): each role's Redis user is refused every admin command, the
  keys of other roles and other sites (also from inside a script), while its own store works.
"""

from __future__ import annotations

import queue
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr
from redis.backoff import NoBackoff
from redis.exceptions import NoPermissionError
from redis.retry import Retry

from edgeoff.commands.observation import read_redis
from edgeoff.wire import topics
from edgeoff.wire.codec import encode_msgpack
from edgeoff.wire.errors import StoreError
from edgeoff.wire.messages import TaskResult
from edgeoff.wire.mqtt import Disconnected, MqttClient, MqttEvent, Will
from edgeoff.wire.settings import BrokerSettings, RedisSettings
from edgeoff.wire.store import Claim, TaskStore, redis_client
from launcher.brokers import default_brokers_dir, write_redis_config
from prediction_worker.store import PredictionStore

from .conftest import START_TIMEOUT_S, _accepts, _binary, _terminate, free_port, wait_for
from .test_brokers import ACCEPTED, GRANTED, NOT_AUTHORIZED, Broker, Mqtt, make_broker, password, run_script
from needs import missing

pytestmark = pytest.mark.timeout(120)

BROKERS = default_brokers_dir()
SITES = ("ed", "ec")
AGENT = "phone"
WAIT_S = 5.0


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if _binary("mosquitto_passwd") is None:  # pragma: no cover - _binary skips or fails first
        missing("mosquitto_passwd is not installed")
    out = tmp_path_factory.mktemp("secrets")
    run_script(
        [
            sys.executable,
            str(BROKERS / "make-passwords.py"),
            "--secrets",
            str(out),
            "--sites",
            ",".join(SITES),
            "--agents",
            f"{AGENT},tablet",
            "--workers",
            "1",
            "--observers",
            "late",
        ]
    )
    return out


@pytest.fixture
def broker(tmp_path: Path, secrets_dir: Path) -> Iterator[Broker]:
    b = make_broker(tmp_path, secrets_dir)
    b.start()
    yield b
    b.close()


@pytest.fixture
def clients(broker: Broker) -> Iterator[list[Mqtt]]:
    made: list[Mqtt] = []
    yield made
    for c in made:
        c.close()


def connect(broker: Broker, clients: list[Mqtt], username: str, client_id: str) -> Mqtt:
    c = Mqtt(broker, username, client_id=client_id)
    clients.append(c)
    assert c.connect() == 0, f"{username} was refused"
    return c


# --------------------------------------------------------------------------------- client-id takeover


class Victim:
    """A daemon's MQTT connection (the project's MqttClient) with its Last Will, as the daemons make it."""

    def __init__(self, broker: Broker, username: str, client_id: str) -> None:
        self.inbox: queue.Queue[MqttEvent] = queue.Queue()
        settings = BrokerSettings(
            host="127.0.0.1",
            port=broker.port,
            username=username,
            password_file=broker.secrets / "passwords" / username,
        )
        will = Will(topics.site_topic("ed", "status"), b'{"will":"' + username.encode() + b'"}')
        self.client = MqttClient(
            settings=settings,
            client_id=client_id,
            inbox=self.inbox,
            will_factory=(lambda: will) if username == "site-ed" else None,
        )
        self.client.start()
        wait_for(self.client.connected.is_set, START_TIMEOUT_S, f"{username} to connect")

    def disconnects(self) -> int:
        events = []
        while True:
            try:
                events.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        return sum(1 for e in events if isinstance(e, Disconnected)) + self.client.counters.get("disconnects")


def test_no_account_can_take_over_another_accounts_connection(broker: Broker, clients: list[Mqtt]) -> None:
    """Finding 5: the observer (and every other account) took over `edgeoff-site-ed` 155 times in 10 s."""
    victims = {
        "site-ed": Victim(broker, "site-ed", "edgeoff-site-ed"),
        "agent-phone": Victim(broker, "agent-phone", "edgeoff-agent-phone"),
        "worker": Victim(broker, "worker", "edgeoff-worker-worker-0"),
    }
    watcher = connect(broker, clients, "observer-late", "test-watcher")
    assert watcher.subscribe(topics.all_sites("status")) in GRANTED
    attackers = ["observer", "site-ec", "worker-1", "agent-tablet"]  # one of each role
    ids = [
        "edgeoff-site-ed",
        "site-ed",
        "edgeoff-agent-phone",
        "agent-phone",
        "edgeoff-worker-worker-0",
        "worker",
    ]
    try:
        for round_ in range(5):
            for attacker in attackers:
                for client_id in ids:
                    c = Mqtt(broker, attacker, client_id=client_id)
                    try:
                        assert c.connect() == 0, (attacker, client_id)  # accepted, under its own name
                    finally:
                        c.close()
            # the broker is single-threaded: once this marker arrives, every takeover attempt is processed
            marker = f'{{"round":{round_}}}'.encode()
            ed = connect(broker, clients, "site-ec", "test-marker")
            assert ed.publish(topics.site_topic("ec", "status"), marker) in ACCEPTED
            watcher.wait_message(topics.site_topic("ec", "status"), marker)
            ed.close()
        for name, victim in victims.items():
            assert victim.disconnects() == 0, f"{name} was disconnected"
            assert victim.client.connected.is_set(), name
            assert victim.client.counters.get("connects") == 1, name
        assert not [m for m in watcher.on(topics.site_topic("ed", "status")) if b"will" in m.payload]
        # the binding is by account: a second connection of site-ed itself does replace the first (which
        # is why every connection needs an account of its own)
        again = Mqtt(broker, "site-ed", client_id="anything")
        clients.append(again)
        assert again.connect() == 0
        wait_for(lambda: victims["site-ed"].disconnects() > 0, WAIT_S, "site-ed's own second connection")
    finally:
        for victim in victims.values():
            victim.client.stop(with_will=False)


# ----------------------------------------------------------------------------------- retained flood


def test_no_account_can_leave_retained_state_outside_the_contract(
    broker: Broker, clients: list[Mqtt]
) -> None:
    """Finding 10: 400 retained messages of 64 KiB under a site's subtree were accepted (26 MB)."""
    ed = connect(broker, clients, "site-ed", "ed")
    agent = connect(broker, clients, "agent-phone", "agent")
    worker = connect(broker, clients, "worker", "worker")
    blob = b"x" * 65536
    refused = [
        (ed, f"{topics.PREFIX}/sites/ed/junk-{n}") for n in range(400)
    ]  # the site's own subtree, but not a topic of the contract
    refused += [
        (ed, f"{topics.PREFIX}/sites/ed/status/deeper"),
        (ed, topics.site_topic("ed", "tasks")),
        (ed, topics.results(AGENT, "zz")),
        (ed, topics.results("nobody", "ed")),
        (agent, topics.site_topic("zz", "tasks")),  # a site that does not exist
        (agent, f"{topics.PREFIX}/agents/{AGENT}/junk"),
        (worker, topics.prediction("zz")),
    ]
    for client, topic in refused:
        assert client.publish(topic, blob, retain=True) == NOT_AUTHORIZED, topic
    # allowed retained topics each keep one message: the last one
    for n in range(50):
        assert ed.publish(topics.site_topic("ed", "status"), b'{"n":%d}' % n, retain=True) in ACCEPTED
    late = connect(broker, clients, "observer-late", "late")
    assert late.subscribe("edgeoff/#") in GRANTED
    # retained messages are sent right after the SUBACK: a live marker after them means all have arrived
    assert ed.publish(topics.site_topic("ed", "heartbeat"), b"marker") in ACCEPTED
    late.wait_message(topics.site_topic("ed", "heartbeat"), b"marker")
    retained = [m for m in late.messages if m.retain]
    assert [(m.topic, m.payload) for m in retained] == [(topics.site_topic("ed", "status"), b'{"n":49}')]


def test_a_site_cannot_forge_another_sites_result(broker: Broker, clients: list[Mqtt]) -> None:
    """Finding 6: site-ed published failure results for tasks sent to ec, and the agent fell back."""
    agent = connect(broker, clients, "agent-phone", "agent")
    assert agent.subscribe(topics.agent_results(AGENT)) in GRANTED
    ed, ec = connect(broker, clients, "site-ed", "ed"), connect(broker, clients, "site-ec", "ec")
    forged = TaskResult(task_id="t-1", attempt=0, site="ec", session=1, ok=False, exec_s=0.0, error="forged")
    assert ed.publish(topics.results(AGENT, "ec"), encode_msgpack(forged)) == NOT_AUTHORIZED
    real = TaskResult(task_id="t-1", attempt=0, site="ec", session=1, ok=True, exec_s=0.1)
    assert ec.publish(topics.results(AGENT, "ec"), encode_msgpack(real)) in ACCEPTED
    agent.wait_message(topics.results(AGENT, "ec"), encode_msgpack(real))
    assert [m.payload for m in agent.on(topics.agent_results(AGENT))] == [encode_msgpack(real)]


# ------------------------------------------------------------------------------------ Redis users


@dataclass
class ProjectRedis:
    port: int
    secrets: Path
    proc: subprocess.Popen[bytes]

    def client(self, username: str | None) -> redis.Redis:
        """A client of `username` (None: the operators' `default`), with no retries."""
        if username is None:
            pw = (self.secrets / "redis-password").read_text().strip()
        else:
            pw = password(self.secrets, username)
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            username=username,
            password=pw,
            socket_timeout=WAIT_S,
            retry=Retry(NoBackoff(), 0),
        )

    def settings(self, username: str) -> RedisSettings:
        return RedisSettings(
            url=SecretStr(f"redis://127.0.0.1:{self.port}/0"),
            username=username,
            password_file=self.secrets / "passwords" / username,
            retries=0,
        )


@pytest.fixture
def project_redis(tmp_path: Path, secrets_dir: Path) -> Iterator[ProjectRedis]:
    port = free_port()
    conf = write_redis_config(
        tmp_path / "redis", secrets_dir=secrets_dir, data_dir=tmp_path / "rd", port=port
    )
    log = (tmp_path / "redis.log").open("wb")
    proc = subprocess.Popen([_binary("redis-server"), str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: proc.poll() is not None or _accepts(port), START_TIMEOUT_S, "redis-server")
        if proc.poll() is not None:
            pytest.fail(f"redis-server exited: {(tmp_path / 'redis.log').read_text()}")
        yield ProjectRedis(port, secrets_dir, proc)
    finally:
        _terminate(proc)
        log.close()


ADMIN_COMMANDS = [
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("CONFIG", "GET", "requirepass"),
    ("CONFIG", "SET", "appendonly", "no"),
    ("SHUTDOWN", "NOSAVE"),
    ("ACL", "SETUSER", "evil", "on", ">x", "+@all", "~*"),
    ("ACL", "LIST"),
    ("MONITOR",),
    ("KEYS", "*"),
    ("MODULE", "LIST"),
    ("REPLICAOF", "127.0.0.1", "1"),
    ("INFO",),
    ("SAVE",),
    ("BGREWRITEAOF",),
    ("CLIENT", "KILL", "TYPE", "normal"),
    ("SCRIPT", "FLUSH"),
    ("EVAL", "return 1", "0"),
    ("FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('x', function() return 1 end)"),
    ("SUBSCRIBE", "anything"),
]
ROLES = ("site-ed", "agent-phone", "worker", "observer", "observer-probe")


def refused(client: redis.Redis, *command: str) -> bool:
    try:
        client.execute_command(*command)  # type: ignore[no-untyped-call]
    except NoPermissionError:
        return True
    return False


@pytest.mark.parametrize("username", ROLES)
def test_no_daemon_user_may_run_an_admin_command(project_redis: ProjectRedis, username: str) -> None:
    """Finding 7: with any daemon's credentials one could FLUSHALL, CONFIG SET, SHUTDOWN, ACL SETUSER."""
    client = project_redis.client(username)
    admin = project_redis.client(None)
    try:
        assert client.ping()
        admin.set("edgeoff:v1:site:ed:session", "7")
        for command in ADMIN_COMMANDS:
            assert refused(client, *command), f"{username} may run {command}"
        assert admin.get("edgeoff:v1:site:ed:session") == b"7"  # nothing was flushed
        assert project_redis.proc.poll() is None  # nor shut down
        assert "evil" not in str(admin.acl_users())
    finally:
        client.close()
        admin.close()


def test_the_probe_may_ping_and_touch_no_key(project_redis: ProjectRedis) -> None:
    """observer-probe, the compose and k8s health checks' Redis user: PING answers, every key is out of
    reach (the checks used to log in as the operators' `default`, which may do everything)."""
    probe = project_redis.client("observer-probe")
    admin = project_redis.client(None)
    try:
        admin.set("edgeoff:v1:site:ed:session", "7")
        assert probe.ping()
        for command in (
            ("GET", "edgeoff:v1:site:ed:session"),
            ("SET", "edgeoff:v1:site:ed:session", "8"),
            ("TYPE", "edgeoff:v1:site:ed:session"),
            ("HGETALL", "edgeoff:v1:prediction:ed"),
            ("SCAN", "0"),
            ("EVALSHA", "0" * 40, "0"),
        ):
            assert refused(probe, *command), f"the probe may run {command}"
        assert admin.get("edgeoff:v1:site:ed:session") == b"7"
    finally:
        probe.close()
        admin.close()


def test_anonymous_and_wrong_passwords_are_refused(project_redis: ProjectRedis) -> None:
    once = Retry(NoBackoff(), 0)
    for username, pw in ((None, None), ("site-ed", "wrong"), ("default", "wrong"), ("nobody", "x")):
        client = redis.Redis(
            host="127.0.0.1", port=project_redis.port, username=username, password=pw, retry=once
        )
        try:
            with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
                client.set("edgeoff:v1:x", "1")
        finally:
            client.close()


def test_a_site_cannot_pre_claim_another_sites_tasks_or_write_predictions(
    project_redis: ProjectRedis,
) -> None:
    """Finding 7: a site's credentials pre-claimed future task ids (the agent then met deadlines on every
    site) and wrote forged predictions."""
    ed = TaskStore(redis_client(project_redis.settings("site-ed")))
    ec = TaskStore(redis_client(project_redis.settings("site-ec")))
    raw = project_redis.client("site-ed")
    try:
        # its own work goes through its store: a session, a batch of claims with an instant result
        assert ed.next_session("ed") == 1
        done = encode_msgpack(TaskResult(task_id="t-2", attempt=0, site="ed", session=1, ok=True, exec_s=0))
        assert ed.claim_tasks(
            "ed", [Claim("t-1", 0, 10_000, agent=AGENT), Claim("t-2", 0, 10_000, done, agent=AGENT)]
        ) == [True, True]
        # but not another site's: through the store, raw commands, or a script of its own
        with pytest.raises(StoreError, match="permission"):
            ed.claim_tasks("ec", [Claim(f"t-{n}", 0, 10**6, agent=AGENT) for n in range(100)])
        with pytest.raises(StoreError, match="permission"):
            ed.next_session("ec")
        assert refused(raw, "SET", "edgeoff:v1:site:ec:task:t-9:0:claim", "ed")
        assert refused(raw, "SET", "edgeoff:v1:site:ec:task:t-9:0:result", "forged")
        script = raw.register_script("return redis.call('SET', 'edgeoff:v1:site:ec:task:t-9:0:claim', 'ed')")
        with pytest.raises(redis.ResponseError, match=r"permissions|access"):
            script()
        # nor raise its own session counter to a forged value, nor touch predictions or verdicts
        assert refused(raw, "SET", "edgeoff:v1:site:ed:session", str(10**18))
        assert refused(raw, "INCRBY", "edgeoff:v1:site:ed:session", str(10**18))
        assert refused(raw, "HSET", "edgeoff:v1:prediction:ed", "version", str(2**62))
        assert refused(raw, "LPUSH", "edgeoff:v1:site:ed:windows", "1.0")
        # ec claims every task sent to it as if ed did not exist
        assert (
            ec.claim_tasks("ec", [Claim(f"t-{n}", 0, 10_000, agent=AGENT) for n in range(100)])
            == [True] * 100
        )
    finally:
        for c in (ed, ec):
            c.close()
        raw.close()


def test_only_its_agent_raises_a_tasks_fence_and_the_sites_only_read_it(project_redis: ProjectRedis) -> None:
    """The fence of a task (edgeoff/wire/store.py) is its agent's: no site, worker, observer or other agent
    can raise it (to make a real attempt look cancelled) or lower it (to let an abandoned one run), while
    every site reads it when it claims and renews."""
    fence = f"edgeoff:v1:agent:{AGENT}:task:t-f:fence"
    phone = TaskStore(redis_client(project_redis.settings(f"agent-{AGENT}")))
    tablet = TaskStore(redis_client(project_redis.settings("agent-tablet")))
    ed = TaskStore(redis_client(project_redis.settings("site-ed")))
    raws = {u: project_redis.client(u) for u in ("site-ed", "agent-tablet", "worker", "observer")}
    admin = project_redis.client(None)
    try:
        phone.fence("t-f", 1, agent=AGENT)  # before it sends attempt 1
        phone.cancel("t-f", 1, agent=AGENT)  # it gave up on attempt 1
        assert phone.fence_of("t-f", agent=AGENT) == 2
        # a site reads the fence in its claim and renewal scripts: attempt 1 never starts, attempt 2 does
        claims = [Claim("t-f", 1, 10_000, agent=AGENT), Claim("t-f", 2, 10_000, agent=AGENT)]
        assert ed.claim_outcomes("ed", claims) == ["fenced", "claimed"]
        assert ed.renew("t-f", 2, "ed", 10_000, agent=AGENT)
        assert ed.fence_of("t-f", agent=AGENT) == 2
        # nobody else writes it: not through the store, not with raw commands, not from a script
        for store in (ed, tablet):  # the site's script may name the key (to read it), not SET it
            with pytest.raises(StoreError, match=r"permission|access"):
                store.fence("t-f", 9, agent=AGENT)
        for user, raw in raws.items():
            for command in (
                ("SET", fence, "0"),
                ("SET", fence, "99"),
                ("DEL", fence),
                ("PEXPIRE", fence, "1"),
            ):
                assert refused(raw, *command), (user, command)
        script = raws["site-ed"].register_script("return redis.call('SET', KEYS[2], '0')")
        with pytest.raises(redis.ResponseError, match=r"permissions|access"):
            script(keys=["edgeoff:v1:site:ed:task:t-f:2:claim", fence])
        script = raws["site-ed"].register_script(f"return redis.call('DEL', '{fence}')")
        with pytest.raises(redis.ResponseError, match=r"can't run this command"):
            script()
        # the agent cannot claim or answer for a site either: it writes its own fences only
        agent_raw = project_redis.client(f"agent-{AGENT}")
        try:
            assert refused(agent_raw, "SET", "edgeoff:v1:site:ed:task:t-9:0:claim", AGENT)
            assert refused(agent_raw, "SET", "edgeoff:v1:site:ed:task:t-9:0:result", "forged")
            assert refused(agent_raw, "SET", "edgeoff:v1:agent:tablet:task:t-f:fence", "99")
        finally:
            agent_raw.close()
        assert admin.get(fence) == b"2"
    finally:
        for store in (phone, tablet, ed):
            store.close()
        for c in (*raws.values(), admin):
            c.close()


def test_each_role_has_its_own_keys_and_only_those(project_redis: ProjectRedis) -> None:
    admin = project_redis.client(None)
    agent, worker, observer = (project_redis.client(u) for u in ("agent-phone", "worker", "observer"))
    predictions = PredictionStore(redis_client(project_redis.settings("worker")))
    site = TaskStore(redis_client(project_redis.settings("site-ed")))
    try:
        site.next_session("ed")
        result = TaskResult(task_id="t-1", attempt=0, site="ed", session=1, ok=True, exec_s=0.5)
        assert site.claim_task("t-1", 0, "ed", 10_000, agent=AGENT)
        assert site.complete_task(result)
        assert predictions.write_prediction("ed", 0.9, "last-value", 1.7e9, "worker-0") == 1
        predictions.append_verdict("ed", {"up": True}, 10)
        predictions.append_window("ed", 0.5, 10)
        predictions.write_counters("worker-0", {"in": 3})
        # the agent reads results and session counters, and writes nothing but its own fences
        agent_store = TaskStore(agent)
        assert agent_store.get_result("ed", "t-1", 0) == result
        assert agent_store.session("ed") == 1
        for command in (
            ("SET", "edgeoff:v1:site:ed:task:t-1:0:result", "forged"),
            ("DEL", "edgeoff:v1:site:ed:task:t-1:0:claim"),
            ("INCR", "edgeoff:v1:site:ed:session"),
            ("HSET", "edgeoff:v1:prediction:ed", "availability", "0"),
        ):
            assert refused(agent, *command), command
        # the worker reads session counters; it cannot claim, answer or start a session
        assert worker.get("edgeoff:v1:site:ed:session") == b"1"
        for command in (
            ("SET", "edgeoff:v1:site:ed:task:t-3:0:claim", "worker"),
            ("GET", "edgeoff:v1:site:ed:task:t-1:0:result"),
            ("INCR", "edgeoff:v1:site:ed:session"),
            ("DEL", "edgeoff:v1:site:ed:session"),
        ):
            assert refused(worker, *command), command
        # the observer (edgeoff status) reads everything and writes nothing
        view = read_redis(
            f"redis://observer:{password(project_redis.secrets, 'observer')}@127.0.0.1:{project_redis.port}/0"
        )
        assert view is not None
        assert view.predictions["ed"].availability == 0.9
        for command in (
            ("SET", "edgeoff:v1:x", "1"),
            ("HSET", "edgeoff:v1:prediction:ed", "availability", "0"),
            ("DEL", "edgeoff:v1:prediction:ed"),
            ("INCR", "edgeoff:v1:site:ed:session"),
        ):
            assert refused(observer, *command), command
        assert admin.hget("edgeoff:v1:prediction:ed", "availability") == b"0.9"
    finally:
        for c in (admin, agent, worker, observer):
            c.close()
        predictions.close()
        site.close()
