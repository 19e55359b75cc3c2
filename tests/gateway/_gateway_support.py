"""Helpers the gateway tests share (not fixtures)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx

from pykaf import Consumer, ConsumerRecord, TopicPartition
from pykaf.broker import BlockingCluster
from pykaf.gateway import GatewaySettings, create_app

__all__ = ["FAST", "ChunkedRequest", "gateway_http", "read_all", "uvicorn_in_loop", "wait_for"]

# Fast for tests: small batches leave at once.
FAST: dict[str, Any] = {"linger": 0.001, "request_timeout": 5.0}


def read_all(kafka: BlockingCluster, topic: str, count: int) -> list[tuple[int, ConsumerRecord]]:
    """(partition, record) pairs, ``count`` of them, read from the start (in offset
    order within a partition)."""
    records: list[ConsumerRecord] = []
    with Consumer(kafka.bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition(topic, p) for p in range(3)])
        deadline = time.monotonic() + 15
        while len(records) < count and time.monotonic() < deadline:
            records.extend(consumer.poll(0.5))
        records.extend(consumer.poll(0.2))  # one more look: nothing beyond ``count``
    assert len(records) == count, records
    return [(r.partition, r) for r in records]


class ChunkedRequest:
    """A POST to ``path`` driven straight through the ASGI app: one chunk of ``chunks``
    per ``receive``, counted in ``received``; the messages the app sends kept."""

    def __init__(self, app: Any, path: str, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.received = 0
        self.sent: list[dict[str, Any]] = []
        scope = {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""}
        self.handling = asyncio.ensure_future(app(scope, self._receive, self._send))

    async def _receive(self) -> dict[str, Any]:
        self.received += 1
        more = self.received < len(self.chunks)
        return {"type": "http.request", "body": self.chunks[self.received - 1], "more_body": more}

    async def _send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def stays(self, expected: int) -> None:
        """The reader could go on if nothing held it: give it every chance."""
        for _ in range(50):
            await asyncio.sleep(0)
        assert self.received == expected

    def body(self) -> str:
        return b"".join(
            m.get("body", b"") for m in self.sent if m["type"] == "http.response.body"
        ).decode()


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def gateway_http(
    settings: GatewaySettings, *, timeout: float = 10.0
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app in-process behind httpx, started; on the way out it must close
    with every record reported (within ``timeout``, also httpx's timeout)."""
    gateway = create_app(settings)
    await gateway.start()
    try:
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", timeout=timeout
        ) as client:
            yield client
    finally:
        assert await gateway.close(timeout) == 0


@asynccontextmanager
async def uvicorn_in_loop(app: Any, **config: Any) -> AsyncIterator[int]:
    """``app`` on a uvicorn server in this loop (``config``: ``uvicorn.Config``'s
    keywords), on a free port, which it yields; stopped on the way out."""
    import uvicorn

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, **config))
    task = asyncio.ensure_future(server.serve(sockets=[listener]))
    try:
        await wait_for(lambda: server.started or task.done(), "uvicorn to start")
        assert server.started
        yield listener.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        listener.close()
