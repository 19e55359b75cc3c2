"""Confluent's streaming produce: many records in one chunked request, one report per
record in order, each written as soon as its record is acknowledged (proved over a real
HTTP connection), a bad record answered in its place, bounded records in flight, and the
framing of concatenated JSON split anywhere."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import AsyncIterator
from typing import Any

import h11
import httpx
import pytest
import pytest_asyncio
import uvicorn
from _gateway_support import FAST, ChunkedRequest, read_all, wait_for
from hypothesis import given, settings
from hypothesis import strategies as st

from pykaf import RecordMetadata
from pykaf.broker import BlockingCluster
from pykaf.errors import BufferFullError
from pykaf.gateway import Gateway
from pykaf.gateway import _v3_stream as v3_stream
from pykaf.gateway._asgi import HttpError
from pykaf.gateway._v3_framing import BadValue, ConcatenatedJson


async def cluster_id(app: Gateway) -> str:
    known = await app.backend.cluster_id()
    assert known is not None
    return known


def record(i: int, **extra: Any) -> bytes:
    body = {"key": {"type": "STRING", "data": f"k{i}"}, "value": {"type": "JSON", "data": i}}
    return json.dumps({**body, **extra}).encode()


def split_anywhere(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, len(data) // 40)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


async def chunked(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def reports_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


# -- whole streams through the app --------------------------------------------------------


async def test_a_thousand_records_in_one_stream_are_answered_in_order(
    app: Gateway, http: httpx.AsyncClient, kafka: BlockingCluster
) -> None:
    cid = await cluster_id(app)
    # Concatenated JSON with assorted whitespace, cut into chunks at arbitrary bytes.
    body = b"".join(record(i) + b" \n\t"[: i % 4] for i in range(1000))
    answer = await http.post(
        f"/v3/clusters/{cid}/topics/events/records",
        content=chunked(split_anywhere(body, seed=7)),
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 200
    reports = reports_of(answer.text)
    assert len(reports) == 1000
    assert all(r["error_code"] == 200 for r in reports), reports[:3]
    last_offset: dict[int, int] = {}
    for report in reports:  # in order: offsets grow within each partition
        partition = report["partition_id"]
        assert report["offset"] > last_offset.get(partition, -1)
        last_offset[partition] = report["offset"]
    seen = {(part, r.offset): (r.key, r.value) for part, r in read_all(kafka, "events", 1000)}
    for i, report in enumerate(reports):  # each report says where its own record is
        assert seen[report["partition_id"], report["offset"]] == (f"k{i}".encode(), str(i).encode())


async def test_a_bad_record_mid_stream_is_answered_in_its_place(
    app: Gateway, http: httpx.AsyncClient
) -> None:
    cid = await cluster_id(app)
    body = b"".join(
        [
            record(0, partition_id=0),
            b'{"value": {"type": "BINARY", "data": "@@@"}}',
            record(1, partition_id=0),
            b"{not json}",
            b"[1, 2]",
            record(2, partition_id=0),
        ]
    )
    answer = await http.post(
        f"/v3/clusters/{cid}/topics/events/records", content=chunked(split_anywhere(body, 3))
    )
    assert answer.status_code == 200
    reports = reports_of(answer.text)
    assert [r["error_code"] for r in reports] == [200, 400, 200, 400, 400, 200]
    assert "is not a base64 string" in reports[1]["message"]
    assert "not valid JSON" in reports[3]["message"]
    assert "must be a JSON object" in reports[4]["message"]
    assert [reports[i]["offset"] for i in (0, 2, 5)] == [0, 1, 2]


async def test_a_body_past_the_limit_ends_the_stream_with_its_error_last(
    kafka: BlockingCluster,
) -> None:
    from pykaf.gateway import GatewaySettings, LimitSettings, create_app

    limits = LimitSettings(max_body_bytes=3000)
    app = create_app(GatewaySettings(bootstrap=kafka.bootstrap, limits=limits))
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            cid = await cluster_id(app)
            parts = [record(i) for i in range(200)]  # about 13 KB in all
            answer = await http.post(
                f"/v3/clusters/{cid}/topics/events/records", content=chunked(parts)
            )
    finally:
        await app.close(5)
    assert answer.status_code == 200
    reports = reports_of(answer.text)
    assert 10 < len(reports) < 200
    assert all(r["error_code"] == 200 for r in reports[:-1])
    assert reports[-1]["error_code"] == 413


# -- answers flushed while the request is still arriving (a real HTTP connection) --------


@pytest_asyncio.fixture
async def served(app: Gateway) -> AsyncIterator[tuple[str, int]]:
    """The app behind uvicorn on 127.0.0.1 (a random free port), in this loop."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    await wait_for(lambda: server.started or task.done(), "uvicorn to start")
    assert server.started
    try:
        yield sock.getsockname()
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


class Http11Client:
    """A full-duplex HTTP/1.1 client (h11 on a socket): it reads answers while its
    chunked request is still being written, which httpx does not do (it sends the
    whole body first)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.CLIENT)
        self.body = b""

    async def start(self, target: str) -> None:
        headers = [
            ("host", "gw"),
            ("content-type", "application/json"),
            ("transfer-encoding", "chunked"),
        ]
        await self._send(h11.Request(method="POST", target=target, headers=headers))

    async def _send(self, event: Any) -> None:
        self.writer.write(self.h11.send(event) or b"")
        await self.writer.drain()

    async def send(self, data: bytes) -> None:
        await self._send(h11.Data(data=data))

    async def end(self) -> None:
        await self._send(h11.EndOfMessage())

    async def next_event(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await asyncio.wait_for(self.reader.read(65536), 10)
            self.h11.receive_data(data)

    async def reports(self, count: int) -> list[dict[str, Any]]:
        """Reads until ``count`` whole report lines have arrived (bounded in time)."""
        while self.body.count(b"\n") < count:
            event = await self.next_event()
            assert isinstance(event, h11.Data), event
            self.body += event.data
        lines, _, self.body = self.body.rpartition(b"\n")
        return [json.loads(line) for line in lines.splitlines()]


async def test_reports_are_written_while_the_request_is_still_arriving(
    app: Gateway, served: tuple[str, int]
) -> None:
    cid = await cluster_id(app)
    reader, writer = await asyncio.open_connection(*served)
    client = Http11Client(reader, writer)
    try:
        await client.start(f"/v3/clusters/{cid}/topics/events/records")
        await client.send(b"".join(record(i, partition_id=1) for i in range(10)))
        await client.send(record(10, partition_id=1)[:15])  # a record cut in two
        response = await client.next_event()
        assert isinstance(response, h11.Response)
        assert response.status_code == 200
        first = await client.reports(10)  # the request has not ended
        assert [r["offset"] for r in first] == list(range(10))
        await client.send(record(10, partition_id=1)[15:] + b"\n")
        assert [r["offset"] for r in await client.reports(1)] == [10]
        await client.send(b'{"value": 1}' + record(11, partition_id=1))
        await client.end()
        rest = await client.reports(2)
        assert [r["error_code"] for r in rest] == [400, 200]
        assert rest[1]["offset"] == 11
        assert isinstance(await client.next_event(), h11.EndOfMessage)
    finally:
        writer.close()


# -- backpressure -------------------------------------------------------------------------


def held_sends(app: Gateway, monkeypatch: pytest.MonkeyPatch) -> list[asyncio.Future[Any]]:
    """``Backend.send_many`` replaced: each record's future, made here, is the test's to
    resolve (or to leave pending)."""
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Any]] = []

    def send_many(topic: str, records: list[Any], custody: str) -> list[asyncio.Future[Any]]:
        futures.extend(loop.create_future() for _ in records)
        return futures[-len(records) :]

    monkeypatch.setattr(app.backend, "send_many", send_many)
    return futures


async def test_reading_stops_while_too_many_records_await_their_reports(
    app: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(v3_stream, "MAX_IN_FLIGHT", 4)
    futures = held_sends(app, monkeypatch)
    cid = await cluster_id(app)
    chunks = [record(i) for i in range(20)]

    def acknowledge(index: int) -> None:
        futures[index].set_result(RecordMetadata("events", 0, index, 0))

    request = ChunkedRequest(app, f"/v3/clusters/{cid}/topics/events/records", chunks)
    # One report awaited by the writer, 4 in the queue, and the sixth record sent but
    # held by the reader until there is room: the seventh chunk is not read.
    await wait_for(lambda: len(futures) == 6, "6 records sent")
    await request.stays(6)
    acknowledge(0)
    await wait_for(lambda: len(futures) == 7, "the 7th record")
    await request.stays(7)
    for index in range(1, 20):
        await wait_for(lambda: len(futures) > index, "the next record")  # noqa: B023
        acknowledge(index)
    await asyncio.wait_for(request.handling, 10)
    assert [r["offset"] for r in reports_of(request.body())] == list(range(20))


# -- framing ------------------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(_JSON, min_size=1, max_size=8),
    seed=st.integers(0, 2**32),
    ascii_only=st.booleans(),
)
def test_framing_finds_the_same_values_however_the_bytes_are_cut(
    values: list[Any], seed: int, ascii_only: bool
) -> None:
    rng = random.Random(seed)
    # A bare scalar needs whitespace after it (``1 2``, not ``12``); objects need none.
    text = "".join(
        json.dumps(v, ensure_ascii=ascii_only)
        + rng.choice(["", " ", "\n", "\r\n\t"] if isinstance(v, dict | list | str) else [" "])
        for v in values
    )
    data = text.encode()
    framing = ConcatenatedJson(10**6)
    found: list[Any] = []
    position = 0
    while position < len(data):
        size = rng.randint(1, 9)
        found += framing.feed(data[position : position + size])
        position += size
    found += framing.close()
    assert found == values


def test_framing_reports_bad_values_in_place_and_goes_on() -> None:
    framing = ConcatenatedJson(100)
    found = framing.feed(b'{"a": 1} {"b": x} [1,') + framing.feed(b'2] hello {"c"')
    found += framing.close()
    assert found[0] == {"a": 1}
    assert isinstance(found[1], BadValue)
    assert found[1].status == 400
    assert found[2] == [1, 2]
    assert isinstance(found[3], BadValue)  # hello
    assert isinstance(found[4], BadValue)  # the body ended inside {"c"
    assert len(found) == 5


def test_framing_bounds_one_value() -> None:
    framing = ConcatenatedJson(20)
    whole = framing.feed(b'{"a": "' + b"x" * 30 + b'"} {"b": 2}')
    assert isinstance(whole[0], BadValue)
    assert whole[0].status == 413
    assert whole[1] == {"b": 2}
    with pytest.raises(HttpError) as cut:
        framing.feed(b'{"a": "' + b"x" * 30)  # no end in sight: the stream cannot go on
    assert cut.value.status == 413


def test_framing_refuses_bytes_that_are_not_utf8() -> None:
    framing = ConcatenatedJson(100)
    assert framing.feed('{"a": "é'.encode()[:-1]) == []  # half a character: wait
    with pytest.raises(HttpError, match="not UTF-8"):
        framing.feed(b"\xff")


# -- records Kafka does not take ----------------------------------------------------------


async def test_a_single_record_kafka_refuses_gets_its_own_status(
    app: Gateway, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()

    def full(topic: str, records: list[Any], custody: str) -> list[asyncio.Future[RecordMetadata]]:
        refused: list[asyncio.Future[RecordMetadata]] = []
        for _ in records:
            refused.append(loop.create_future())
            refused[-1].set_exception(BufferFullError("the buffer is full"))
        return refused

    monkeypatch.setattr(app.backend, "send_many", full)
    cid = await cluster_id(app)
    url = f"/v3/clusters/{cid}/topics/events/records"
    answer = await http.post(url, json={"value": None})
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["error_code"] == 429
    # In a stream the status is 200 and each record has its error in its place.
    streamed = await http.post(url, content=chunked([b"{}", b"{}"]))
    assert streamed.status_code == 200
    assert [r["error_code"] for r in reports_of(streamed.text)] == [429, 429]


async def test_a_record_not_acknowledged_in_time_is_504_and_stays_in_custody(
    kafka: BlockingCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pykaf.gateway import GatewaySettings, create_app

    app = create_app(GatewaySettings(bootstrap=kafka.bootstrap, ack_timeout=0.05))
    pending = held_sends(app, monkeypatch)  # never acknowledged
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            cid = await cluster_id(app)
            answer = await http.post(f"/v3/clusters/{cid}/topics/events/records", json={})
    finally:
        await app.close(5)
    assert answer.status_code == 504
    assert "stays in custody" in answer.json()["message"]
    assert not pending[0].cancelled()  # the record is not given up


async def test_a_client_gone_mid_stream_leaves_the_gateway_serving(
    app: Gateway, served: tuple[str, int], kafka: BlockingCluster
) -> None:
    cid = await cluster_id(app)
    target = f"/v3/clusters/{cid}/topics/events/records"
    reader, writer = await asyncio.open_connection(*served)
    client = Http11Client(reader, writer)
    await client.start(target)
    await client.send(b"".join(record(i, partition_id=2) for i in range(5)))
    assert isinstance(await client.next_event(), h11.Response)
    assert len(await client.reports(5)) == 5
    await client.send(record(5, partition_id=2)[:10])  # then the client vanishes
    writer.close()
    await writer.wait_closed()
    host, port = served
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as http:
        answer = await http.post(target, json={"partition_id": 2, "value": None})
    assert answer.status_code == 200, answer.text
    assert answer.json()["offset"] == 5
    assert len(read_all(kafka, "events", 6)) == 6


async def test_kafka_down_a_journaled_record_is_504_and_arrives_after(
    kafka: BlockingCluster, tmp_path: Any
) -> None:
    from pykaf.gateway import GatewaySettings, create_app

    settings = GatewaySettings(
        bootstrap=kafka.bootstrap,
        journal_dir=str(tmp_path / "journal"),
        sync_custody="journal",
        ack_timeout=0.5,
        producer_options=FAST,
    )
    app = create_app(settings)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            url = f"/v3/clusters/{await cluster_id(app)}/topics/events/records"
            before = await http.post(url, json={"partition_id": 0, "value": None})
            assert before.status_code == 200, before.text
            kafka.faults.broker_down(1)
            during = await http.post(
                url, json={"partition_id": 0, "value": {"type": "STRING", "data": "kept"}}
            )
            assert during.status_code == 504, during.text
            assert "stays in custody" in during.json()["message"]
            kafka.faults.broker_up(1)
            # Read in a thread: the gateway's producer needs this loop to deliver.
            found = await asyncio.to_thread(read_all, kafka, "events", 2)
            assert [r.value for _, r in found] == [None, b"kept"]
    finally:
        await app.close(10)
