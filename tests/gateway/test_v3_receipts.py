"""The v3 stream's fast path: runs of the common record (a BINARY value, nothing else) go to
the producer with one receipt (``Backend.send_values``), not a future each, and are
answered exactly as before: each report in its place, saying where its own record is;
records of other shapes, bad ones and a principal header keep their own path between
them; a receipt told in part by the deadline answers the rest 504 in place; and records
held in receipts count against the records in flight."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from _gateway_support import FAST, ChunkedRequest, gateway_http, read_all, uvicorn_in_loop, wait_for

from pykaf import Receipt
from pykaf.broker import BlockingCluster
from pykaf.errors import DeliveryError
from pykaf.gateway import Gateway, GatewaySettings, SecuritySettings, create_app
from pykaf.gateway import _v3_stream as v3_stream
from pykaf.gateway._backend import Backend


def common(value: bytes) -> bytes:
    data = base64.b64encode(value).decode()
    return json.dumps({"value": {"type": "BINARY", "data": data}}).encode() + b"\n"


def cut(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def chunked(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def reports_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


async def cluster_id(app: Gateway) -> str:
    known = await app.backend.cluster_id()
    assert known is not None
    return known


def counted_sends(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Records sent with a receipt and with a future each, by any gateway's backend,
    counted (and still sent)."""
    counts = {"receipt": 0, "future": 0}
    send_values, send_many = Backend.send_values, Backend.send_many

    def by_receipt(
        self: Backend,
        topic: str,
        values: list[bytes],
        custody: Any,
        receipt: Receipt,
        headers: Any = None,
    ) -> int:
        taken = send_values(self, topic, values, custody, receipt, headers)
        counts["receipt"] += taken
        return taken

    def one_by_one(self: Backend, topic: str, records: Any, custody: Any) -> Any:
        counts["future"] += len(records)
        return send_many(self, topic, records, custody)

    monkeypatch.setattr(Backend, "send_values", by_receipt)
    monkeypatch.setattr(Backend, "send_many", one_by_one)
    return counts


async def test_common_records_go_by_receipt_and_each_report_says_where_it_is(
    app: Gateway, http: httpx.AsyncClient, kafka: BlockingCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = counted_sends(monkeypatch)
    cid = await cluster_id(app)
    values = [b"%04d" % i + bytes(i % 7) for i in range(1000)]
    body = b"".join(common(v) for v in values)
    answer = await http.post(
        f"/v3/clusters/{cid}/topics/events/records",
        content=chunked(cut(body, 997)),  # records cut by chunk ends, decoded by json
    )
    assert answer.status_code == 200
    reports = reports_of(answer.text)
    assert [r["error_code"] for r in reports] == [200] * 1000
    assert [r["value"] for r in reports] == [{"type": "BINARY", "size": len(v)} for v in values]
    assert all("key" not in r and r["topic_name"] == "events" for r in reports)
    # A chunk with fewer than 16 records whole in it sends them one by one.
    assert counts["receipt"] + counts["future"] == 1000
    assert counts["receipt"] >= 990
    seen = {(part, r.offset): r.value for part, r in read_all(kafka, "events", 1000)}
    assert [seen[r["partition_id"], r["offset"]] for r in reports] == values


async def test_other_records_keep_their_place_between_runs(
    app: Gateway, http: httpx.AsyncClient, kafka: BlockingCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = counted_sends(monkeypatch)
    cid = await cluster_id(app)
    keyed = {"key": {"type": "STRING", "data": "k"}, "value": {"type": "STRING", "data": "s"}}
    body = b"".join(
        [
            *(common(b"a%d" % i) for i in range(20)),
            json.dumps(keyed).encode(),
            *(common(b"b%d" % i) for i in range(20)),
            b'{"value": {"type": "BINARY", "data": "@@@@"}}',
            *(common(b"c%d" % i) for i in range(3)),  # too few for a receipt
        ]
    )
    answer = await http.post(f"/v3/clusters/{cid}/topics/events/records", content=chunked([body]))
    reports = reports_of(answer.text)
    codes = [r["error_code"] for r in reports]
    assert codes == [200] * 41 + [400] + [200] * 3
    assert counts == {"receipt": 40, "future": 4}
    seen = {(part, r.offset): r.value for part, r in read_all(kafka, "events", 44)}
    good = [r for r in reports if r["error_code"] == 200]
    expected = [b"a%d" % i for i in range(20)] + [b"s"] + [b"b%d" % i for i in range(20)]
    assert [seen[r["partition_id"], r["offset"]] for r in good] == [
        *expected,
        *(b"c%d" % i for i in range(3)),
    ]


@pytest.mark.parametrize("custody", ["memory", "journal"])
async def test_a_principal_header_is_written_on_common_records_too(
    kafka: BlockingCluster, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, custody: str
) -> None:
    """With a principal header the runs still go by receipt in memory, each record with
    the header; a journal takes them one by one (its run path has no headers)."""
    security = SecuritySettings(tokens={"t-alice": "alice"}, principal_header="x-principal")
    settings = GatewaySettings(
        bootstrap=kafka.bootstrap,
        security=security,
        journal_dir=str(tmp_path / "journal"),
        sync_custody=custody,
    )
    counts = counted_sends(monkeypatch)
    async with gateway_http(settings) as http:
        alice = {"authorization": "Bearer t-alice"}
        cid = (await http.get("/v3/clusters", headers=alice)).json()["data"][0]["cluster_id"]
        body = b"".join(common(b"%d" % i) for i in range(30))
        url = f"/v3/clusters/{cid}/topics/events/records"
        answer = await http.post(url, content=body, headers=alice)
        assert [r["error_code"] for r in reports_of(answer.text)] == [200] * 30
        assert counts == (
            {"receipt": 30, "future": 0} if custody == "memory" else {"receipt": 0, "future": 30}
        )
    records = [r for _, r in read_all(kafka, "events", 30)]
    assert all(list(r.headers) == [("x-principal", b"alice")] for r in records)


def held_receipts(app: Gateway, monkeypatch: pytest.MonkeyPatch) -> list[Receipt]:
    """``Backend.send_values`` replaced: every value taken, each receipt the test's to
    tell (or not)."""
    receipts: list[Receipt] = []

    def send_values(
        topic: str, values: list[bytes], custody: Any, receipt: Receipt, headers: Any = None
    ) -> int:
        receipt.expect(len(values))
        receipts.append(receipt)
        return len(values)

    monkeypatch.setattr(app.backend, "send_values", send_values)
    return receipts


async def test_a_receipt_told_in_part_by_the_deadline_answers_the_rest_504(
    kafka: BlockingCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(GatewaySettings(bootstrap=kafka.bootstrap, ack_timeout=0.2))
    receipts = held_receipts(app, monkeypatch)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            cid = await cluster_id(app)
            url = f"/v3/clusters/{cid}/topics/events/records"
            body = b"".join(common(b"v%d" % i) for i in range(30))
            answering = asyncio.ensure_future(http.post(url, content=chunked([body])))
            await wait_for(lambda: len(receipts) == 1, "the receipt")
            receipt = receipts[0]
            refused = DeliveryError("refused")
            receipt.tell(20, 5, -1, -1, -1, refused)  # told out of order: answered in order
            receipt.tell(0, 10, 2, 500, 1612552482123, None)
            answer = await answering
            failures_before = app.backend.failed_after_accept
            receipt.tell(10, 10, 1, 7, 0, None)  # late, delivered after all
            receipt.tell(25, 5, -1, -1, -1, refused)  # late and failed: counted
    finally:
        await app.close(5)
    reports = reports_of(answer.text)
    assert answer.status_code == 200
    assert [r["error_code"] for r in reports] == [200] * 10 + [504] * 10 + [500] * 5 + [504] * 5
    assert [r["offset"] for r in reports[:10]] == list(range(500, 510))
    assert {r["partition_id"] for r in reports[:10]} == {2}
    assert reports[0]["timestamp"] == "2021-02-05T19:14:42.123Z"
    assert "stays in custody" in reports[10]["message"]
    assert app.backend.failed_after_accept == failures_before + 5


async def test_records_held_in_receipts_count_against_those_in_flight(
    app: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(v3_stream, "MAX_IN_FLIGHT", 30)
    receipts = held_receipts(app, monkeypatch)
    cid = await cluster_id(app)
    chunks = [b"".join(common(b"%d" % (20 * c + i)) for i in range(20)) for c in range(5)]
    request = ChunkedRequest(app, f"/v3/clusters/{cid}/topics/events/records", chunks)
    # 40 records held (two receipts) is past 31: the third chunk waits.
    await wait_for(lambda: len(receipts) == 2, "2 receipts")
    await request.stays(2)
    for index in range(5):
        await wait_for(lambda: len(receipts) > index, "the next receipt")  # noqa: B023
        receipts[index].tell(0, 20, 0, 20 * index, 0, None)
    await asyncio.wait_for(request.handling, 10)
    assert [r["offset"] for r in reports_of(request.body())] == list(range(100))


async def test_clients_gone_with_receipts_unanswered_lose_nothing(
    app: Gateway, kafka: BlockingCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Ten clients each send 300 common records in one chunked request and vanish
    once the answer has begun, before reading their reports (the gateway may still
    hold their receipts): every record arrives, once, and the gateway goes on serving
    without an error logged."""
    cid = await cluster_id(app)
    target = f"/v3/clusters/{cid}/topics/events/records"
    head = (
        f"POST {target} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
        "transfer-encoding: chunked\r\n\r\n"
    ).encode()
    sent = []
    async with uvicorn_in_loop(app, log_level="warning") as port:
        for client in range(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            values = [b"c%d-%d" % (client, i) for i in range(300)]
            sent += values
            body = b"".join(common(v) for v in values)
            writer.write(head + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert answer.startswith(b"HTTP/1.1 200")
            writer.close()  # the reports unread
            await writer.wait_closed()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            answer = await http.post(target, content=common(b"after"))
            assert answer.status_code == 200, answer.text
    arrived = [r.value for _, r in read_all(kafka, "events", len(sent) + 1)]
    assert sorted(arrived) == sorted([*sent, b"after"])
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_kafka_down_a_run_is_504_in_custody_and_arrives_after(
    kafka: BlockingCluster,
) -> None:
    """Memory custody, the only broker down: a run of 40 common records is taken with a
    receipt, each answered 504 at the deadline (still in custody), and each arrives
    once the broker is back, with no failure counted after its answer."""
    settings = GatewaySettings(bootstrap=kafka.bootstrap, ack_timeout=0.5, producer_options=FAST)
    app = create_app(settings)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            url = f"/v3/clusters/{await cluster_id(app)}/topics/events/records"
            before = await http.post(url, content=common(b"before"))
            assert before.status_code == 200, before.text
            kafka.faults.broker_down(1)
            values = [b"kept-%d" % i for i in range(40)]
            during = await http.post(url, content=b"".join(common(v) for v in values))
            assert [r["error_code"] for r in reports_of(during.text)] == [504] * 40
            kafka.faults.broker_up(1)
            # Read in a thread: the gateway's producer needs this loop to deliver.
            found = await asyncio.to_thread(read_all, kafka, "events", 41)
            assert sorted(r.value for _, r in found) == sorted([b"before", *values])
            assert app.backend.failed_after_accept == 0
    finally:
        await app.close(10)
