"""The channel apps of bench/outage: one asyncio process, one listening port per channel, each
app behaving as its channel's does in the scenario, and a control port that starts the clock and
reports what every app saw.

    python bench/outage_receiver.py CONTROL_PORT NAME:PORT:MODE ...

MODE is one of
* `ok`: answers every POST 200 at once;
* `down:SECONDS`: refuses connections (nothing listens on its port) for SECONDS after the clock
  starts, then answers as `ok`;
* `limited:RATE:LATENCY`: answers 200 after LATENCY seconds, or 429 with `Retry-After: 1` at
  once when RATE requests were already accepted in the last second (a sliding window).

The control port answers `POST /start` (the clock starts: the scenario's second 0), `GET /stats`
(JSON: per app, the requests and answers by status, the records that got a 200, how many got more
than one, the first and last 200 and the first 429, in seconds since the start) and `GET /ready`.
A record is named by the `pk` of the body's `failed_integration` (both peers send that body).
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import time

from receiver import read_request  # bench/receiver.py, beside this file

START: float | None = None


def since_start() -> float:
    return time.monotonic() - START if START is not None else 0.0


class App:
    def __init__(self, name: str, port: int, mode: str):
        self.name, self.port = name, port
        kind, *params = mode.split(":")
        self.kind = kind
        self.down_seconds = float(params[0]) if kind == "down" else 0.0
        self.rate = int(params[0]) if kind == "limited" else 0
        self.latency = float(params[1]) if kind == "limited" else 0.0
        self.accepted: collections.deque[float] = collections.deque()
        self.statuses: collections.Counter[int] = collections.Counter()
        self.succeeded: collections.Counter[int] = collections.Counter()
        self.first_success = self.last_success = self.first_throttled = None
        self.server: asyncio.AbstractServer | None = None

    async def listen(self) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", self.port, backlog=4096)

    async def open_when_up(self) -> None:
        """`down`: starts listening once the outage is over."""
        await asyncio.sleep(self.down_seconds)
        await self.listen()

    async def answer(self, body: bytes) -> int:
        now = time.monotonic()
        if self.kind == "limited":
            while self.accepted and self.accepted[0] <= now - 1.0:
                self.accepted.popleft()
            if len(self.accepted) >= self.rate:
                if self.first_throttled is None:
                    self.first_throttled = since_start()
                return 429
            self.accepted.append(now)
            await asyncio.sleep(self.latency)
        try:
            record = json.loads(body)["failed_integration"]["pk"]
        except (ValueError, KeyError, TypeError):
            return 400
        self.succeeded[record] += 1
        self.last_success = since_start()
        if self.first_success is None:
            self.first_success = self.last_success
        return 200

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                _, body = await read_request(reader)
                status = await self.answer(body)
                self.statuses[status] += 1
                extra = b"Retry-After: 1\r\n" if status == 429 else b""
                writer.write(
                    b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n%s"
                    b"Content-Length: 2\r\n\r\n{}" % (status, extra)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    def stats(self) -> dict:
        return {
            "requests": sum(self.statuses.values()),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "records_succeeded": len(self.succeeded),
            "records_succeeded_twice": sum(1 for n in self.succeeded.values() if n > 1),
            "first_success": self.first_success,
            "last_success": self.last_success,
            "first_throttled": self.first_throttled,
        }


async def control(apps: list[App], reader, writer) -> None:
    global START
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        if head.startswith(b"POST /start"):
            START = time.monotonic()
            for app in apps:
                if app.kind == "down":
                    asyncio.get_running_loop().create_task(app.open_when_up())
            body = b"{}"
        elif head.startswith(b"GET /stats"):
            body = json.dumps(
                {"elapsed": since_start(), "apps": {a.name: a.stats() for a in apps}}
            ).encode()
        else:
            body = b"{}"
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
    finally:
        writer.close()


async def main(control_port: int, specs: list[str]) -> None:
    apps = []
    for spec in specs:
        name, port, mode = spec.split(":", 2)
        apps.append(App(name, int(port), mode))
    for app in apps:
        if app.kind != "down":
            await app.listen()
    server = await asyncio.start_server(lambda r, w: control(apps, r, w), "127.0.0.1", control_port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2:]))
