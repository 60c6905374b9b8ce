"""`deploy-smoke compose`: compose/compose.yaml for real, on a Docker engine of this machine.

Local base images (debootstrap, Debian packages), the project image built once through its base argument,
every service healthy on a free MQTT port, then: sites online, applications completing, a SIGKILLed site
restarted while the agent falls back, a hung loop ended by the daemon's own watchdog, a SIGSTOPped daemon
ended by the health check and restarted, the agent's results, and nothing left behind by `down -v`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from .common import (
    CACHE,
    REPO,
    SmokeError,
    Summary,
    ensure_packages,
    free_port,
    json_messages,
    observer_sub,
    run,
    wait_for,
)
from .docker import DOCKER, Docker
from .freeze import freeze_main_thread

PROJECT = "edgeoff-smoke"
SITES = ("ed", "ec", "er", "cd")
DAEMONS = (*(f"site-{s}" for s in SITES), "worker", "agent")
LONG_RUNNING = ("mosquitto", "redis", *DAEMONS)
IMAGE = "edgeoff:smoke"
HEALTHY_TIMEOUT_S = 240


class Compose:
    def __init__(self, docker: Docker, env: dict[str, str]) -> None:
        self.docker, self.env = docker, env

    def __call__(self, *args: str, check: bool = True, timeout: float = 600) -> str:
        cmd = [DOCKER, "compose", "-p", PROJECT, "-f", str(REPO / "compose" / "compose.yaml"), *args]
        return run(cmd, env={**self.docker.env, **self.env}, check=check, timeout=timeout).stdout

    def container(self, service: str) -> str:
        return f"{PROJECT}-{service}-1"

    def state(self, service: str) -> dict[str, object]:
        out = self.docker("inspect", "--format", "{{json .State}}|{{.RestartCount}}", self.container(service))
        state_json, _, restarts = out.strip().rpartition("|")
        state: dict[str, object] = json.loads(state_json)
        state["RestartCount"] = int(restarts)
        return state

    def restarts(self, service: str) -> int:
        """Docker's RestartCount of the service's container."""
        count = self.state(service)["RestartCount"]
        assert isinstance(count, int)
        return count

    def health(self, service: str) -> str:
        state = self.state(service)
        health = state.get("Health")
        if isinstance(health, dict):
            return str(health.get("Status"))
        return "running" if state.get("Running") else str(state.get("Status"))

    def all_healthy(self) -> bool:
        return all(self.health(s) == "healthy" for s in LONG_RUNNING)

    def daemon_pid(self, service: str) -> int:
        """Host pid of the daemon: the only child of the container's init (docker-init, `init: true`)."""
        init = int(self.docker("inspect", "--format", "{{.State.Pid}}", self.container(service)).strip())
        children = Path(f"/proc/{init}/task/{init}/children").read_text().split()
        if len(children) != 1:
            raise SmokeError(f"{service}: init {init} has children {children}, expected one daemon")
        return int(children[0])

    def mqtt_read(self, topic: str, *, count: int, wait_s: int) -> list[tuple[str, dict[str, object]]]:
        """Messages on `topic` (retained first) read as the observer inside the broker's container."""
        script = observer_sub(topic, count=count, wait_s=wait_s)
        out = self("exec", "-T", "mosquitto", "sh", "-c", script, check=False, timeout=wait_s + 30)
        return json_messages(out)

    def logs(self, service: str, since: float) -> str:
        return self("logs", "--no-color", "--since", str(int(since)), service, check=False)


def _agent_progress(compose: Compose) -> dict[str, int]:
    messages = compose.mqtt_read("edgeoff/v1/agents/md/policy", count=1, wait_s=5)
    progress = messages[0][1].get("progress") if messages else None
    return {k: int(v) for k, v in progress.items()} if isinstance(progress, dict) else {}


def _sites_seen_online(compose: Compose, wait_s: int) -> set[str]:
    seen = set()
    for topic, status in compose.mqtt_read("edgeoff/v1/sites/+/status", count=len(SITES), wait_s=wait_s):
        if status.get("state") == "online":
            seen.add(topic.split("/")[3])
        if seen == set(SITES):
            break
    return seen


def _wait_restarted(compose: Compose, service: str, restarts_before: int, timeout: float) -> float:
    """Seconds until `service` restarted and is healthy again."""
    started = time.monotonic()
    wait_for(
        f"{service} to restart",
        lambda: compose.restarts(service) > restarts_before,
        timeout=timeout,
    )
    wait_for(f"{service} healthy again", lambda: compose.health(service) == "healthy", timeout=120)
    return time.monotonic() - started


def _volumes(docker: Docker) -> set[str]:
    return set(docker("volume", "ls", "-q").split())


def smoke(summary: Summary) -> None:
    ensure_packages(["mosquitto"])  # mosquitto_passwd for make-passwords.py
    python = REPO / ".venv" / "bin" / "python"
    if not python.is_file():
        raise SmokeError(f"{python} missing: make the project's venv first (.ci/run does)")
    docker = Docker()
    secrets = CACHE / "run" / "compose-secrets"
    compose: Compose | None = None
    try:
        docker.start()
        images = docker.base_images()
        summary.figures.update(docker.figures)
        shutil.rmtree(secrets, ignore_errors=True)
        run([python, REPO / "brokers" / "make-passwords.py", "--secrets", secrets])
        port = free_port()
        compose = Compose(
            docker,
            {
                "EDGEOFF_IMAGE": IMAGE,
                "EDGEOFF_PYTHON_IMAGE": images["python"],
                "EDGEOFF_MOSQUITTO_IMAGE": images["mosquitto"],
                "EDGEOFF_REDIS_IMAGE": images["redis"],
                "EDGEOFF_MQTT_PORT": str(port),
                "EDGEOFF_SECRETS_DIR": str(secrets),
                "DOCKER_BUILDKIT": "1",
            },
        )
        compose("down", "-v", "--remove-orphans", check=False)  # a run that died half-way
        volumes_before = _volumes(docker)
        _up(summary, compose)
        _checks(summary, compose)
        _down(summary, compose, docker, volumes_before)
        compose = None
    finally:
        if compose is not None:
            print(compose("ps", "-a", check=False), file=sys.stderr)
            for service in LONG_RUNNING:
                print(compose("logs", "--no-color", "--tail", "15", service, check=False), file=sys.stderr)
            compose("down", "-v", "--remove-orphans", "-t", "5", check=False)
        shutil.rmtree(secrets, ignore_errors=True)
        docker.close()


def _up(summary: Summary, compose: Compose) -> None:
    config = json.loads(compose("config", "--format", "json"))
    builders = sorted(name for name, svc in config["services"].items() if "build" in svc)
    summary.check(
        "the image is built by one service only", builders == ["edgeoff-image"], ", ".join(builders)
    )
    started = time.monotonic()
    compose("build", timeout=1800)
    summary.figure("image_build_s", time.monotonic() - started)
    started = time.monotonic()
    compose("up", "-d", timeout=600)
    wait_for("every service healthy", compose.all_healthy, timeout=HEALTHY_TIMEOUT_S, interval=2)
    summary.figure("time_to_healthy_s", time.monotonic() - started)
    summary.check(
        "every service healthy",
        True,
        f"{len(LONG_RUNNING)} services, MQTT on 127.0.0.1:{compose.env['EDGEOFF_MQTT_PORT']}",
    )
    users = {s: compose.docker("exec", compose.container(s), "id", "-u").strip() for s in DAEMONS}
    summary.check("no daemon runs as root", all(u not in ("", "0") for u in users.values()), str(users))


def _checks(summary: Summary, compose: Compose) -> None:
    seen: set[str] = set()

    def all_online() -> bool:
        seen.update(_sites_seen_online(compose, wait_s=5))
        return seen == set(SITES)

    wait_for("every site online", all_online, timeout=60)
    summary.check("every site online", seen == set(SITES), ", ".join(sorted(seen)))
    first = wait_for(
        "an application run to complete", lambda: _agent_progress(compose).get("apps_done"), timeout=120
    )
    summary.check("applications complete", first > 0, f"{first} app runs done so far")

    # SIGKILL: the site dies like a crashed process; `restart:` brings it back. Meanwhile the agent learns it
    # is down (its Last Will), sends its tasks elsewhere, and fails over any task it had in flight there.
    restarts = compose.restarts("site-ed")
    progress = _agent_progress(compose).get("apps_done", 0)
    killed_at = time.time()
    os.kill(compose.daemon_pid("site-ed"), signal.SIGKILL)
    summary.figure("sigkill_restart_to_healthy_s", _wait_restarted(compose, "site-ed", restarts, timeout=60))
    after = _agent_progress(compose).get("apps_done", 0)
    agent_log = compose.logs("agent", killed_at).splitlines()
    down = [line for line in agent_log if "site ed is down" in line]
    fallbacks = [line for line in agent_log if "failed on ed" in line]
    summary.figure("fallbacks_from_ed_after_sigkill", len(fallbacks))
    summary.check(
        "SIGKILLed site restarted; the agent saw it down and went on elsewhere",
        bool(down) and after > progress,
        f"{len(down)} down notices, app runs {progress} -> {after}, "
        f"{len(fallbacks)} tasks failed over from ed",
    )

    # A hung loop (the main thread frozen, the other threads run on) and a frozen process (SIGSTOP), together.
    hung, stopped = "site-ec", "site-er"
    before = {s: compose.restarts(s) for s in (hung, stopped)}
    hung_at = time.time()
    freezer = freeze_main_thread(compose.daemon_pid(hung), hold_s=90)
    stopped_pid = compose.daemon_pid(stopped)
    os.kill(stopped_pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        hang_s = _wait_restarted(compose, hung, before[hung], timeout=90)
        lines = [line for line in compose.logs(hung, hung_at).splitlines() if "serve loop silent" in line]
        summary.figure("hung_loop_restart_to_healthy_s", hang_s)
        summary.check(
            "hung loop ended by its own watchdog (exit 70) and restarted",
            bool(lines),
            lines[0][-160:] if lines else "no watchdog line",
        )
        _wait_restarted(compose, stopped, before[stopped], timeout=120)
        stop_s = time.monotonic() - stopped_at
        summary.figure("sigstop_restart_to_healthy_s", stop_s)
        summary.check("SIGSTOPped daemon killed by the health check and restarted", True, f"{stop_s:.0f} s")
    finally:
        freezer.terminate()
        freezer.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.kill(stopped_pid, signal.SIGCONT)
    wait_for("every service healthy after the faults", compose.all_healthy, timeout=120, interval=2)

    # The agent writes its results when stopped.
    compose("stop", "agent")
    out = CACHE / "run" / "compose-results.json"
    out.unlink(missing_ok=True)
    compose("cp", "agent:/results/results.json", str(out))
    results = json.loads(out.read_text())
    apps, fallback_count = int(results.get("apps_completed", 0)), int(results.get("fallbacks", 0))
    summary.figure("apps_completed", apps)
    summary.figure("fallbacks", fallback_count)
    summary.check("the agent wrote its results", apps > 0, f"{apps} app runs, {fallback_count} fallbacks")


def _down(summary: Summary, compose: Compose, docker: Docker, volumes_before: set[str]) -> None:
    named = {
        f"{PROJECT}_{v}"
        for v in (
            "mosquitto-data",
            "mosquitto-secrets",
            "redis-data",
            "redis-secrets",
            "daemon-secrets",
            "agent-results",
        )
    }
    compose("down", "-t", "15")
    left = _volumes(docker) - volumes_before
    summary.check(
        "down leaves only the named volumes (no anonymous ones)",
        left == named,
        ", ".join(sorted(left - named)) or "named only",
    )
    compose("down", "-v")
    label = f"label=com.docker.compose.project={PROJECT}"
    containers = docker("ps", "-aq", "--filter", label).split()
    networks = docker("network", "ls", "-q", "--filter", label).split()
    left = _volumes(docker) - volumes_before
    summary.check(
        "down -v leaves no container, network or volume",
        not (containers or networks or left),
        f"{len(containers)} containers, {len(networks)} networks, {len(left)} volumes",
    )
