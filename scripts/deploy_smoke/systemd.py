"""`deploy-smoke systemd`: the units of systemd/ for real, in a Debian node booted with systemd-nspawn.

The node (debootstrap: systemd, Python, Mosquitto, Redis) boots with systemd as PID 1 and a private network
(loopback only: its brokers never meet the host's). The project is installed by systemd/install.sh from a
copy of this checkout, with pip reading a wheelhouse built on the host (no index inside the node); the
brokers are set up by systemd/setup-brokers.sh as systemd/README.md §1 says. Then two sites, the worker and
the agent run as units, and the checks: active only after READY, the watchdog pinged, SIGSTOP -> watchdog
restart, SIGKILL -> restart, a configuration error that does not loop, a reboot, the agent's results.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from .common import CACHE, REPO, SmokeError, Summary, digest, ensure_packages, log, rootfs_tar, run, wait_for

NODE_PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-venv",
    "ca-certificates",
    "mosquitto",
    "mosquitto-clients",
    "redis-server",
]
SRC_IN_NODE = "/root/edgeoff"
WHEELS_IN_NODE = "/var/cache/edgeoff-wheels"
UNITS = ("edgeoff-site@ed", "edgeoff-site@ec", "edgeoff-worker", "edgeoff-agent")
BOOT_TIMEOUT_S = 120


def _wheelhouse() -> Path:
    """Wheels of the project's dependencies and build backend, by pyproject's hash, resolved by the host's
    pip (its index and CA) for Debian's python3, the node's interpreter (environment markers differ
    between 3.11 releases: redis needs async-timeout below 3.11.3)."""
    pyproject = (REPO / "pyproject.toml").read_bytes()
    out = CACHE / "wheels" / digest(pyproject, "wheels-v2")
    if (out / ".complete").is_file():
        log(f"wheelhouse: cached {out}")
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    started = time.monotonic()
    log(f"wheelhouse: pip wheel of the project's dependencies into {out}")
    ensure_packages(["python3-venv"])
    venv = CACHE / "tools" / "debian-python"
    if not (venv / "bin" / "pip").is_file():
        run(["/usr/bin/python3", "-m", "venv", venv])
    pip = venv / "bin" / "pip"
    # The dependencies only (install.sh installs the project from its source; a wheel of the checkout would
    # be built in the checkout, leaving build/ behind).
    requirements = out / "requirements.txt"
    requirements.write_text("\n".join(tomllib.loads(pyproject.decode())["project"]["dependencies"]) + "\n")
    run([pip, "wheel", "-q", "--wheel-dir", out, "-r", requirements], timeout=1200)
    run([pip, "download", "-q", "--dest", out, "pip", "setuptools>=77", "wheel"])
    (out / ".complete").write_text(f"{time.monotonic() - started:.0f} s\n")
    return out


def _copy_checkout(dest: Path) -> None:
    """The files git tracks or would track (no venvs, secrets or results)."""
    files = run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO).stdout.split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


class Node:
    """One systemd-nspawn container booted from `root`; commands run inside it through nsenter."""

    def __init__(self, root: Path, wheels: Path) -> None:
        self.root, self.wheels = root, wheels
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader = 0
        self.boots = 0

    def boot(self) -> float:
        started = time.monotonic()
        console = (CACHE / "run" / "nspawn.log").open("ab")
        self.proc = subprocess.Popen(
            [
                "systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--private-network",
                "--console=passive", "--machine=edgeoff-smoke", f"--directory={self.root}",
                f"--bind-ro={self.wheels}:{WHEELS_IN_NODE}", "--boot",
            ],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        console.close()
        self.boots += 1
        self.leader = wait_for("the node's PID 1", self._find_leader, timeout=30, interval=0.2)
        wait_for("the node to finish booting", self._booted, timeout=BOOT_TIMEOUT_S)
        return time.monotonic() - started

    def _find_leader(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            raise SmokeError(f"systemd-nspawn exited {self.proc and self.proc.returncode}: see nspawn.log")
        ours = os.readlink("/proc/self/ns/pid")
        todo = [self.proc.pid]
        while todo:
            pid = todo.pop()
            try:
                if os.readlink(f"/proc/{pid}/ns/pid") != ours:
                    return pid
                todo += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
            except OSError:
                continue
        return None

    def _booted(self) -> bool:
        state = self.sh("systemctl is-system-running", check=False).strip()
        if state == "degraded":
            failed = self.sh("systemctl --failed --no-legend --plain", check=False)
            raise SmokeError(f"the node booted degraded: {failed.strip()}")
        return state == "running"

    def sh(self, script: str, *, check: bool = True, timeout: float = 600) -> str:
        cmd = ["nsenter", f"--target={self.leader}", "--all", "--", "/bin/sh", "-c", script]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise SmokeError(
                f"in the node: `{script}` exited {proc.returncode}\n{(proc.stdout + proc.stderr)[-3000:]}"
            )
        return proc.stdout

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.sh(f"systemctl show {unit} " + " ".join(f"-p {p}" for p in props))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise SmokeError(f"systemd-nspawn did not exit within {timeout:g} s") from exc

    def close(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        log("node: powering off")
        self.sh("systemctl poweroff", check=False, timeout=30)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def smoke(summary: Summary) -> None:
    ensure_packages(["systemd-container", "debootstrap"])
    tar, _ = rootfs_tar("systemd-node", NODE_PACKAGES)
    wheels = _wheelhouse()
    root = CACHE / "run" / "systemd-node"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    run(["tar", "--numeric-owner", "-C", root, "-xf", tar], timeout=600)
    (root / "etc" / "hostname").write_text("edgeoff-node\n")
    # The node's machine id is made at first boot; hosts= and a local name keep it off any DNS.
    (root / "etc" / "hosts").write_text("127.0.0.1 localhost edgeoff-node\n::1 localhost\n")
    _copy_checkout(root / SRC_IN_NODE.lstrip("/"))
    node = Node(root, wheels)
    try:
        summary.figure("boot_s", node.boot())
        _install(summary, node)
        _checks(summary, node)
    finally:
        if node.proc is not None and node.proc.poll() is None and sys.exc_info()[0] is not None:
            print(
                node.sh("systemctl --no-pager status 'edgeoff-*' mosquitto redis-server", check=False)[
                    -6000:
                ],
                file=sys.stderr,
            )
            print(node.sh("journalctl --no-pager -n 60", check=False), file=sys.stderr)
        node.close()
        shutil.rmtree(root, ignore_errors=True)


def _install(summary: Summary, node: Node) -> None:
    started = time.monotonic()
    pip_env = f"PIP_NO_INDEX=1 PIP_FIND_LINKS={WHEELS_IN_NODE} PIP_DISABLE_PIP_VERSION_CHECK=1"
    node.sh(f"cd {SRC_IN_NODE} && {pip_env} systemd/install.sh", timeout=900)
    summary.figure("install_s", time.monotonic() - started)
    node.sh(f"cd {SRC_IN_NODE} && systemd/setup-brokers.sh --local-env")
    brokers = {
        u: node.sh(f"systemctl is-active {u}", check=False).strip() for u in ("mosquitto", "redis-server")
    }
    summary.check("brokers set up by setup-brokers.sh", set(brokers.values()) == {"active"}, str(brokers))
    # Two sites on one host: the second one takes its own metrics port from site-<id>.env (systemd/README.md).
    node.sh(
        "printf 'EDGEOFF_SITE_METRICS_PORT=9104\\n' > /etc/edgeoff/site-ec.env"
        " && chmod 0600 /etc/edgeoff/site-ec.env"
    )
    started = time.monotonic()
    node.sh("systemctl enable --now " + " ".join(UNITS), timeout=300)
    summary.figure("units_active_s", time.monotonic() - started)


def _apps_done(node: Node) -> int:
    out = node.sh(
        'mosquitto_sub -h 127.0.0.1 -u observer -P "$(cat /etc/edgeoff/secrets/passwords/observer)" '
        "-t edgeoff/v1/agents/md/policy -C 1 -W 5",
        check=False,
    )
    try:
        return int(json.loads(out)["progress"]["apps_done"])
    except (ValueError, KeyError, TypeError):
        return 0


def _signal_to_active(node: Node, unit: str, signal: str, *, restart_s: float) -> float:
    """Send `signal` to the unit's main process, wait for systemd to restart it (within `restart_s`) and
    for it to be active again; the seconds from the signal to active."""
    restarts = int(node.show(unit, "NRestarts")["NRestarts"])
    sent_at = time.monotonic()
    node.sh(f"systemctl kill --kill-who=main -s {signal} {unit}")
    wait_for(
        f"a restart of {unit}",
        lambda: int(node.show(unit, "NRestarts")["NRestarts"]) > restarts,
        timeout=restart_s,
    )
    wait_for(f"{unit} active again", lambda: _active(node, unit), timeout=120)
    return time.monotonic() - sent_at


def _active(node: Node, unit: str) -> bool:
    return node.sh(f"systemctl is-active {unit}", check=False).strip() == "active"


def _checks(summary: Summary, node: Node) -> None:
    # Type=notify: `systemctl start` returned only once READY=1 came, with the status text it carries.
    shown = {u: node.show(u, "ActiveState", "StatusText", "Type") for u in UNITS}
    ready = all(
        s["ActiveState"] == "active" and s["Type"] == "notify" and s["StatusText"].endswith("connected")
        for s in shown.values()
    )
    summary.check(
        "every unit active only after READY=1",
        ready,
        "; ".join(f"{u}: {s['StatusText']}" for u, s in shown.items()),
    )

    first = node.show("edgeoff-site@ed", "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]

    def advanced() -> str | None:
        v = node.show("edgeoff-site@ed", "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]
        return v if v != first and v else None

    later = wait_for("WatchdogTimestamp to advance", advanced, timeout=40)
    summary.check("WatchdogTimestamp advances", int(later) > int(first), f"{first} -> {later} us")

    # SIGSTOP: the loop stops pinging; systemd's watchdog (30 s) aborts the daemon and restarts it.
    summary.figure("sigstop_to_active_s", _signal_to_active(node, "edgeoff-site@ec", "SIGSTOP", restart_s=90))
    journal = node.sh("journalctl --no-pager -u edgeoff-site@ec -o cat")
    summary.check(
        "SIGSTOP leads to a watchdog restart", "Watchdog timeout" in journal, "journal: Watchdog timeout"
    )

    killed_s = _signal_to_active(node, "edgeoff-worker", "SIGKILL", restart_s=30)
    summary.figure("sigkill_to_active_s", killed_s)
    summary.check("SIGKILL leads to a restart", True, f"{killed_s:.0f} s")

    # A configuration error: a third site without its own metrics port collides with ed's (9101): exit 2,
    # and RestartPreventExitStatus=2 keeps it from restarting every 2 s until the start limit.
    node.sh("systemctl start edgeoff-site@er", check=False, timeout=300)
    failed = wait_for(
        "edgeoff-site@er to fail",
        lambda: (
            node.show("edgeoff-site@er", "ActiveState", "ExecMainStatus", "NRestarts")
            if node.show("edgeoff-site@er", "ActiveState")["ActiveState"] == "failed"
            else None
        ),
        timeout=120,
    )
    time.sleep(5)  # two RestartSec periods: a looping unit would have restarted by now
    again = node.show("edgeoff-site@er", "ActiveState", "NRestarts")
    summary.check(
        "a configuration error does not loop",
        failed["ExecMainStatus"] == "2" and again["NRestarts"] == "0" and again["ActiveState"] == "failed",
        f"exit {failed['ExecMainStatus']}, {again['NRestarts']} restarts",
    )
    node.sh("systemctl reset-failed edgeoff-site@er")

    # A reboot: nspawn exits 133 on the container's reboot; boot it again and everything enabled comes back.
    rebooted_at = time.monotonic()
    node.sh("systemctl reboot", check=False, timeout=30)
    code = node.wait_exit(120)
    if code != 133:
        raise SmokeError(f"systemd-nspawn exited {code} on the node's reboot, expected 133")
    node.boot()
    wait_for(
        "every unit active after the reboot",
        lambda: all(_active(node, u) for u in (*UNITS, "mosquitto", "redis-server")),
        timeout=180,
    )
    summary.figure("reboot_to_active_s", time.monotonic() - rebooted_at)
    summary.check("after a reboot everything comes back", True, ", ".join(UNITS))

    # Applications complete (the agent's retained policy carries its progress), and the agent writes its
    # results when stopped.
    done = wait_for("application runs to complete after the reboot", lambda: _apps_done(node), timeout=120)
    summary.check("applications complete", done > 0, f"{done} app runs so far")
    node.sh("systemctl stop edgeoff-agent", timeout=120)
    results = json.loads(node.sh("cat /var/lib/edgeoff/agent-results.json"))
    apps = int(results.get("apps_completed", 0))
    summary.figure("apps_completed_after_reboot", apps)
    summary.check(
        "the agent writes its results", apps > 0, f"{apps} app runs in /var/lib/edgeoff/agent-results.json"
    )
