"""The gateway against independent brokers (tansu, in Rust; librdkafka's mock cluster),
not only against the embedded one: kafboy's routes, Confluent v3's topics and records (one
per request and streamed), with journal custody behind them, and every record answered
as taken read back by confluent-kafka where the answer says it is."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from _gateway_support import FAST, gateway_http
from peers.process_broker import PROCESS_BROKERS, ProcessBroker, process_broker
from peers.readback import read_back
from peers.tansu import Tansu

from pykaf.gateway import GatewaySettings

pytestmark = pytest.mark.peer

PARTITIONS = 3
STREAMED = 200


@pytest.fixture(params=PROCESS_BROKERS)
def peer(request: pytest.FixtureRequest) -> ProcessBroker:
    return process_broker(request, "events", PARTITIONS)


@pytest_asyncio.fixture
async def http(peer: ProcessBroker, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    journal = str(tmp_path / "journal")
    settings = GatewaySettings(bootstrap=peer.bootstrap, journal_dir=journal, producer_options=FAST)
    async with gateway_http(settings) as client:
        yield client


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_every_route_kind_writes_where_it_says(
    peer: ProcessBroker, http: httpx.AsyncClient
) -> None:
    placed: dict[bytes, tuple[int, int]] = {}  # value -> (partition, offset) as answered
    accepted: list[bytes] = []  # answered 202: where is not said

    one = await http.post("/sync/events?key=k1", content=b"sync-1", headers={"x-kafka-h": "v"})
    assert one.status_code == 200, one.text
    placed[b"sync-1"] = (one.json()["partition"], one.json()["offset"])

    lines = await http.post("/batch/sync/events", content=b"batch-1\nbatch-2\nbatch-3\n")
    assert lines.status_code == 200, lines.text
    for value, answer in zip(
        (b"batch-1", b"batch-2", b"batch-3"), lines.json()["records"], strict=True
    ):
        placed[value] = (answer["partition"], answer["offset"])

    for route, value in (("/async/events", b"async-1"), ("/safe/async/events", b"safe-1")):
        answer = await http.post(route, content=value)
        assert answer.status_code == 202, answer.text
        accepted.append(value)
    answer = await http.post("/batch/async/events?custody=journal", content=b"ba-1\nba-2")
    assert answer.status_code == 202, answer.text
    accepted += [b"ba-1", b"ba-2"]

    clusters = (await http.get("/v3/clusters")).json()["data"]
    cid = clusters[0]["cluster_id"]
    topic = await http.get(f"/v3/clusters/{cid}/topics/events")
    assert topic.status_code == 200, topic.text
    assert topic.json()["partitions_count"] == PARTITIONS
    names = [t["topic_name"] for t in (await http.get(f"/v3/clusters/{cid}/topics")).json()["data"]]
    assert "events" in names

    url = f"/v3/clusters/{cid}/topics/events/records"
    v3 = await http.post(url, json={"value": {"type": "BINARY", "data": b64(b"v3-1")}})
    assert v3.status_code == 200, v3.text
    assert v3.json()["error_code"] == 200
    placed[b"v3-1"] = (v3.json()["partition_id"], v3.json()["offset"])

    records = [
        json.dumps({"value": {"type": "STRING", "data": f"stream-{i}"}}).encode()
        for i in range(STREAMED)
    ]
    streamed = await http.post(
        url, content=chunks([b"\n".join(records[i : i + 7]) for i in range(0, STREAMED, 7)])
    )
    assert streamed.status_code == 200, streamed.text
    reports = [json.loads(line) for line in streamed.text.splitlines()]
    assert [r["error_code"] for r in reports] == [200] * STREAMED, reports[:3]
    for i, report in enumerate(reports):
        placed[b"stream-%d" % i] = (report["partition_id"], report["offset"])

    total = len(placed) + len(accepted)
    log = read_back(
        peer.bootstrap, "events", PARTITIONS, total, trust_watermarks=peer.trust_watermarks
    )
    where = log.offsets_by_value()
    assert {value: where.get(value) for value in placed} == placed  # each where answered
    assert all(value in where for value in accepted)
    assert log.total == total  # and nothing twice
    keyed = [key for rows in log.records.values() for _o, key, v in rows if v == b"sync-1"]
    assert keyed == [b"k1"]


async def test_topics_made_and_deleted_through_v3_on_tansu(tansu: Tansu) -> None:
    # (librdkafka's mock offers no CreateTopics: the gateway answers 400 40002 there.)
    settings = GatewaySettings(bootstrap=tansu.bootstrap, producer_options=FAST)
    async with gateway_http(settings) as http:
        cid = (await http.get("/v3/clusters")).json()["data"][0]["cluster_id"]
        topics = f"/v3/clusters/{cid}/topics"
        made = await http.post(topics, json={"topic_name": "made", "partitions_count": 2})
        assert made.status_code == 201, made.text
        assert made.json()["partitions_count"] == 2
        assert (await http.get(f"{topics}/made")).json()["partitions_count"] == 2
        record = {"value": {"type": "STRING", "data": "into made"}}
        written = await http.post(f"{topics}/made/records", json=record)
        assert written.status_code == 200, written.text
        assert (await http.delete(f"{topics}/made")).status_code == 204
        gone = await http.get(f"{topics}/made")
        assert (gone.status_code, gone.json()["error_code"]) == (404, 40403)
