"""A channel app stand-in for the engine's tests: a real HTTP server on 127.0.0.1 that records
what it receives and answers as told."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = 0.0  # time.monotonic() on arrival

    @property
    def json(self) -> dict:
        return json.loads(self.body)


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # the connections of several workers at once (5 by default)


@dataclass
class Receiver:
    status: int = 200
    delay: float = 0.0
    body: bytes = b"{}"  # of every answer
    headers: dict[str, str] = field(default_factory=dict)  # more headers of every answer
    # Answers to give first, one a request (status, headers), before `status` and `headers`.
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    most_in_flight: int = 0  # the most requests it was answering at once
    # Takes at most this many requests in any second; answers the others 429, Retry-After: 1.
    rate_limit: int | None = None
    taken: list[float] = field(default_factory=list)  # when it took each (with a rate limit)
    # Answers 422 to the first this many requests of each record (then `status`): the item's
    # failure, which does not open the channel's circuit.
    fail_first: int = 0
    seen: Counter = field(default_factory=Counter)  # requests of each record (with fail_first)
    throttled: list[float] = field(default_factory=list)  # when it answered 429 for that

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    arrived = Received(self.path, dict(self.headers), body, time.monotonic())
                    receiver.received.append(arrived)
                    receiver.in_flight += 1
                    receiver.most_in_flight = max(receiver.most_in_flight, receiver.in_flight)
                    status, headers = (
                        receiver.script.pop(0)
                        if receiver.script
                        else (receiver.status, receiver.headers)
                    )
                    if receiver.fail_first:
                        pk = json.loads(body)["failed_integration"]["pk"]
                        receiver.seen[pk] += 1
                        if receiver.seen[pk] <= receiver.fail_first:
                            status, headers = 422, {}
                    if receiver.rate_limit is not None:
                        recent = [t for t in receiver.taken if t > arrived.at - 1.0]
                        if len(recent) >= receiver.rate_limit:
                            status, headers = 429, {"Retry-After": "1"}
                            receiver.throttled.append(arrived.at)
                        else:
                            receiver.taken.append(arrived.at)
                try:
                    if receiver.delay:
                        time.sleep(receiver.delay)
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(receiver.body)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(receiver.body)
                finally:
                    with receiver.lock:
                        receiver.in_flight -= 1

            def log_message(self, *args):
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/retry"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def per_record(self) -> Counter:
        return Counter(item.json["failed_integration"]["pk"] for item in self.received)


def closed_port_url() -> str:
    """A URL nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/retry"
