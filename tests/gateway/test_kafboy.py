"""kafboy's routes against the embedded broker: every route, body format, key, header
and partition source, custody per request, and the errors."""

from __future__ import annotations

import httpx
from _gateway_support import read_all

from pykaf.broker import BlockingCluster


async def test_async_answers_202_and_the_record_arrives_with_key_and_headers(
    http: httpx.AsyncClient, kafka: BlockingCluster
) -> None:
    answer = await http.post(
        "/async/events?key=k1&header.source=test&partition=2",
        content=b"hello",
        headers={"X-Kafka-Header-Trace": "abc"},
    )
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"topic": "events", "accepted": 1, "custody": "journal"}
    await http.post("/sync/events?partition=2", content=b"barrier")  # ordered after it
    (part, record), _ = read_all(kafka, "events", 2)
    assert part == 2
    assert record.value == b"hello"
    assert record.key == b"k1"
    assert dict(record.headers) == {"trace": b"abc", "source": b"test"}


async def test_sync_answers_with_partition_and_offset(
    http: httpx.AsyncClient, kafka: BlockingCluster
) -> None:
    first = await http.post("/sync/events", content=b"a", headers={"X-Kafka-Partition": "1"})
    second = await http.post("/sync/events?partition=1", content=b"b")
    assert first.status_code == second.status_code == 200, first.text
    assert first.json()["partition"] == 1
    assert first.json()["topic"] == "events"
    assert second.json()["offset"] == first.json()["offset"] + 1


async def test_batch_routes_take_lines_and_json_arrays(
    http: httpx.AsyncClient, kafka: BlockingCluster
) -> None:
    lines = await http.post("/batch/async/events?partition=0", content=b"l1\nl2\r\nl3\n")
    assert lines.status_code == 202
    assert lines.json()["accepted"] == 3
    array = [
        "plain",
        {"key": "k", "value": {"n": 1}, "headers": {"h": "v"}, "partition": 0},
        {"value": None, "partition": 0},
        7,
    ]
    synced = await http.post("/batch/sync/events?partition=0", json=array)
    assert synced.status_code == 200, synced.text
    offsets = [r["offset"] for r in synced.json()["records"]]
    assert offsets == [3, 4, 5, 6]
    values = [r.value for _, r in read_all(kafka, "events", 7)]
    assert values == [b"l1", b"l2", b"l3", b"plain", b'{"n":1}', None, b"7"]


async def test_safe_routes_and_custody_per_request(http: httpx.AsyncClient) -> None:
    safe = await http.post("/safe/async/events", content=b"s")
    assert safe.status_code == 202
    assert safe.json()["custody"] == "journal_sync"
    memory = await http.post("/async/events?custody=memory", content=b"m")
    assert memory.json()["custody"] == "memory"
    header = await http.post("/async/events", content=b"m", headers={"X-Pykaf-Custody": "memory"})
    assert header.json()["custody"] == "memory"
    safe_batch = await http.post("/safe/batch/sync/events", content=b"1\n2\n")
    assert safe_batch.status_code == 200
    assert len(safe_batch.json()["records"]) == 2


async def test_errors_have_confluent_shape(http: httpx.AsyncClient) -> None:
    unknown = await http.post("/async/nope", content=b"x")
    assert unknown.status_code == 404
    assert unknown.json()["error_code"] == 40403
    assert "nope" in unknown.json()["message"]
    bad_name = await http.post("/async/bad%20name", content=b"x")
    assert bad_name.status_code == 400
    assert "topic name" in bad_name.json()["message"]
    bad_custody = await http.post("/async/events?custody=disk", content=b"x")
    assert bad_custody.status_code == 400
    assert "custody" in bad_custody.json()["message"]
    bad_json = await http.post(
        "/batch/async/events", content=b"[1,", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert "JSON" in bad_json.json()["message"]
    bad_partition = await http.post("/async/events?partition=x", content=b"x")
    assert bad_partition.status_code == 400
    no_route = await http.post("/nowhere", content=b"x")
    assert no_route.status_code == 404
    assert set(no_route.json()) == {"error_code", "message"}
    wrong_method = await http.get("/async/events")
    assert wrong_method.status_code == 405


async def test_a_partition_that_does_not_exist_fails_the_sync_answer(
    http: httpx.AsyncClient,
) -> None:
    answer = await http.post("/sync/events?partition=9", content=b"x")
    assert answer.status_code in (400, 404), answer.text
    assert "partition" in answer.json()["message"]
