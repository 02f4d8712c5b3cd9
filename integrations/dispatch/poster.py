"""A lean HTTP/1.1 client: the worker's one client, for its POSTs to channel apps and for the
exhaustion events it sends to the webhook.

The worker makes many small POSTs from several threads. On `http.client`, with keep-alive
connections of each thread's own (per origin), an attempt costs less CPU than on a
general-purpose client whose connection pool the threads share: bench/dispatch --ab measures it
against httpx.Client and urllib3's PoolManager (results in bench/DISPATCH.md).
What it does: http and https (certificates verified) to the addresses `endpoints` allows, one
wall-clock deadline for the whole request (connecting, sending, the answer's status, headers
and body: a channel app that drips its answer a byte at a time is cut off at the timeout, not
held for as long as it likes), one retry of a request whose reused
connection the server had closed while idle (an attempt's or an event's Idempotency-Key makes a
repeat harmless), no redirects, and answers read up to a limit (a longer answer's rest is
dropped with its connection).
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from integrations.dispatch.endpoints import checked_connection, url_problem

READ_LIMIT = 64 * 1024  # an answer's body is kept (for the error text) up to this size


class PostFailed(Exception):
    """The request got no HTTP answer."""


class PostTimeout(PostFailed):
    """Connecting, sending or waiting for the answer took longer than the timeout."""


class PostRefused(PostFailed):
    """No connection: refused, unreachable, or a name that does not resolve."""


@dataclass(frozen=True)
class Answer:
    status: int
    text: str
    retry_after: str | None = None  # the Retry-After header, when the app sent one


# A reused connection that fails this way, before any answer, had been closed by the server.
STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class Deadlines:
    """One thread that cuts the connections whose request ran past its deadline (shuts their
    socket down, so that the blocked read or write returns at once)."""

    def __init__(self):
        self.condition = threading.Condition()
        self.pending: list[tuple[float, int, http.client.HTTPConnection]] = []
        self.cut: set[int] = set()
        self.numbers = itertools.count()
        threading.Thread(target=self._watch, daemon=True, name="poster-deadlines").start()

    def watch(self, connection: http.client.HTTPConnection, deadline: float) -> int:
        number = next(self.numbers)
        with self.condition:
            heapq.heappush(self.pending, (deadline, number, connection))
            self.condition.notify()
        return number

    def release(self, number: int) -> bool:
        """Stops watching; answers whether the deadline had cut the connection."""
        with self.condition:
            self.pending = [item for item in self.pending if item[1] != number]
            heapq.heapify(self.pending)
            if number in self.cut:
                self.cut.discard(number)
                return True
            return False

    def _watch(self) -> None:
        with self.condition:
            while True:
                if not self.pending:
                    self.condition.wait()
                    continue
                deadline, number, connection = self.pending[0]
                left = deadline - time.monotonic()
                if left > 0:
                    self.condition.wait(left)
                    continue
                heapq.heappop(self.pending)
                self.cut.add(number)
                sock = connection.sock
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)


_deadlines: Deadlines | None = None
_deadlines_lock = threading.Lock()


def deadlines() -> Deadlines:
    global _deadlines
    with _deadlines_lock:
        if _deadlines is None:
            _deadlines = Deadlines()
        return _deadlines


class Poster:
    def __init__(self, *, timeout: float):
        self.timeout = timeout
        self.local = threading.local()
        self.lock = threading.Lock()
        self.opened: list[http.client.HTTPConnection] = []
        self.tls = ssl.create_default_context()

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        problem = url_problem(url)
        if problem:
            raise PostRefused(problem)
        parts = urlsplit(url)
        port = parts.port
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        key = (parts.scheme, parts.hostname, port)
        connections = self._connections()
        reused = key in connections
        deadline = time.monotonic() + self.timeout
        while True:
            connection = connections.get(key) or self._open(key, connections)
            watched = deadlines().watch(connection, deadline)
            try:
                connection.request("POST", target, body=body, headers=headers)
                response = connection.getresponse()
                text = response.read(READ_LIMIT)
                if deadlines().release(watched):
                    raise PostTimeout(f"no whole answer within {self.timeout:g} s")
                if response.will_close or not response.isclosed():
                    self._drop(key, connections)
                return Answer(
                    response.status,
                    text.decode("utf-8", "replace"),
                    response.getheader("Retry-After"),
                )
            except PostTimeout:
                self._drop(key, connections)
                raise
            except TimeoutError as exc:
                deadlines().release(watched)
                self._drop(key, connections)
                raise PostTimeout(str(exc) or "timed out") from exc
            except (OSError, http.client.HTTPException) as exc:
                cut = deadlines().release(watched)
                self._drop(key, connections)
                if cut:
                    raise PostTimeout(f"no whole answer within {self.timeout:g} s") from exc
                if isinstance(exc, STALE) and reused and time.monotonic() < deadline:
                    reused = False
                    continue
                raise PostFailed(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        with self.lock:
            for connection in self.opened:
                connection.close()
            self.opened.clear()

    def _connections(self) -> dict:
        connections = getattr(self.local, "connections", None)
        if connections is None:
            connections = self.local.connections = {}
        return connections

    def _open(self, key: tuple, connections: dict) -> http.client.HTTPConnection:
        scheme, host, port = key
        if scheme == "https":
            connection = http.client.HTTPSConnection(
                host, port, timeout=self.timeout, context=self.tls
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=self.timeout)
        # Resolved, checked (endpoints.py) and connected to the address checked.
        connection._create_connection = checked_connection
        try:
            connection.connect()
        except TimeoutError as exc:
            connection.close()
            raise PostTimeout(f"connecting: {exc or 'timed out'}") from exc
        except OSError as exc:
            connection.close()
            raise PostRefused(str(exc)) from exc
        connections[key] = connection
        with self.lock:
            self.opened.append(connection)
        return connection

    def _drop(self, key: tuple, connections: dict) -> None:
        connection = connections.pop(key, None)
        if connection is not None:
            connection.close()
            with self.lock:
                if connection in self.opened:
                    self.opened.remove(connection)
