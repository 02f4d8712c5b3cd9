"""A fast local retry receiver for the dispatch benchmark: asyncio, HTTP/1.1 keep-alive, answers
every POST 200 `{}` and counts them; `GET /count` answers the count and `GET /keys` the
`Idempotency-Key` of every POST received, one a line, in their order. With a second argument N,
it answers 422 (a refusal of the item, which trips no breaker) to the first N attempts of each
record (by the body's `failed_integration.pk`). With a third, S, it flaps: up S seconds, then
down S seconds (every attempt answered 500, the app's failure), and so on.

    python bench/receiver.py PORT [FAIL_FIRST [FLAP]]"""

from __future__ import annotations

import asyncio
import json
import sys
import time

COUNT = 0
KEYS: list[bytes] = []
FAIL_FIRST = 0
FLAP = 0.0  # seconds up, then as many down (0: never down)
SEEN: dict[int, int] = {}  # attempts received of each record (with FAIL_FIRST)
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
FAILED = b"HTTP/1.1 422 Unprocessable Content\r\nContent-Length: 2\r\n\r\n{}"
DOWN = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}"


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The head and body of the next request of a keep-alive connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:].strip())
    return head, (await reader.readexactly(length) if length else b"")


def idempotency_key(head: bytes) -> bytes | None:
    for line in head.split(b"\r\n"):
        if line[:16].lower() == b"idempotency-key:":
            return line[16:].strip()
    return None


def answer(body: bytes) -> bytes:
    if FLAP and int(time.monotonic() / FLAP) % 2:
        return DOWN
    if not FAIL_FIRST:
        return OK
    try:
        pk = json.loads(body)["failed_integration"]["pk"]
    except (ValueError, KeyError, TypeError):
        return OK  # not an attempt (wrk's requests)
    SEEN[pk] = SEEN.get(pk, 0) + 1
    return FAILED if SEEN[pk] <= FAIL_FIRST else OK


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global COUNT
    try:
        while True:
            head, body = await read_request(reader)
            if head.startswith(b"GET /"):
                found = str(COUNT).encode() if head.startswith(b"GET /count") else b"\n".join(KEYS)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(found), found)
                )
            else:
                COUNT += 1
                key = idempotency_key(head)
                if key is not None:
                    KEYS.append(key)
                writer.write(answer(body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    FAIL_FIRST = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    FLAP = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    asyncio.run(main(int(sys.argv[1])))
