"""A request leaves no reference cycle behind: its ``Request`` and ``Exchange`` (and what
they hold: the scope, the body, the server's per-request objects) are freed by reference
counting when the request ends, not by the cyclic collector. Before, ``exchange.request``
and ``request.send`` (the exchange's bound ``send``) made a cycle per request: about 11
objects of cyclic garbage each, so the collector ran ten times as often as for a
do-nothing app, and its generation-1 passes (milliseconds each) cost /async about 8 us
a request (benchmarks/gateway.py's do-nothing row has no such cycle)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from pykaf.broker import BlockingCluster
from pykaf.gateway import Gateway
from pykaf.gateway._access_log import Exchange
from pykaf.gateway._asgi import Request


@pytest.fixture
def saved_garbage() -> Iterator[list[Any]]:
    """``gc.garbage`` collecting what the cyclic collector would free (DEBUG_SAVEALL)."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


_OURS = "pykaf.test_request_garbage"  # a scope key: this test's requests


def _scope(path: str, query: bytes = b"", body: bytes = b"v") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [
            (b"host", b"gateway"),
            (b"content-length", b"%d" % len(body)),
            (b"content-type", b"application/json" if body.startswith(b"{") else b"text/plain"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
        _OURS: True,
    }


class _Send:
    """A test request's ``send``: what tells this test's objects from others' (below)."""

    def __init__(self) -> None:
        self.statuses: list[int] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.statuses.append(message["status"])


async def _status(app: Gateway, path: str, query: bytes, body: bytes) -> int:
    """One request through the app, as a server passes it: the status it answered."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    send = _Send()
    await app(_scope(path, query, body), receive, send)
    return send.statuses[0]


def _cyclic_requests(garbage: list[Any]) -> list[Any]:
    """This test's ``Request`` and ``Exchange`` objects among the cyclic garbage. Only
    its own: the collector also finds what earlier tests in the same worker left (a
    server's request cut by its shutdown), and those are no failure of this one."""
    return [
        o
        for o in garbage
        if (isinstance(o, Request) and o.scope.get(_OURS) is True)
        or (isinstance(o, Exchange) and isinstance(o._send, _Send))
    ]


_V3_RECORD = b'{"value": {"type": "STRING", "data": "v"}}'


@pytest.mark.parametrize(
    ("path", "query", "body", "status"),
    [
        ("/async/events", b"custody=memory", b"v", 202),
        ("/async/events", b"custody=journal", b"v", 202),
        ("/sync/events", b"", b"v", 200),
        ("/batch/async/events", b"", b"v\nw\n", 202),
        ("/async/bad%20topic", b"", b"v", 400),  # an error answer
        ("/nowhere", b"", b"v", 404),
        ("/batch/sync/events", b"", b"v\nw\n", 200),
        ("/batch/sync/events", b"partition=7", b"v\nw\n", 400),
        ("/sync/events", b"partition=7", b"v", 400),
        ("/sync/nowhere", b"", b"v", 404),
        ("/safe/async/events", b"", b"v", 202),
        ("/v3/clusters/{cid}/topics/events/records", b"", _V3_RECORD, 200),
        ("/v3/clusters/{cid}/topics/events/records", b"", _V3_RECORD * 2, 200),  # a stream
        ("/v3/clusters/{cid}/topics/events/records", b"", b'{"value": 1}', 400),  # a bad record
        ("/v3/clusters/{cid}/topics/events/records", b"", b'{"value": 1}' * 2, 200),  # two
        ("/v3/clusters/{cid}/topics/events/records", b"", _V3_RECORD + b"\xff", 400),  # not UTF-8
        ("/v3/clusters/{cid}/topics/nowhere/records", b"", _V3_RECORD, 404),
        # Refused by the producer at once (no partition 7): the error in its place.
        (
            "/v3/clusters/{cid}/topics/events/records",
            b"",
            _V3_RECORD[:-1] + b', "partition_id": 7}',
            400,
        ),
        (
            "/v3/clusters/{cid}/topics/events/records",
            b"",
            (_V3_RECORD[:-1] + b', "partition_id": 7}') * 2,
            200,
        ),
    ],
)
async def test_a_request_leaves_no_cycle(
    app: Gateway, saved_garbage: list[Any], path: str, query: bytes, body: bytes, status: int
) -> None:
    path = path.format(cid=await app.backend.cluster_id())
    statuses = [await _status(app, path, query, body) for _ in range(20)]
    assert statuses == [status] * 20
    gc.collect()
    assert _cyclic_requests(saved_garbage) == []


# Kafka refuses each record (INVALID_RECORD is not retriable: the record fails at once).
_REFUSED = 87


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/sync/events", b"v", 500),
        ("/batch/sync/events", b"v\nw\n", 500),
        ("/v3/clusters/{cid}/topics/events/records", _V3_RECORD, 500),
        ("/v3/clusters/{cid}/topics/events/records", _V3_RECORD * 2, 200),
    ],
)
async def test_a_record_kafka_refuses_leaves_no_cycle(
    app: Gateway,
    kafka: BlockingCluster,
    saved_garbage: list[Any],
    path: str,
    body: bytes,
    status: int,
) -> None:
    path = path.format(cid=await app.backend.cluster_id())
    statuses = []
    for _ in range(10):
        kafka.faults.push_errors("Produce", [_REFUSED] * 4)
        statuses.append(await _status(app, path, b"", body))
        kafka.faults.clear()
    assert statuses == [status] * 10
    gc.collect()
    assert _cyclic_requests(saved_garbage) == []
