"""A TCP proxy that can stop forwarding: a database (or a network) that stops answering while
the operating system still acknowledges, for the tests and bench/pg_restart --stop-mode freeze."""

from __future__ import annotations

import contextlib
import socket
import threading


class FreezingProxy:
    """A TCP proxy on 127.0.0.1 to `port` that can stop forwarding: frozen, it accepts and holds
    connections and reads what comes on them, and passes nothing on, either way; thawed, it
    closes the connections of the freeze and forwards new ones again."""

    def __init__(self, port: int):
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.port = self.listener.getsockname()[1]
        self.frozen = threading.Event()
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="proxy", daemon=True).start()

    def _keep(self, *sockets: socket.socket) -> None:
        with self.lock:
            self.sockets += sockets

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if self.frozen.is_set():
                self._keep(client)  # held, never answered
                threading.Thread(target=self._drain, args=(client,), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()  # the cluster is down: refused, as it would be
                continue
            upstream.settimeout(None)
            self._keep(client, upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _drain(self, source: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while source.recv(65536):
                pass

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self.frozen.is_set():
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            for each in (source, sink):
                with contextlib.suppress(OSError):
                    each.shutdown(socket.SHUT_RDWR)

    def freeze(self) -> None:
        self.frozen.set()

    def thaw(self) -> None:
        with self.lock:
            frozen, self.sockets = self.sockets, []
            self.frozen.clear()
        for each in frozen:
            with contextlib.suppress(OSError):
                each.shutdown(socket.SHUT_RDWR)
            each.close()

    def close(self) -> None:
        self.listener.close()
        self.thaw()
