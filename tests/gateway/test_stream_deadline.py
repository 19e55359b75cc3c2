"""A v3 stream has a whole-stream deadline (``LimitSettings.stream_timeout``): past it
the gateway reads no more, answers the records it took, and ends with a 408 object."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from _gateway_support import FAST

from pykaf.broker import BlockingCluster
from pykaf.gateway import Gateway, GatewaySettings, LimitSettings, create_app


@pytest_asyncio.fixture
async def slow_app(kafka: BlockingCluster) -> AsyncIterator[Gateway]:
    limits = LimitSettings(stream_timeout=0.3)
    app = create_app(
        GatewaySettings(bootstrap=kafka.bootstrap, limits=limits, producer_options=FAST)
    )
    await app.start()
    try:
        yield app
    finally:
        await app.close(5)


def record(i: int) -> bytes:
    return json.dumps({"partition_id": 0, "value": {"type": "STRING", "data": f"v{i}"}}).encode()


async def stream(app: Gateway, chunks: list[bytes]) -> tuple[int, list[dict[str, Any]]]:
    """The answer to a stream that sends ``chunks`` and then nothing more (it never
    ends): its status and its objects."""
    cluster = await app.backend.cluster_id()
    never = asyncio.Event()
    given = 0

    async def receive() -> dict[str, Any]:
        nonlocal given
        if given < len(chunks):
            given += 1
            return {"type": "http.request", "body": chunks[given - 1], "more_body": True}
        await never.wait()  # a client that stopped sending but keeps the request open
        raise AssertionError("unreachable")

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    path = f"/v3/clusters/{cluster}/topics/events/records"
    scope = {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""}
    await asyncio.wait_for(app(scope, receive, send), 10)  # bounded: the deadline ends it
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, [json.loads(line) for line in body.decode().splitlines()]


async def test_past_the_deadline_the_stream_ends_with_408_after_the_records_taken(
    slow_app: Gateway,
) -> None:
    status, objects = await stream(slow_app, [record(0) + record(1), record(2)])
    assert status == 200
    assert [o["error_code"] for o in objects] == [200, 200, 200, 408]
    assert [o["offset"] for o in objects[:3]] == [0, 1, 2]
    assert "stream_timeout" in objects[-1]["message"]


async def test_a_stream_with_no_record_before_the_deadline_is_a_408_answer(
    slow_app: Gateway,
) -> None:
    status, objects = await stream(slow_app, [])
    assert status == 408
    assert objects[0]["error_code"] == 408


def test_the_deadline_is_checked_and_can_be_turned_off() -> None:
    assert LimitSettings().stream_timeout == 300.0
    assert LimitSettings(stream_timeout=None).stream_timeout is None
    with pytest.raises(ValueError, match="stream_timeout"):
        LimitSettings(stream_timeout=0)
    with pytest.raises(ValueError, match="stream_timeout"):
        LimitSettings.from_mapping({"stream_timeout": "soon"})
