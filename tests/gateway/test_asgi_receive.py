"""``Request``'s body reading with the slow-client limit: a receive that completes at
once arms no timer; one that waits goes on under the limit, is answered 408 past it,
and is cancelled cleanly with its request."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pykaf.gateway._asgi import HttpError, Request

SCOPE: dict[str, Any] = {
    "type": "http",
    "method": "POST",
    "path": "/async/t",
    "headers": [(b"content-length", b"5")],
    "query_string": b"",
}


async def _no_send(message: Any) -> None:
    raise AssertionError("nothing is sent while reading")


def request(receive: Any, timeout: float = 5.0) -> Request:
    return Request(dict(SCOPE), receive, _no_send, max_body=100, read_timeout=timeout)


async def test_a_body_already_read_arms_no_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    timers: list[Any] = []
    loop = asyncio.get_running_loop()
    call_at = loop.call_at
    monkeypatch.setattr(loop, "call_at", lambda *a, **k: timers.append(a) or call_at(*a, **k))

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"hello", "more_body": False}

    assert await request(receive).body() == b"hello"
    assert timers == []


async def test_a_body_that_arrives_later_is_read_whole() -> None:
    arrived: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    chunks = [b"he", b"llo"]

    async def receive() -> dict[str, Any]:
        if len(chunks) == 1:
            await arrived  # the second chunk is not there yet
        return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}

    reading = asyncio.ensure_future(request(receive).body())
    await asyncio.sleep(0.01)
    assert not reading.done()
    arrived.set_result(None)
    assert await asyncio.wait_for(reading, 5) == b"hello"


def _silent_receive(cancelled: asyncio.Event) -> Callable[[], Awaitable[dict[str, Any]]]:
    """A client that sends nothing: its receive() waits until cancelled, and says so."""

    async def receive() -> dict[str, Any]:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("not reached")

    return receive


async def test_a_client_silent_past_the_limit_gets_408_and_its_receive_is_cancelled() -> None:
    cancelled = asyncio.Event()
    receive = _silent_receive(cancelled)

    with pytest.raises(HttpError) as raised:
        await request(receive, timeout=0.05).body()
    assert raised.value.status == 408
    assert cancelled.is_set()


async def test_a_request_cancelled_while_reading_cancels_its_receive() -> None:
    cancelled = asyncio.Event()
    receive = _silent_receive(cancelled)

    reading = asyncio.ensure_future(request(receive).body())
    await asyncio.sleep(0.01)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert cancelled.is_set()


@given(st.text(alphabet="ab=&.-_%+20", max_size=30))
def test_the_query_is_parsed_as_urllib_parses_it(raw: str) -> None:
    # The split fast path (nothing escaped) and urllib's path agree on every query.
    query = Request({**SCOPE, "query_string": raw.encode()}, _no_send, _no_send, max_body=10).query
    assert query == dict(parse_qsl(raw, keep_blank_values=True))
