"""The deployment files (compose/, k8s/, systemd/, Dockerfile) validate, and keep their safety properties.

`scripts/validate-deploy` runs the real validators (Compose Specification schema, hadolint, kustomize and
the Kubernetes schemas, systemd-analyze verify); these tests run it on the repository and on broken copies
(so CI fails when a file stops validating), and assert what the schemas cannot: health checks, restart
policies, probes, non-root users, no plaintext secrets, the systemd unit options.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from needs import missing

REPO = Path(__file__).resolve().parent.parent
VALIDATE = REPO / "scripts" / "validate-deploy"
EXIT_MISSING_TOOL = 3
DAEMON_COMMANDS = {"edgeoff-site", "edgeoff-worker", "edgeoff-agent"}
UNITS = ["edgeoff-site@.service", "edgeoff-worker.service", "edgeoff-agent.service"]


def validate(*args: str, root: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(VALIDATE), "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def require_validators(proc: subprocess.CompletedProcess[str]) -> None:
    if proc.returncode == EXIT_MISSING_TOOL:
        missing(f"a deployment validator is not installed (.ci/run installs them): {proc.stderr.strip()}")


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of what validate-deploy reads, to break."""
    for name in ("compose", "k8s", "systemd"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("secrets"))
    shutil.copytree(REPO / "brokers", tmp_path / "brokers", ignore=shutil.ignore_patterns("secrets"))
    shutil.copyfile(REPO / "Dockerfile", tmp_path / "Dockerfile")
    return tmp_path


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


# ---------------------------------------------------------------------- the validators


def test_every_deployment_file_validates() -> None:
    proc = validate()
    require_validators(proc)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for check in ("compose", "dockerfile", "k8s", "systemd"):
        assert f"ok   {check}:" in proc.stdout


@pytest.mark.parametrize(
    ("check", "path", "old", "new"),
    [
        ("compose", "compose/compose.yaml", "    restart: unless-stopped", "    restrat: unless-stopped"),
        ("compose", "compose/compose.yaml", "condition: service_healthy", "condition: healthy"),
        ("dockerfile", "Dockerfile", "USER 10001:10001", "USER root"),
        ("dockerfile", "Dockerfile", "python:3.11-slim-bookworm", "python:latest"),
        ("k8s", "k8s/base/worker.yaml", "readinessProbe:", "readinesProbe:"),
        ("k8s", "k8s/base/sites.yaml", "replicas: 1", "replicas: one"),
        ("k8s", "k8s/overlays/laptop/kustomization.yaml", "../../base", "../../bsae"),
        ("k8s", "brokers/mosquitto/mosquitto.conf", "max_keepalive 60", "max_keepalive 61"),
        ("systemd", "systemd/edgeoff-site@.service", "WatchdogSec=30s", "WatchdogSec=thirty"),
        ("systemd", "systemd/edgeoff-worker.service", "ProtectHome=yes", "ProtectHomes=yes"),
        ("systemd", "systemd/edgeoff-agent.service", "Type=notify", "Type=notifyy"),
    ],
)
def test_a_broken_file_fails_validation(copy: Path, check: str, path: str, old: str, new: str) -> None:
    target = copy / path
    text = target.read_text(encoding="utf-8")
    assert old in text, f"{path} no longer contains {old!r}: update this test"
    target.write_text(text.replace(old, new), encoding="utf-8")
    proc = validate(check, root=copy)
    require_validators(proc)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"FAIL {check}" in proc.stderr


# ---------------------------------------------------------------------- compose


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = yaml.safe_load(
        (REPO / "compose" / "compose.yaml").read_text(encoding="utf-8")
    )["services"]
    return services


def test_compose_daemons_have_healthchecks_restart_policies_and_secret_files() -> None:
    services = compose_services()
    daemons = {name: s for name, s in services.items() if s.get("command", [None])[0] in DAEMON_COMMANDS}
    assert set(daemons) == {"site-ed", "site-ec", "site-er", "site-cd", "worker", "agent"}
    accounts = re.search(r'accounts="([^"]+)"', services["install-secrets"]["command"][0])
    assert accounts is not None
    installed = dict(entry.split(":") for entry in accounts[1].split())
    uids = set()
    for name, service in daemons.items():
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD-SHELL", name
        # healthy = fresh and ready; stale 10 s past the loop watchdog (30 s) = frozen: killed, restarted
        assert test[1].startswith("edgeoff health /tmp/health.json --max-age 10 --ready && exit 0;"), name
        assert "--max-age 40" in test[1], name
        assert "kill -KILL" in test[1], name
        assert service["restart"] in {"unless-stopped", "always", "on-failure"}, name
        for dep in ("mosquitto", "redis"):
            assert service["depends_on"][dep]["condition"] == "service_healthy", name
        # one fixed non-root uid per daemon (never the operator's: defect 3), owner of its password alone
        uid, gid = service["user"].split(":")
        assert uid.isdigit(), name
        assert int(uid) >= 10000, name
        assert gid == "10001", name
        uids.add(uid)
        env = service["environment"]
        password_files = [k for k in env if k.endswith("BROKER__PASSWORD_FILE")]
        assert len(password_files) == 1, name
        account = env[password_files[0]].removeprefix("/run/secrets/edgeoff/")
        username = next(v for k, v in env.items() if k.endswith("BROKER__USERNAME"))
        assert account == username, name
        assert installed[account] == uid, f"{name}: its password must be installed for uid {uid}"
        assert "daemon-secrets:/run/secrets/edgeoff:ro" in service["volumes"], name
        # built once by edgeoff-image (defect 4), never pulled
        assert "build" not in service, name
        assert service["pull_policy"] == "never", name
        assert service["depends_on"]["edgeoff-image"]["condition"] == "service_completed_successfully"
    assert len(uids) == len(daemons), "each daemon its own uid"
    assert [n for n, s in services.items() if "build" in s] == ["edgeoff-image"]
    for name in ("mosquitto", "redis"):
        assert "healthcheck" in services[name]
        assert services[name]["restart"] == "unless-stopped"
    # The sites of DS1 inject failures.
    for site in ("ed", "ec", "er", "cd"):
        command = services[f"site-{site}"]["command"]
        assert ["--site", site] == command[1:3]
        assert "--inject-failures" in command


def test_compose_port_is_a_variable_and_no_anonymous_volumes() -> None:
    services = compose_services()
    assert services["mosquitto"]["ports"] == ["127.0.0.1:${EDGEOFF_MQTT_PORT:-1883}:1883"]
    # the eclipse-mosquitto image declares VOLUME /mosquitto/data and /mosquitto/log: each needs a mount
    for name in ("mosquitto", "install-secrets"):
        mounts = [v.split(":")[1] for v in services[name].get("volumes", [])] + services[name].get(
            "tmpfs", []
        )
        targets = {m.split()[0] for m in mounts}
        assert {"/mosquitto/data", "/mosquitto/log"} <= targets, name


def test_compose_holds_no_plaintext_password() -> None:
    text = (REPO / "compose" / "compose.yaml").read_text(encoding="utf-8")
    assert not re.search(r"(?i)(password|passwd|requirepass)\s*[:=]\s*['\"]?[A-Za-z0-9]{8,}", text)
    assert not re.search(r"redis://:[^$@]+@", text), "a Redis URL with a literal password"
    for service in compose_services().values():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD(?!_FILE)|SECRET|TOKEN", key):
                pytest.fail(f"secret in the environment: {key}={value}")
    secrets_in = compose_services()["install-secrets"]["volumes"][0]
    assert secrets_in == "${EDGEOFF_SECRETS_DIR:-../brokers/secrets}:/in:ro"  # git-ignored, generated


def test_dockerfile_needs_no_registry_frontend() -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert not re.search(
        r"(?im)^#\s*syntax\s*=", text
    )  # BuildKit would fetch the frontend image from Docker Hub (defect 1)
    assert "useradd --system" not in text  # uid 10001 > SYS_UID_MAX: a warning on every build (defect 11)


# ---------------------------------------------------------------------- Kubernetes


def k8s_workloads() -> list[dict[str, Any]]:
    docs = [doc for path in sorted((REPO / "k8s" / "base").glob("*.yaml")) for doc in load_all(path)]
    return [doc for doc in docs if doc["kind"] in {"Deployment", "StatefulSet"}]


def test_k8s_containers_have_probes_and_run_as_non_root() -> None:
    workloads = k8s_workloads()
    names = {w["metadata"]["name"] for w in workloads}
    assert names == {"mosquitto", "redis", "site-ed", "site-ec", "site-er", "site-cd", "worker", "agent"}
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, workload["metadata"]["name"]
        assert pod["securityContext"]["runAsUser"] > 0
        for container in pod["containers"]:
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert "livenessProbe" in container, where
            assert "readinessProbe" in container, where
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert "limits" in container["resources"], where
            if container["image"] == "edgeoff":  # the daemons: their own health command
                live = container["livenessProbe"]["exec"]["command"]
                ready = container["readinessProbe"]["exec"]["command"]
                assert live[:3] == ["edgeoff", "health", "/tmp/health.json"]
                assert "--ready" not in live
                assert ready[:3] == ["edgeoff", "health", "/tmp/health.json"]
                assert "--ready" in ready
                assert {e["name"] for e in container["env"] if e["name"].endswith("HEALTH_FILE")}
                assert not [
                    e
                    for e in container["env"]
                    if re.search(r"PASSWORD(?!_FILE)$", e["name"]) and "value" in e
                ], f"{where}: a literal password"


def test_k8s_sites_are_pinned_by_site_type() -> None:
    for workload in k8s_workloads():
        name = workload["metadata"]["name"]
        if name.startswith("site-"):
            selector = workload["spec"]["template"]["spec"]["nodeSelector"]
            assert selector == {"edgeoff.io/site-type": name.removeprefix("site-").upper()}


def test_k8s_secrets_are_never_committed() -> None:
    assert "base/secrets/" in (REPO / "k8s" / ".gitignore").read_text(encoding="utf-8").splitlines()


# ---------------------------------------------------------------------- systemd


def unit_options(name: str) -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    for line in (REPO / "systemd" / name).read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            options.setdefault(key.strip(), []).append(value.strip())
    return options


@pytest.mark.parametrize("unit", UNITS)
def test_units_are_notify_services_with_a_watchdog_and_hardening(unit: str) -> None:
    opts = unit_options(unit)
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "Restart": "on-failure",
        "User": "edgeoff",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "ProtectKernelTunables": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "StateDirectory": "edgeoff",
        # a configuration error (exit 2: bad settings, a metrics port in use) fails at once, no restart loop
        "RestartPreventExitStatus": "2",
    }
    for key, value in expected.items():
        assert opts.get(key) == [value], f"{unit}: {key}={opts.get(key)}"
    assert re.fullmatch(r"\d+s?", opts["WatchdogSec"][0])
    assert opts["ExecStart"][0].startswith("/opt/edgeoff/venv/bin/edgeoff-")
    assert any(f.lstrip("-").startswith("/etc/edgeoff/") for f in opts["EnvironmentFile"])
    assert "%d/broker-password" in " ".join(opts["Environment"])  # the password as a systemd credential


def test_site_unit_takes_the_site_from_its_instance_name() -> None:
    assert unit_options("edgeoff-site@.service")["ExecStart"] == [
        "/opt/edgeoff/venv/bin/edgeoff-site --site %i"
    ]
    # a second site on one host takes its own metrics port from its per-instance env file (defect 7)
    assert "-/etc/edgeoff/site-%i.env" in unit_options("edgeoff-site@.service")["EnvironmentFile"]
    readme = (REPO / "systemd" / "README.md").read_text(encoding="utf-8")
    assert "site-<id>.env" in readme
    assert "EDGEOFF_SITE_METRICS_PORT" in readme


def env_keys(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split("=", 1)[0] for line in lines if line and not line.startswith("#")]


@pytest.mark.parametrize(
    ("env", "module", "cls", "prefix"),
    [
        ("site.env", "site_daemon.daemon", "SiteSettings", "EDGEOFF_SITE_"),
        ("worker.env", "prediction_worker.daemon", "WorkerSettings", "EDGEOFF_WORKER_"),
        ("agent.env", "mobile_agent.daemon", "AgentSettings", "EDGEOFF_AGENT_"),
    ],
)
def test_example_env_files_name_real_settings(env: str, module: str, cls: str, prefix: str) -> None:
    fields = set(getattr(importlib.import_module(module), cls).model_fields)
    for key in env_keys(REPO / "systemd" / "env" / env):
        assert key.startswith(prefix), key
        field = key.removeprefix(prefix).split("__")[0].lower()
        assert field in fields, f"{env}: {key} is not a setting of {cls}"


def test_install_script_dry_run_changes_nothing() -> None:
    proc = subprocess.run(
        ["bash", str(REPO / "systemd" / "install.sh"), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for unit in UNITS:
        assert f"/etc/systemd/system/{unit}" in proc.stdout
    assert "/opt/edgeoff/venv" in proc.stdout
    assert "systemctl daemon-reload" in proc.stdout


def _flag(args: list[str], flag: str) -> str | None:
    return str(args[args.index(flag) + 1]) if flag in args else None


def test_worker_and_agent_run_at_the_sites_time_compression() -> None:
    """The worker's availability window and the agent's planner follow the sites' failure rate: every
    deployment gives them the sites' --time-compression."""
    ours = ("site-", "worker", "agent")
    compose = {name: s["command"] for name, s in compose_services().items() if name.startswith(ours)}
    k8s = {
        w["metadata"]["name"]: w["spec"]["template"]["spec"]["containers"][0].get("args", [])
        for w in k8s_workloads()
        if w["metadata"]["name"].startswith(ours)
    }
    for commands in (compose, k8s):
        rates = {name: _flag(args, "--time-compression") for name, args in commands.items()}
        assert len(rates) == 6, rates
        assert len(set(rates.values())) == 1, rates
        assert None not in rates.values(), rates
    systemd = {}
    for daemon in ("site", "worker", "agent"):
        lines = (REPO / "systemd" / "env" / f"{daemon}.env").read_text(encoding="utf-8").splitlines()
        values = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
        systemd[daemon] = values.get(f"EDGEOFF_{daemon.upper()}_TIME_COMPRESSION")
    assert len(set(systemd.values())) == 1, systemd
    assert None not in systemd.values(), systemd
