"""The worker's HTTP client: keep-alive per thread, a stale connection retried once, timeouts,
refusals and long answers."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from integrations.dispatch.poster import READ_LIMIT, Poster, PostFailed, PostRefused, PostTimeout
from integrations.tests.receiver import closed_port_url


class RawServer:
    """An HTTP/1.1 server on a socket of its own: counts connections and requests, keeps
    connections open unless told to close them after each answer."""

    def __init__(self, *, close_after_answer=False, body=b"{}", status=200, delay=0.0):
        self.close_after_answer = close_after_answer
        self.body, self.status, self.delay = body, status, delay
        self.connections = 0
        self.requests: list[bytes] = []
        self.open: list[socket.socket] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        threading.Thread(target=self.accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/retry?x=1"

    def accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.open.append(client)
            threading.Thread(target=self.serve, args=(client,), daemon=True).start()

    def serve(self, client: socket.socket):
        # OSError: the client went away (a long answer's connection is dropped unread).
        with contextlib.suppress(OSError):
            self.answer(client)

    def answer(self, client: socket.socket):
        buffer = b""
        with client:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                while len(buffer) < length:
                    buffer += client.recv(65536)
                self.requests.append(head.split(b"\r\n")[0] + b" " + buffer[:length])
                buffer = buffer[length:]
                time.sleep(self.delay)
                client.sendall(
                    b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s"
                    % (self.status, len(self.body), self.body)
                )
                if self.close_after_answer:
                    return

    def drop_idle_connections(self):
        for client in self.open:
            client.shutdown(socket.SHUT_RDWR)
        self.open.clear()

    def close(self):
        self.sock.close()


@pytest.fixture
def poster():
    poster = Poster(timeout=2)
    yield poster
    poster.close()


def test_posts_of_one_thread_share_a_kept_alive_connection(poster):
    server = RawServer()
    answers = [poster.post(server.url, b'{"n": %d}' % n, {"X": "1"}) for n in range(5)]
    assert [(a.status, a.text) for a in answers] == [(200, "{}")] * 5
    assert server.connections == 1
    assert server.requests[0] == b'POST /retry?x=1 HTTP/1.1 {"n": 0}'
    server.close()


def test_threads_have_connections_of_their_own(poster):
    server = RawServer()
    threads = [threading.Thread(target=poster.post, args=(server.url, b"{}", {})) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert server.connections == 3 and len(server.requests) == 3
    server.close()


def test_a_connection_the_server_closed_while_idle_is_replaced_and_the_post_made_once(poster):
    server = RawServer()
    poster.post(server.url, b"1", {})
    server.drop_idle_connections()
    time.sleep(0.05)
    answer = poster.post(server.url, b"2", {})
    assert answer.status == 200
    assert [r[-1:] for r in server.requests] == [b"1", b"2"]
    assert server.connections == 2
    server.close()


def test_a_server_that_closes_after_each_answer_gets_every_post(poster):
    server = RawServer(close_after_answer=True, status=503, body=b"busy")
    answers = [poster.post(server.url, b"x", {}) for _ in range(3)]
    assert [(a.status, a.text) for a in answers] == [(503, "busy")] * 3
    assert len(server.requests) == 3
    server.close()


def test_a_slow_answer_times_out(poster):
    server = RawServer(delay=1.0)
    slow = Poster(timeout=0.2)
    with pytest.raises(PostTimeout):
        slow.post(server.url, b"x", {})
    slow.close()
    server.close()


class DrippingServer(RawServer):
    """Answers the status and headers at once, then its body a byte every `every` seconds
    (or its headers so, with `headers_too`): each read returns within any per-read timeout."""

    def __init__(self, *, every: float, headers_too: bool = False):
        self.every, self.headers_too = every, headers_too
        super().__init__()

    def answer(self, client: socket.socket):
        with client:
            client.recv(65536)
            head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
            if not self.headers_too:
                client.sendall(head)
                head = b""
            for byte in [bytes([b]) for b in head] + [b"x"] * 100:
                client.sendall(byte)
                time.sleep(self.every)


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers"])
def test_an_answer_dripped_a_byte_at_a_time_is_cut_at_the_deadline(headers_too):
    server = DrippingServer(every=0.2, headers_too=headers_too)
    poster = Poster(timeout=1.0)
    started = time.monotonic()
    with pytest.raises(PostTimeout, match="within 1 s"):
        poster.post(server.url, b"x", {})
    took = time.monotonic() - started
    poster.close()
    server.close()
    assert 0.9 <= took < 1.6, took


def test_a_refused_connection_and_a_bad_url_are_refusals(poster):
    with pytest.raises(PostRefused):
        poster.post(closed_port_url(), b"x", {})
    for url in ("ftp://example.test/", "http:///nohost", "http://127.0.0.1:99999/"):
        with pytest.raises(PostRefused):
            poster.post(url, b"x", {})
    assert issubclass(PostRefused, PostFailed) and issubclass(PostTimeout, PostFailed)


def test_a_long_answer_is_cut_at_the_limit_and_its_connection_dropped(poster):
    server = RawServer(body=b"e" * (READ_LIMIT * 3), status=500)
    answer = poster.post(server.url, b"x", {})
    assert answer.status == 500 and answer.text == "e" * READ_LIMIT
    assert poster.post(server.url, b"y", {}).status == 500
    assert server.connections == 2
    server.close()
