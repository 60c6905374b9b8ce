"""A stand-in for CoreDNS in the smoke's one-node cluster: `python3 k8s_dns.py ADDR KUBECTL KUBECONFIG`.

Answers A queries for `<service>[.<namespace>[.svc[.cluster.local]]]` with the addresses of the Service's
ready endpoints, as CoreDNS does for a headless Service; the cluster runs no kube-proxy, so a ClusterIP
would lead nowhere and the pod IPs are what a client can reach. A name without ready endpoints is NXDOMAIN
(as a Service whose pod is not ready yet, which is what a cold start looks like). The endpoints are read
from the API server once a second. Standard library only.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
import time

DOMAIN = "svc.cluster.local"


class Endpoints:
    def __init__(self, kubectl: str, kubeconfig: str) -> None:
        self.cmd = [kubectl, "--kubeconfig", kubeconfig, "get", "endpoints", "-A", "-o", "json"]
        self.table: dict[tuple[str, str], list[str]] = {}

    def refresh_forever(self) -> None:
        while True:
            proc = subprocess.run(self.cmd, capture_output=True, text=True, timeout=20, check=False)
            if proc.returncode == 0:
                table = {}
                for item in json.loads(proc.stdout)["items"]:
                    meta = item["metadata"]
                    addresses = [
                        a["ip"] for subset in item.get("subsets") or [] for a in subset.get("addresses") or []
                    ]
                    table[(meta["namespace"], meta["name"])] = addresses
                self.table = table
            time.sleep(1)

    def lookup(self, name: str, client_namespace: str | None) -> list[str] | None:
        labels = name.rstrip(".").lower().split(".")
        if ".".join(labels[2:]) in (DOMAIN, "svc") and len(labels) >= 2:
            return self.table.get((labels[1], labels[0]))
        if len(labels) == 2:
            return self.table.get((labels[1], labels[0]))
        if len(labels) == 1 and client_namespace:
            return self.table.get((client_namespace, labels[0]))
        return None


def _qname(packet: bytes) -> tuple[str, int]:
    labels, i = [], 12
    while packet[i]:
        n = packet[i]
        labels.append(packet[i + 1 : i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    return ".".join(labels), i + 1


def answer(packet: bytes, endpoints: Endpoints) -> bytes | None:
    if len(packet) < 17:
        return None
    ident, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    name, end = _qname(packet)
    qtype, _qclass = struct.unpack("!HH", packet[end : end + 4])
    question = packet[12 : end + 4]
    # Pods search <ns>.svc.cluster.local first: `redis.edgeoff.svc.cluster.local` carries the namespace.
    addresses = endpoints.lookup(name, None)
    rcode = 0 if addresses else 3  # NXDOMAIN when the name is unknown or has no ready endpoint
    answers = b""
    if addresses and qtype == 1:
        for ip in addresses:
            answers += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4) + socket.inet_aton(ip)
    count = len(addresses) if addresses and qtype == 1 else 0
    header = struct.pack("!HHHHHH", ident, 0x8180 | (flags & 0x0100) | rcode, 1, count, 0, 0)
    return header + question + answers


def main() -> None:
    address, kubectl, kubeconfig = sys.argv[1:4]
    endpoints = Endpoints(kubectl, kubeconfig)
    threading.Thread(target=endpoints.refresh_forever, daemon=True).start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 53))
    print(f"dns stand-in on {address}:53", flush=True)
    while True:
        packet, client = sock.recvfrom(512)
        try:
            reply = answer(packet, endpoints)
        except (IndexError, struct.error, UnicodeError):
            reply = None
        if reply is not None:
            sock.sendto(reply, client)


if __name__ == "__main__":
    main()
