"""A lean HTTP/1.1 client: the worker's one client, for its POSTs to channel apps and for the
exhaustion events it sends to the webhook.

The worker makes many small POSTs from several threads. On `http.client`, with keep-alive
connections of each thread's own (per origin), an attempt costs less CPU than on a
general-purpose client whose connection pool the threads share: bench/dispatch --ab measures it
against httpx.Client and urllib3's PoolManager (results in bench/DISPATCH.md).
What it does: http and https (certificates verified) to the addresses `endpoints` allows, a
timeout on connecting and on every read and write, one retry of a request whose reused
connection the server had closed while idle (an attempt's or an event's Idempotency-Key makes a
repeat harmless), no redirects, and answers read up to a limit (a longer answer's rest is
dropped with its connection).
"""

from __future__ import annotations

import http.client
import ssl
import threading
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
        while True:
            connection = connections.get(key) or self._open(key, connections)
            try:
                connection.request("POST", target, body=body, headers=headers)
                response = connection.getresponse()
                text = response.read(READ_LIMIT)
                if response.will_close or not response.isclosed():
                    self._drop(key, connections)
                return Answer(
                    response.status,
                    text.decode("utf-8", "replace"),
                    response.getheader("Retry-After"),
                )
            except TimeoutError as exc:
                self._drop(key, connections)
                raise PostTimeout(str(exc) or "timed out") from exc
            except STALE as exc:
                self._drop(key, connections)
                if reused:
                    reused = False
                    continue
                raise PostFailed(f"{type(exc).__name__}: {exc}") from exc
            except (OSError, http.client.HTTPException) as exc:
                self._drop(key, connections)
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
