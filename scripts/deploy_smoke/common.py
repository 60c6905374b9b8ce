"""What every smoke shares: running commands, waiting on conditions, Debian packages, the cache, the summary.

Standard library only: the smokes run with the system's python3, before and outside the project's venv.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent.parent
# Everything built (root file systems, images, Docker's data root, the Kubernetes binaries) lives here,
# outside the repository, keyed by content hashes so that a second run reuses it.
CACHE = Path(os.environ.get("EDGEOFF_SMOKE_CACHE", "/var/cache/edgeoff-smoke"))
DEBIAN_MIRROR = os.environ.get("EDGEOFF_SMOKE_MIRROR", "http://deb.debian.org/debian")
DEBIAN_SUITE = "bookworm"

T = TypeVar("T")


class SmokeError(Exception):
    """A check failed or a step could not be done; the message says which and why."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(
    cmd: Sequence[str | Path],
    *,
    check: bool = True,
    capture: bool = True,
    timeout: float = 600,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `cmd`; with `check`, a non-zero exit raises SmokeError with the command's output."""
    args = [str(c) for c in cmd]
    try:
        proc = subprocess.run(
            args,
            capture_output=capture,
            text=True,
            timeout=timeout,
            env=None if env is None else {**os.environ, **env},
            cwd=cwd,
            input=input_text,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SmokeError(f"`{shlex.join(args)}` did not finish within {timeout:g} s") from exc
    if check and proc.returncode != 0:
        output = ((proc.stdout or "") + (proc.stderr or "")).strip()[-3000:]
        raise SmokeError(f"`{shlex.join(args)}` exited {proc.returncode}\n{output}")
    return proc


def wait_for(what: str, probe: Callable[[], T | None], *, timeout: float, interval: float = 1.0) -> T:
    """Poll `probe` until it returns something truthy; SmokeError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            value = probe()
        except SmokeError as exc:
            value, last_error = None, str(exc)
        if value:
            return value
        if time.monotonic() > deadline:
            suffix = f" (last error: {last_error[-500:]})" if last_error else ""
            raise SmokeError(f"timed out after {timeout:g} s waiting for {what}{suffix}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def observer_sub(topic: str, *, count: int, wait_s: int) -> str:
    """The shell line that reads `count` messages of `topic` (retained first) as the observer, inside a
    broker container of the deployment (its passwords under /mosquitto/secrets), for at most `wait_s` s."""
    return (
        'mosquitto_sub -h 127.0.0.1 -u observer -P "$(cat /mosquitto/secrets/passwords/observer)" '
        f"-t '{topic}' -v -C {count} -W {wait_s}"
    )


def json_messages(out: str) -> list[tuple[str, dict[str, object]]]:
    """(topic, payload) of each `mosquitto_sub -v` line whose payload is JSON; other lines are skipped."""
    messages = []
    for line in out.splitlines():
        name, _, payload = line.partition(" ")
        try:
            messages.append((name, json.loads(payload)))
        except ValueError:
            continue
    return messages


def digest(*parts: str | bytes) -> str:
    """A short content hash of the parts (in order): the cache key of what they build."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------- host packages


def missing_packages(packages: Iterable[str]) -> list[str]:
    missing = []
    for package in packages:
        proc = run(["dpkg-query", "-W", "-f=${Status}", package], check=False)
        if "install ok installed" not in proc.stdout:
            missing.append(package)
    return missing


def ensure_packages(packages: Iterable[str]) -> None:
    """Install the Debian packages that are missing (root: this is the CI machine's own setup)."""
    missing = missing_packages(packages)
    if not missing:
        return
    log(f"installing Debian packages: {' '.join(missing)}")
    run(["apt-get", "update", "-qq"], timeout=600)
    run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        env={"DEBIAN_FRONTEND": "noninteractive"},
        timeout=1200,
    )


def host_ca_bundle() -> Path:
    """The CA bundle the host's pip trusts (PIP_CERT, else `pip config`'s cert, else Debian's bundle)."""
    candidates = [os.environ.get("PIP_CERT", "")]
    proc = run([sys.executable, "-m", "pip", "config", "list"], check=False)
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip().endswith(".cert"):
            candidates.append(value.strip().strip("'\""))
    candidates.append("/etc/ssl/certs/ca-certificates.crt")
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise SmokeError("no CA bundle found for pip (PIP_CERT, pip config cert, /etc/ssl/certs)")


# ---------------------------------------------------------------------- debootstrap root file systems


def rootfs_tar(name: str, include: Sequence[str], *, variant: str = "minbase") -> tuple[Path, str]:
    """A Debian root file system as a tar, from debootstrap, cached by the hash of its recipe.

    Returns the tar and its hash. Built once per recipe into CACHE/rootfs/ (a few minutes from the mirror).
    """
    key = digest(DEBIAN_SUITE, DEBIAN_MIRROR, variant, ",".join(sorted(include)), "rootfs-v1")
    out = CACHE / "rootfs" / f"{name}-{key}.tar"
    if out.is_file():
        log(f"rootfs {name}: cached {out}")
        return out, key
    ensure_packages(["debootstrap"])
    work = CACHE / "rootfs" / f"{name}-{key}.build"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.monotonic()
    log(f"rootfs {name}: debootstrap --variant={variant} {DEBIAN_SUITE} ({len(include)} extra packages)")
    cmd = ["debootstrap", f"--variant={variant}"]
    if include:
        cmd.append("--include=" + ",".join(include))
    run([*cmd, DEBIAN_SUITE, work, DEBIAN_MIRROR], timeout=1800)
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (work / leftover).glob("*"):
            if path.is_file():
                path.unlink()
    tmp = out.with_suffix(".tmp")
    run(["tar", "--numeric-owner", "-C", work, "-cf", tmp, "."], timeout=600)
    tmp.rename(out)
    shutil.rmtree(work, ignore_errors=True)
    log(f"rootfs {name}: built in {time.monotonic() - started:.0f} s -> {out}")
    return out, key


# ---------------------------------------------------------------------- the summary


@dataclass
class Summary:
    """The checks of one smoke and its figures; printed as a table and a JSON last line."""

    smoke: str
    started: float = field(default_factory=time.monotonic)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    figures: dict[str, object] = field(default_factory=dict)

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append((name, ok, detail))
        log(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")
        if not ok:
            raise SmokeError(f"check failed: {name}: {detail}")

    def figure(self, name: str, value: object) -> None:
        self.figures[name] = round(value, 1) if isinstance(value, float) else value

    def print(self, error: str | None) -> bool:
        ok = error is None and all(passed for _, passed, _ in self.checks)
        duration = time.monotonic() - self.started
        print(f"\n== deploy-smoke {self.smoke}: {'PASSED' if ok else 'FAILED'} in {duration:.0f} s")
        for name, passed, detail in self.checks:
            print(f"  {'ok  ' if passed else 'FAIL'} {name}{'  (' + detail + ')' if detail else ''}")
        for name, value in self.figures.items():
            print(f"  {name} = {value}")
        if error:
            print(f"  error: {error}")
        record = {
            "smoke": self.smoke,
            "ok": ok,
            "duration_s": round(duration, 1),
            "checks": {name: passed for name, passed, _ in self.checks},
            "figures": self.figures,
            "error": error,
        }
        print(json.dumps(record, sort_keys=True), flush=True)
        return ok
