"""A user-space TCP proxy for fault injection (benchmarks/chaos.py): a partition that keeps connections open.

While `paused` is set it moves no byte either way: the connections stay open, the kernel buffers fill, and
what was buffered flows when it heals, as after a real network partition.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time

from local_brokers import free_port


class Proxy:
    """A user-space TCP proxy 127.0.0.1:port -> 127.0.0.1:upstream that can stop moving bytes."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.paused = threading.Event()
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.setblocking(False)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ, None)
        while not self._stop.is_set():
            for key, _ in sel.select(0.05):
                if key.data is None:
                    self._accept(sel)
                elif not self.paused.is_set():
                    self._pump(sel, key.fileobj, key.data)  # type: ignore[arg-type]
            if self.paused.is_set():
                time.sleep(0.01)  # a partition: nothing moves, the kernel buffers fill

    def _accept(self, sel: selectors.BaseSelector) -> None:
        try:
            client, _ = self._listener.accept()
            server = socket.create_connection(("127.0.0.1", self.upstream), timeout=1.0)
        except OSError:
            return
        for sock in (client, server):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sel.register(client, selectors.EVENT_READ, server)
        sel.register(server, selectors.EVENT_READ, client)

    def _pump(self, sel: selectors.BaseSelector, src: socket.socket, dst: socket.socket) -> None:
        try:
            data = src.recv(65536)
            if data:
                dst.setblocking(True)
                dst.sendall(data)
                dst.setblocking(False)
                return
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(KeyError, ValueError):
                sel.unregister(sock)
            sock.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._listener.close()
