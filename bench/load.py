"""The HTTP client side: the same httpx client drives the product and the baselines.

`submit_many` keeps a fixed number of submissions in flight (closed loop, for throughput);
`offered_rate` sends at a fixed rate whatever the answers do (open loop, for latency: each
request's time counts from when it was due, so a stalled server cannot hide its queue)."""

from __future__ import annotations

import asyncio
import collections
import json
import time
import uuid
from dataclasses import dataclass, field

import httpx

SUBMIT = "/api/v1/tasks/summarize/"


def content() -> str:
    """A short text, unique per task so the stand-in's log can tell the calls apart."""
    return f"Benchmark text {uuid.uuid4().hex}. The queue keeps every task until a worker is done with it."


class Connection:
    """One keep-alive HTTP/1.1 connection with the least client work possible (the client shares
    the 2 cores with what it measures: httpx costs ≈3.5 ms of CPU per submission here, this ≈0.3).
    Handles only what both servers send here: a Content-Length body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, base_url: str) -> Connection:
        url = httpx.URL(base_url)
        reader, writer = await asyncio.open_connection(url.host, url.port)
        return cls(reader, writer, f"{url.host}:{url.port}")

    async def post_json(self, path: str, body: bytes) -> int:
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
        self.writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        header = await self.reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        length = next(int(line[15:]) for line in header.lower().split(b"\r\n") if line.startswith(b"content-length:"))
        await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def _body(text: str) -> bytes:
    return json.dumps({"content": text}).encode()


def _client(base_url: str, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60)


async def submit_many(base_url: str, count: int, in_flight: int = 32) -> tuple[float, int]:
    """Submit `count` tasks with `in_flight` requests at a time; (seconds taken, refused count)."""
    refused = 0
    left = count
    conns = [await Connection.open(base_url) for _ in range(in_flight)]

    async def lane(conn: Connection) -> None:
        nonlocal refused, left
        while left > 0:
            left -= 1
            if await conn.post_json(SUBMIT, _body(content())) != 202:
                refused += 1

    started = time.perf_counter()
    await asyncio.gather(*(lane(c) for c in conns))
    seconds = time.perf_counter() - started
    for conn in conns:
        await conn.close()
    return seconds, refused


async def _post_pooled(idle: collections.deque[Connection], base_url: str, body: bytes) -> int:
    """POST on a pooled connection (a new one if all are busy); when a reused connection turns out
    closed, once more on a fresh one, as HTTP clients do. 0 when the request failed twice."""
    conn = idle.popleft() if idle else await Connection.open(base_url)
    for attempt in range(2):
        try:
            status = await conn.post_json(SUBMIT, body)
            idle.append(conn)
            return status
        except (OSError, asyncio.IncompleteReadError):
            if attempt == 0:
                conn = await Connection.open(base_url)
    return 0


@dataclass
class RateResult:
    latencies_ms: list[float] = field(default_factory=list)  # from the moment each request was due
    errors: int = 0
    sent: int = 0
    seconds: float = 0.0
    late_ms: list[float] = field(default_factory=list)  # how late the generator sent each one
    statuses: dict[int, int] = field(default_factory=dict)  # refused ones by status (0: no answer)


async def offered_rate(base_url: str, rate: float, seconds: float, connections: int = 64) -> RateResult:
    """Send `rate` submissions per second for `seconds`, keep-alive, whatever the answers do."""
    result = RateResult()

    # FIFO, so every connection is reused every few ms: uvicorn closes a keep-alive connection
    # idle for 5 s, and a LIFO pool would keep its bottom ones idle that long.
    idle = collections.deque([await Connection.open(base_url) for _ in range(connections)])
    # Warm-up, not measured: one request on every connection at once, so the server has set up
    # its side of them and grown its own pools (Redis connections) to the concurrency it will
    # see. Cold, that growth stalled the first measured second (about 350 ms on a slow core).
    await asyncio.gather(*(conn.post_json(SUBMIT, _body(content())) for conn in idle))

    async def one(due: float) -> None:
        result.late_ms.append((time.perf_counter() - due) * 1000)
        status = await _post_pooled(idle, base_url, _body(content()))
        if status == 202:
            result.latencies_ms.append((time.perf_counter() - due) * 1000)
        else:
            result.errors += 1
            result.statuses[status] = result.statuses.get(status, 0) + 1

    started = time.perf_counter()
    pending = []
    for i in range(int(rate * seconds)):
        due = started + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        pending.append(asyncio.create_task(one(due)))
    await asyncio.gather(*pending)
    result.sent, result.seconds = len(pending), time.perf_counter() - started
    for conn in idle:
        await conn.close()
    return result


async def get_ms(base_url: str, path: str, requests: int) -> list[float]:
    """Milliseconds of `requests` sequential GETs of `path` on one keep-alive connection, after 10."""
    samples = []
    async with _client(base_url, 1) as client:
        for i in range(requests + 10):
            started = time.perf_counter()
            response = await client.get(path)
            if response.status_code != 200:
                raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:200]}")
            if i >= 10:
                samples.append((time.perf_counter() - started) * 1000)
    return samples


async def sse_snapshot_ms(base_url: str, path: str, requests: int) -> list[float]:
    """Milliseconds from opening the live stream to its first (`snapshot`) event, `requests` times."""
    samples = []
    async with _client(base_url, 1) as client:
        for i in range(requests + 5):
            started = time.perf_counter()
            async with client.stream("GET", path) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        break
            if i >= 5:
                samples.append((time.perf_counter() - started) * 1000)
    return samples


async def one_submit(conn: Connection, text: str) -> float:
    """Submit one task; the wall-clock time (time.time()) at which the request was sent."""
    at = time.time()
    if await conn.post_json(SUBMIT, _body(text)) != 202:
        raise RuntimeError("submit refused")
    return at
