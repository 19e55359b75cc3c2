"""The gateway's httptools protocol reads a request body ahead of the app up to 1 MiB
before it stops reading the socket (uvicorn's own mark is 64 KiB: a body of 100 KiB
paused and resumed the reading once per request, 8-10% of ``/batch/async``'s CPU), and
still stops past it: what a connection holds unread stays bounded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("httptools")
flow_control = pytest.importorskip("uvicorn.protocols.http.flow_control")

from _gateway_support import uvicorn_in_loop, wait_for  # noqa: E402

from pykaf.gateway import LimitSettings, uvicorn_http_protocol  # noqa: E402

_MIB = 1 << 20


class _Seen:
    """What the server's protocol read of bodies, and how often it paused reading."""

    def __init__(self) -> None:
        self.read = 0
        self.pauses = 0
        self.read_at_first_pause: int | None = None
        self.transport: Any = None  # the server side of the connection


class _App:
    """Reads nothing until ``release`` is set, then the whole body; answers its size."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await self.release.wait()
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        answer = b"%d" % size
        headers = [(b"content-length", b"%d" % len(answer))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


@pytest_asyncio.fixture
async def served(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[int, _App, _Seen]]:
    seen, app = _Seen(), _App()
    pause = flow_control.FlowControl.pause_reading

    def counted_pause(flow: Any) -> None:
        seen.pauses += 1
        if seen.read_at_first_pause is None:
            seen.read_at_first_pause = seen.read
        pause(flow)

    monkeypatch.setattr(flow_control.FlowControl, "pause_reading", counted_pause)
    base: Any = uvicorn_http_protocol(LimitSettings(max_body_bytes=64 * _MIB), parser="httptools")

    class Counting(base):  # type: ignore[misc]
        def on_body(self, body: bytes) -> None:
            seen.read += len(body)
            seen.transport = self.transport
            super().on_body(body)

    async with uvicorn_in_loop(app, lifespan="off", log_level="critical", http=Counting) as port:
        try:
            yield port, app, seen
        finally:
            app.release.set()


async def _post(port: int, size: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /b HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n\r\n" % size)
    writer.write(b"x" * size)
    return reader, writer


async def _size_answered(reader: asyncio.StreamReader) -> int:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200 "), head
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return int(await asyncio.wait_for(reader.readexactly(length), 10))


async def test_a_body_under_a_mib_is_read_whole_before_the_app_asks(
    served: tuple[int, _App, _Seen],
) -> None:
    port, app, seen = served
    size = 600 * 1024
    reader, writer = await _post(port, size)
    # With uvicorn's mark the reading stopped past 64 KiB until the app asked.
    await wait_for(lambda: seen.read == size, f"the server read all {size} bytes")
    assert seen.pauses == 0
    app.release.set()
    assert await _size_answered(reader) == size
    writer.close()


async def test_past_a_mib_the_reading_still_stops_until_the_app_takes_it(
    served: tuple[int, _App, _Seen],
) -> None:
    port, app, seen = served
    size = 8 * _MIB
    reader, writer = await _post(port, size)
    await wait_for(lambda: seen.pauses > 0, "the reading paused")
    # The read that crossed the mark is the most read beyond it (asyncio reads up to
    # 256 KiB at a time).
    assert seen.read_at_first_pause is not None
    assert _MIB < seen.read_at_first_pause <= _MIB + 256 * 1024
    assert not seen.transport.is_reading()
    assert seen.read == seen.read_at_first_pause
    app.release.set()
    assert await _size_answered(reader) == size
    writer.close()
