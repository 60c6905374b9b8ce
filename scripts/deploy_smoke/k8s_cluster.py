"""A one-node Kubernetes 1.20 cluster on this machine, for `deploy-smoke k8s`, from Debian alone.

- kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl: built once from Debian's source
  package (`apt-get source kubernetes`, 1.20.2 with its vendor/ tree, Debian's Go) into
  CACHE/k8s-1.20.2/bin; etcd, containerd, runc and the CNI plugins are Debian packages.
- The node's network is a bridge of our own (edgeoff-k8s0, 10.244.0.1/24) that the CNI bridge plugin puts
  the pods on; the kubelet and the DNS stand-in (k8s_dns.py, instead of CoreDNS) listen on its address.
  No kube-proxy: the stand-in answers Service names with their ready endpoints' pod IPs.
- Certificates from openssl: one CA, the API server's, the kubelet's serving one, an admin client
  certificate (system:masters) that every component uses.
- Images come from Docker (`docker save`) into containerd's k8s.io namespace; the pod sandbox (pause) image
  is a static Go binary built here. Nothing is pulled.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .common import CACHE, SmokeError, ensure_packages, free_port, log, run, wait_for

K8S_VERSION = "1.20.2"
BIN = CACHE / f"k8s-{K8S_VERSION}" / "bin"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl")
PACKAGES = [
    "containerd",
    "runc",
    "etcd-server",
    "containernetworking-plugins",
    "golang-go",
    "openssl",
    "dpkg-dev",
]
BRIDGE, NODE_IP, SUBNET = "edgeoff-k8s0", "10.244.0.1", "10.244.0.0/24"
STATE = Path("/run/edgeoff-k8s")
RUN = CACHE / "run" / "k8s"
NODE = "edgeoff-smoke-node"
PAUSE_IMAGE = "docker.io/edgeoff-smoke/pause:local"
FORWARD_RULE = ["-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT", "-m", "comment", "--comment", "edgeoff-smoke"]

PAUSE_GO = """package main

import (
\t"os"
\t"os/signal"
\t"syscall"
)

// The pod sandbox: holds the pod's namespaces until told to stop.
func main() {
\tc := make(chan os.Signal, 1)
\tsignal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
\t<-c
}
"""


def build_binaries() -> float:
    """The Kubernetes binaries, built from Debian's source package when missing; the build's seconds."""
    if all((BIN / c).is_file() for c in COMPONENTS):
        log(f"k8s: binaries cached in {BIN}")
        return 0.0
    ensure_packages(["golang-go", "dpkg-dev", "rsync", "jq"])
    src_root = CACHE / "k8s-src"
    src_root.mkdir(parents=True, exist_ok=True)
    sources = [p for p in src_root.glob("kubernetes-*") if p.is_dir()]
    if not sources:
        _deb_src()
        log("k8s: apt-get source kubernetes")
        run(["apt-get", "source", "-qq", "kubernetes"], cwd=src_root, timeout=1800)
        sources = [p for p in src_root.glob("kubernetes-*") if p.is_dir()]
    src = sources[0]
    (src / ".go" / "src" / "k8s.io").mkdir(parents=True, exist_ok=True)
    link = src / ".go" / "src" / "k8s.io" / "kubernetes"
    if not link.is_symlink():
        link.symlink_to("../../..")
    env = {
        "GOPATH": str(src / ".go"),
        "CGO_ENABLED": "0",
        "GOFLAGS": "-mod=vendor",
        "HOME": str(CACHE / "k8s-build"),
        "GOCACHE": str(CACHE / "k8s-build" / "gocache"),
    }
    started = time.monotonic()
    log(f"k8s: building {', '.join(COMPONENTS)} from {src.name} (nice; ~7-18 min on 2 cores)")
    what = " ".join(f"cmd/{c}" for c in COMPONENTS)
    run(["nice", "-n", "19", "make", f"WHAT={what}"], cwd=src, env=env, timeout=3600)
    BIN.mkdir(parents=True, exist_ok=True)
    for c in COMPONENTS:
        shutil.copy2(src / "_output" / "bin" / c, BIN / c)
    return time.monotonic() - started


def _deb_src() -> None:
    sources = Path("/etc/apt/sources.list.d/edgeoff-smoke-src.sources")
    if not sources.exists():
        sources.write_text(
            "Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
        run(["apt-get", "update", "-qq"], timeout=600)


def _openssl(*args: str | Path) -> None:
    run(["openssl", *args])


class Cluster:
    """Starts etcd, the control plane, containerd, the kubelet and the DNS stand-in; `close` undoes it all."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.pki = RUN / "pki"
        self.kubeconfig = RUN / "admin.kubeconfig"
        self.api_port = 0

    # ------------------------------------------------------------------ helpers

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 120, input_text: str | None = None
    ) -> str:
        cmd: list[str | Path] = [BIN / "kubectl", "--kubeconfig", self.kubeconfig, *args]
        return run(cmd, check=check, timeout=timeout, input_text=input_text).stdout

    def ctr(self, *args: str | Path, timeout: float = 600) -> str:
        return run(
            ["ctr", "--address", STATE / "containerd.sock", "-n", "k8s.io", *args], timeout=timeout
        ).stdout

    def _start(self, name: str, cmd: list[str | Path], env: dict[str, str] | None = None) -> None:
        logfile = (RUN / "logs" / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [str(c) for c in cmd],
            stdout=logfile,
            stderr=subprocess.STDOUT,
            env=None if env is None else {**os.environ, **env},
            start_new_session=True,
        )
        logfile.close()
        self.procs.append((name, proc))

    def alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                tail = (RUN / "logs" / f"{name}.log").read_text(errors="replace")[-1500:]
                raise SmokeError(f"{name} exited {proc.returncode}:\n{tail}")

    # ------------------------------------------------------------------ setup

    def start(self, images: list[Path]) -> None:
        ensure_packages(PACKAGES)
        shutil.rmtree(RUN, ignore_errors=True)
        for d in (RUN / "logs", RUN / "cni", RUN / "pv", STATE):
            d.mkdir(parents=True, exist_ok=True)
        self._pki()
        self._network()
        self._containerd(images)
        self._control_plane()
        self._kubelet()
        here = Path(__file__).resolve().parent
        self._start("dns", [sys.executable, here / "k8s_dns.py", NODE_IP, BIN / "kubectl", self.kubeconfig])
        wait_for("the node to be Ready", self._node_ready, timeout=180, interval=2)

    def _pki(self) -> None:
        p = self.pki
        p.mkdir(parents=True)
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-subj", "/CN=edgeoff-smoke-ca", "-keyout", p / "ca.key", "-out", p / "ca.crt")  # fmt: skip
        certs = {
            "apiserver": ("/CN=kube-apiserver", f"subjectAltName=IP:127.0.0.1,IP:{NODE_IP},IP:10.96.0.1,"
                          "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"),
            "kubelet": (f"/CN={NODE}", f"subjectAltName=IP:{NODE_IP},DNS:{NODE}"),
            "admin": ("/O=system:masters/CN=admin", "extendedKeyUsage=clientAuth"),
        }  # fmt: skip
        for name, (subject, ext) in certs.items():
            _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
                     "-keyout", p / f"{name}.key", "-out", p / f"{name}.csr")  # fmt: skip
            (p / f"{name}.ext").write_text(ext + "\n")
            _openssl("x509", "-req", "-in", p / f"{name}.csr", "-CA", p / "ca.crt", "-CAkey", p / "ca.key",
                     "-CAcreateserial", "-days", "2", "-extfile", p / f"{name}.ext",
                     "-out", p / f"{name}.crt")  # fmt: skip
        _openssl("genrsa", "-out", p / "sa.key", "2048")
        _openssl("rsa", "-in", p / "sa.key", "-pubout", "-out", p / "sa.pub")
        self.api_port = free_port()
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "smoke",
                            "cluster": {
                                "server": f"https://127.0.0.1:{self.api_port}",
                                "certificate-authority": str(p / "ca.crt"),
                            },
                        }
                    ],
                    "users": [
                        {
                            "name": "admin",
                            "user": {
                                "client-certificate": str(p / "admin.crt"),
                                "client-key": str(p / "admin.key"),
                            },
                        }
                    ],
                    "contexts": [{"name": "smoke", "context": {"cluster": "smoke", "user": "admin"}}],
                    "current-context": "smoke",
                }
            )
        )

    def _network(self) -> None:
        run(["ip", "link", "del", BRIDGE], check=False)
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        run(["ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE])
        run(["ip", "link", "set", BRIDGE, "up"])
        # br_netfilter (loaded by Docker) sends bridged pod-to-pod traffic through FORWARD, whose policy
        # Docker sets to DROP: let our bridge talk to itself (removed again by close()).
        run(["iptables", "-w", "-I", "FORWARD", "1", *FORWARD_RULE])
        conf = {
            "cniVersion": "0.4.0",
            "name": "edgeoff-smoke",
            "plugins": [{
                "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": SUBNET, "gateway": NODE_IP}]],
                         "dataDir": str(RUN / "cni-ipam")},
            }],
        }  # fmt: skip
        (RUN / "cni" / "10-edgeoff.conflist").write_text(json.dumps(conf))
        (RUN / "resolv.conf").write_text(f"nameserver {NODE_IP}\n")

    def _containerd(self, images: list[Path]) -> None:
        config = f"""version = 2
root = "{RUN / "containerd"}"
state = "{STATE / "containerd"}"
[grpc]
  address = "{STATE / "containerd.sock"}"
[ttrpc]
  address = "{STATE / "containerd.sock.ttrpc"}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{RUN / "containerd-opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # This machine's root has no CAP_SYS_RESOURCE: it may not lower a process's oom_score_adj (the kubelet
  # asks -998 for a pod sandbox). Keep every score at or above containerd's own instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{RUN / "cni"}"
"""
        (RUN / "containerd.toml").write_text(config)
        self._start("containerd", ["containerd", "--config", RUN / "containerd.toml"])
        wait_for("containerd", lambda: (STATE / "containerd.sock").exists(), timeout=30, interval=0.5)
        for tar in images:
            self.ctr("images", "import", tar)

    def _control_plane(self) -> None:
        p, etcd, peer = self.pki, free_port(), free_port()
        self._start("etcd", [
            "etcd", "--name", "smoke", "--data-dir", RUN / "etcd",
            "--listen-client-urls", f"http://127.0.0.1:{etcd}", "--advertise-client-urls", f"http://127.0.0.1:{etcd}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"smoke=http://127.0.0.1:{peer}", "--listen-metrics-urls", "",
        ])  # fmt: skip
        self._start("kube-apiserver", [
            BIN / "kube-apiserver", f"--etcd-servers=http://127.0.0.1:{etcd}", "--bind-address=127.0.0.1",
            f"--secure-port={self.api_port}", f"--advertise-address={NODE_IP}",
            f"--tls-cert-file={p / 'apiserver.crt'}", f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}", f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.96.0.0/24", "--authorization-mode=Node,RBAC",
            f"--kubelet-client-certificate={p / 'admin.crt'}", f"--kubelet-client-key={p / 'admin.key'}",
            f"--kubelet-certificate-authority={p / 'ca.crt'}", "--kubelet-preferred-address-types=InternalIP",
            "--allow-privileged=false", "--profiling=false",
        ])  # fmt: skip
        wait_for("the API server", self._api_ready, timeout=120, interval=1)
        kc = str(self.kubeconfig)
        self._start("kube-controller-manager", [
            BIN / "kube-controller-manager", f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}", f"--service-account-private-key-file={p / 'sa.key'}",
            f"--root-ca-file={p / 'ca.crt'}", "--leader-elect=false", "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}", "--port=0", "--use-service-account-credentials=false",
        ])  # fmt: skip
        self._start("kube-scheduler", [
            BIN / "kube-scheduler", f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}", "--leader-elect=false", "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}", "--port=0",
        ])  # fmt: skip

    def _api_ready(self) -> bool:
        self.alive()
        return self.kubectl("get", "--raw", "/readyz", check=False, timeout=20).strip() == "ok"

    def _kubelet(self) -> None:
        p = self.pki
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP,
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            "tlsCertFile": str(p / "kubelet.crt"),
            "tlsPrivateKeyFile": str(p / "kubelet.key"),
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                               "x509": {"clientCAFile": str(p / "ca.crt")}},
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            "clusterDNS": [NODE_IP],
            "clusterDomain": "cluster.local",
            "resolvConf": str(RUN / "resolv.conf"),
            "failSwapOn": False,
            "evictionHard": {
                "memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
        }  # fmt: skip
        (RUN / "kubelet.json").write_text(json.dumps(config))
        self._start("kubelet", [
            BIN / "kubelet", f"--config={RUN / 'kubelet.json'}", f"--kubeconfig={self.kubeconfig}",
            "--container-runtime=remote", f"--container-runtime-endpoint=unix://{STATE / 'containerd.sock'}",
            f"--root-dir={RUN / 'kubelet'}", f"--hostname-override={NODE}", f"--node-ip={NODE_IP}",
        ])  # fmt: skip

    def _node_ready(self) -> bool:
        self.alive()
        out = self.kubectl("get", "node", NODE, "-o", "json", check=False)
        if not out:
            return False
        conditions = json.loads(out)["status"].get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    # ------------------------------------------------------------------ teardown

    def close(self) -> None:
        """Stop every component (kubelet first), then the pods' shims and mounts, the bridge, the state."""
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    log(f"k8s: {name} (pid {proc.pid}) ignored SIGTERM: SIGKILL")
                    proc.kill()
                    proc.wait(10)
        self.procs.clear()
        # The shims of containerd (one per pod) outlive it: end those started for our socket, by pid.
        marker = str(STATE / "containerd.sock")
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
                if cmdline[0].endswith(b"containerd-shim-runc-v2") and marker.encode() in b" ".join(cmdline):
                    os.kill(int(entry.name), signal.SIGKILL)
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith((str(RUN), str(STATE)))), reverse=True):
            run(["umount", "-l", mount], check=False)
        while run(["iptables", "-w", "-D", "FORWARD", *FORWARD_RULE], check=False).returncode == 0:
            pass
        run(["ip", "link", "del", BRIDGE], check=False)
        shutil.rmtree(STATE, ignore_errors=True)
