"""Addresses that are not Kafka brokers: typed errors that name the address, in time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from peers import free_port

from pykaf._client._async_client import AsyncClient
from pykaf.errors import (
    BrokerConnectionError,
    ClientClosedError,
    KafkaTimeoutError,
    NoBrokersError,
    NotKafkaError,
    PykafError,
)

TIMEOUT = 1.5
# How far past its timeout a call may run before the test calls it hung.
SLACK = 5.0
SETTINGS = {
    "request_timeout": TIMEOUT,
    "connect_timeout": 0.5,
    "close_timeout": 1.0,
    "reconnect_backoff": 0.01,
    "reconnect_backoff_max": 0.1,
}

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.close()
        async with asyncio.timeout(5.0):
            await server.wait_closed()


@pytest.fixture
async def http_port() -> AsyncIterator[str]:
    """A tiny HTTP responder: whatever arrives gets a 400 and a close."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5.0):
                await reader.read(1024)
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        finally:
            writer.close()

    async for address in _serve(answer):
        yield address


@pytest.fixture
async def silent_port() -> AsyncIterator[str]:
    """Accepts connections and never says a word (a hung broker, a black hole)."""
    writers: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    async for address in _serve(hold):
        yield address
        # Before the server's wait_closed(), which from 3.12 waits for its connections.
        for writer in writers:
            writer.close()


async def _fails(bootstrap: str) -> PykafError:
    client = AsyncClient(bootstrap, **SETTINGS)
    try:
        async with asyncio.timeout(TIMEOUT + SLACK):
            with pytest.raises(PykafError) as info:
                await client.metadata()
    finally:
        async with asyncio.timeout(1.0 + SLACK):
            await client.close()
    return info.value


async def test_closed_port() -> None:
    address = f"127.0.0.1:{free_port()}"
    error = await _fails(address)
    assert isinstance(error, NoBrokersError)
    assert isinstance(error, ConnectionError)
    assert error.retriable
    assert address in str(error)
    assert "connection refused" in str(error)


async def test_unresolvable_host() -> None:
    error = await _fails("nonexistent.invalid:9092")
    assert isinstance(error, BrokerConnectionError | KafkaTimeoutError)
    assert "nonexistent.invalid:9092" in str(error)


async def test_port_speaking_http(http_port: str) -> None:
    error = await _fails(http_port)
    # Not retriable: the same port will not start speaking Kafka; said at once.
    assert isinstance(error, NotKafkaError)
    assert http_port in str(error)
    assert "HTTP" in str(error)


async def test_silent_port(silent_port: str) -> None:
    error = await _fails(silent_port)
    assert isinstance(error, NoBrokersError | KafkaTimeoutError)
    assert silent_port in str(error)


async def test_silent_port_direct_connect_timeout(silent_port: str) -> None:
    # With a request timeout longer than connect_timeout, each attempt ends on the
    # latter, as a retriable connection error naming the address.
    client = AsyncClient(silent_port, **{**SETTINGS, "request_timeout": 0.8})
    try:
        async with asyncio.timeout(0.8 + SLACK):
            with pytest.raises(NoBrokersError) as info:
                await client.api_versions()
    finally:
        await client.close()
    (first, *_) = info.value.errors
    assert isinstance(first, BrokerConnectionError)
    assert "connect_timeout" in str(first)
    assert silent_port in str(first)


async def test_close_while_connecting_to_a_black_hole(silent_port: str) -> None:
    client = AsyncClient(silent_port, **{**SETTINGS, "connect_timeout": 30.0})
    pending = asyncio.ensure_future(client.metadata(timeout=30.0))
    await asyncio.sleep(0)  # let the call start connecting
    async with asyncio.timeout(1.0 + SLACK):
        await client.close()
        with pytest.raises(ClientClosedError):
            await pending
