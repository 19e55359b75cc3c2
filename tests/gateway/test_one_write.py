"""The gateway's httptools protocol on a real uvicorn server: one write per whole answer
(``_one_write``: the head of an answer framed by content-length leaves with its body; a
streaming answer's head, a HEAD answer's, ``100 Continue`` and a failed app's head are
never held), the keep-alive deadline of idle connections on the loop's one clock, and a
flood of invalid requests said once in the log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("httptools")

from _gateway_support import uvicorn_in_loop  # noqa: E402

from pykaf.gateway import uvicorn_http_protocol  # noqa: E402
from pykaf.gateway._one_write import OneWriteTransport  # noqa: E402

Writes = list[bytes]


class _App:
    """Answers by path; ``/stream`` sends its head, then waits for ``release`` before
    its one chunk."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        message = await receive()
        body = message.get("body", b"")
        if path == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await self.release.wait()
            await send({"type": "http.response.body", "body": b"chunk", "more_body": False})
            return
        if path == "/fail":
            headers = [(b"content-length", b"10")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            raise RuntimeError("the app fails mid-answer (expected by the test)")
        answer = b"echo:" + body
        headers = [(b"content-length", b"%d" % len(answer))]
        await send({"type": "http.response.start", "status": 202, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


@pytest_asyncio.fixture
async def server(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[int, _App, Writes]]:
    """The app on uvicorn with the gateway's protocol, in this loop; every write the
    connections' transports make is recorded. The keep-alive timeout is uvicorn's
    default, or the fixture's parameter (indirect parametrisation)."""
    writes: Writes = []
    real_write: Callable[..., None] = asyncio.selector_events._SelectorSocketTransport.write  # type: ignore[attr-defined]

    def recording(transport: Any, data: bytes) -> None:
        if isinstance(transport.get_protocol(), served_by):  # the server's, not the client's
            writes.append(bytes(data))
        real_write(transport, data)

    monkeypatch.setattr(asyncio.selector_events._SelectorSocketTransport, "write", recording)  # type: ignore[attr-defined]
    app = _App()
    served_by = uvicorn_http_protocol(parser="httptools")
    async with uvicorn_in_loop(
        app,
        lifespan="off",
        log_level="critical",
        access_log=False,
        http=served_by,
        timeout_keep_alive=getattr(request, "param", 5),
    ) as port:
        try:
            yield port, app, writes
        finally:
            app.release.set()


async def _read_answer(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await asyncio.wait_for(reader.readexactly(length), 10)


async def _ask(
    port: int, request: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Connect, send ``request`` and read the first head that comes back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    return reader, writer, head


async def test_a_whole_answer_leaves_in_one_write(server: tuple[int, _App, Writes]) -> None:
    port, _, writes = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\n\r\nabc")
    answer = await _read_answer(reader)
    assert answer.startswith(b"HTTP/1.1 202 ")
    assert answer.endswith(b"\r\n\r\necho:abc")
    assert writes == [answer]  # head and body together: one send, not two
    writer.close()


async def test_pipelined_requests_are_answered_whole_and_in_order(
    server: tuple[int, _App, Writes],
) -> None:
    port, _, writes = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /a HTTP/1.1\r\nhost: t\r\ncontent-length: 1\r\n\r\n1"
        b"POST /b HTTP/1.1\r\nhost: t\r\ncontent-length: 1\r\n\r\n2"
    )
    first, second = await _read_answer(reader), await _read_answer(reader)
    assert first.endswith(b"echo:1")
    assert second.endswith(b"echo:2")
    assert writes == [first, second]
    writer.close()


async def test_a_streaming_answer_s_head_is_not_held(server: tuple[int, _App, Writes]) -> None:
    port, app, _ = server
    # The head arrives while the app still holds its first chunk back.
    reader, writer, head = await _ask(port, b"GET /stream HTTP/1.1\r\nhost: t\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    app.release.set()
    rest = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 10)
    assert rest == b"5\r\nchunk\r\n0\r\n\r\n"
    writer.close()


async def test_a_head_answer_arrives_and_the_connection_stays_usable(
    server: tuple[int, _App, Writes],
) -> None:
    port, _, _ = server
    reader, writer, head = await _ask(port, b"HEAD /x HTTP/1.1\r\nhost: t\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 202 ")
    assert b"content-length: 5" in head
    await _echo(reader, writer, b"z")
    writer.close()


async def test_100_continue_goes_before_the_body_is_sent(
    server: tuple[int, _App, Writes],
) -> None:
    port, _, writes = server
    reader, writer, interim = await _ask(
        port, b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\nexpect: 100-continue\r\n\r\n"
    )
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"ok")
    answer = await _read_answer(reader)
    assert answer.endswith(b"echo:ok")
    assert writes == [interim, answer]
    writer.close()


async def test_an_app_failing_mid_answer_still_sends_its_head_then_closes(
    server: tuple[int, _App, Writes],
) -> None:
    port, _, _ = server
    reader, writer, head = await _ask(port, b"GET /fail HTTP/1.1\r\nhost: t\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, no body
    writer.close()


class _FakeTransport:
    def __init__(self) -> None:
        self.writes: Writes = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


class _Cycle:
    def __init__(self, method: str = "POST", chunked: bool | None = False) -> None:
        self.scope = {"method": method}
        self.response_started = False
        self.chunked_encoding = chunked


def test_a_held_head_leaves_with_close_and_the_rest_is_passed_on() -> None:
    real = _FakeTransport()
    cycle = _Cycle()
    one = OneWriteTransport(real, cycle)  # type: ignore[arg-type]
    cycle.response_started = True
    one.write(b"HEAD\r\n\r\n")
    assert real.writes == []
    assert one.get_extra_info("peername") == "info:peername"
    one.close()
    assert real.writes == [b"HEAD\r\n\r\n"]
    assert real.closed
    assert one.is_closing()


# The server's keep-alive timeout: 0.3 s.
_SHORT_KEEP_ALIVE = pytest.mark.parametrize("server", [0.3], indirect=True)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, one: bytes) -> None:
    writer.write(b"POST /k HTTP/1.1\r\nhost: t\r\ncontent-length: 1\r\n\r\n" + one)
    assert (await _read_answer(reader)).endswith(b"echo:" + one)


@_SHORT_KEEP_ALIVE
async def test_keep_alive_closes_idle_connections_only(
    server: tuple[int, _App, Writes],
) -> None:
    port, app, _ = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    await _echo(reader, writer, b"0")
    # A request longer than the timeout (twice it) is not cut: the connection is busy.
    writer.write(b"GET /stream HTTP/1.1\r\nhost: t\r\n\r\n")
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    await asyncio.sleep(0.6)
    app.release.set()
    rest = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 10)
    assert rest == b"5\r\nchunk\r\n0\r\n\r\n"
    # In use: a request every 0.1 s for 0.9 s, three times the timeout, keeps it open.
    for i in range(1, 10):
        await asyncio.sleep(0.1)
        await _echo(reader, writer, b"%d" % i)
    # Idle: closed by the server within 1.25 times the timeout (plus scheduling).
    idle_from = loop.time()
    assert await asyncio.wait_for(reader.read(), 10) == b""
    assert 0.3 <= loop.time() - idle_from < 2.0
    writer.close()


async def test_a_flood_of_invalid_requests_is_one_warning(
    server: tuple[int, _App, Writes], caplog: pytest.LogCaptureFixture
) -> None:
    # uvicorn said "Invalid HTTP request received." at WARNING once per request: any
    # client could write the log's lines (and block a server whose stderr is not read).
    port, _, _ = server
    with caplog.at_level(logging.WARNING, logger="uvicorn.error"):
        for _ in range(20):
            reader, writer, head = await _ask(port, b"\x00garbage\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400 ")
            writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await _echo(reader, writer, b"k")  # and the server goes on
        writer.close()
    warnings = [r.getMessage() for r in caplog.records if r.name == "uvicorn.error"]
    assert len(warnings) == 1, warnings
    assert "Invalid HTTP request received." in warnings[0]
