"""What the lean paths of one-record requests keep (issue 16's speed work): key and
headers from HTTP headers alone (no query), repeated headers, a single record's errors
worded as before, and the access log's byte counts without wrappers."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from _gateway_support import read_all

from pykaf.broker import BlockingCluster
from pykaf.gateway import Gateway
from pykaf.gateway._access_log import RequestMetrics


async def test_key_and_repeated_headers_from_http_headers_alone(
    app: Gateway, http: httpx.AsyncClient, kafka: BlockingCluster
) -> None:
    answer = await http.post(
        "/async/events",
        content=b"v",
        headers=[
            ("X-Kafka-Key", "k"),
            ("X-Kafka-Partition", "1"),
            ("X-Kafka-Header-Trace", "a"),
            ("X-Kafka-Header-Trace", "b"),
        ],
    )
    assert answer.status_code == 202, answer.text
    await app.backend.journal_producer().flush()  # read_all blocks this loop
    ((partition, record),) = read_all(kafka, "events", 1)
    assert (partition, record.key, record.value) == (1, b"k", b"v")
    assert list(record.headers) == [("trace", b"a"), ("trace", b"b")]


async def test_a_plain_record_has_no_key_and_no_headers(
    app: Gateway, http: httpx.AsyncClient, kafka: BlockingCluster
) -> None:
    answer = await http.post("/async/events", content=b"plain", headers={"X-Other": "1"})
    assert answer.status_code == 202, answer.text
    await app.backend.journal_producer().flush()  # read_all blocks this loop
    ((_, record),) = read_all(kafka, "events", 1)
    assert (record.key, record.value, list(record.headers or [])) == (None, b"plain", [])


async def test_one_records_missing_partition_is_named_without_a_record_index(
    http: httpx.AsyncClient,
) -> None:
    refused = await http.post("/async/events?partition=7", content=b"x")
    assert refused.status_code == 400, refused.text
    message = refused.json()["message"]
    assert message.startswith("partition 7 is not in 0..2"), message
    assert "nothing was taken" in message
    lines = await http.post("/batch/async/events?partition=7", content=b"x\ny")
    assert lines.json()["message"].startswith("record 0: partition 7"), lines.text


async def test_the_access_line_counts_bytes_of_whole_and_streamed_answers(
    app: Gateway, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = await app.backend.cluster_id()
    stream = b'{"value":{"type":"STRING","data":"a"}}{"value":{"type":"STRING","data":"b"}}'
    with caplog.at_level(logging.INFO, logger="pykaf.gateway.access"):
        whole = await http.post("/async/events", content=b"12345")
        streamed = await http.post(
            f"/v3/clusters/{cluster}/topics/events/records",
            content=stream,
            headers={"content-type": "application/json"},
        )
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name.endswith("access")]
    assert [(line["status"], line["bytes_in"]) for line in lines] == [(202, 5), (200, len(stream))]
    assert [line["bytes_out"] for line in lines] == [len(whole.content), len(streamed.content)]
    assert [line["records"] for line in lines] == [1, 2]


def test_metrics_snapshot_keeps_its_shape() -> None:
    metrics = RequestMetrics()
    metrics.observe("async", 202, 0.0002, 1)
    metrics.observe("async", 429, 0.0002, 0)
    metrics.observe("unmatched", 404, 20.0, 0)
    seen = metrics.snapshot()
    assert seen["requests"] == {("async", 202): 1, ("async", 429): 1, ("unmatched", 404): 1}
    assert seen["records"] == {"async": 1}
    assert seen["too_many"] == {"async": 1}
    assert seen["latency"]["async"][1] == 2  # 0.0002 s: the 0.00025 bound
    assert seen["latency"]["unmatched"][-2] == 1  # 20 s: the 30 s bound
    assert seen["latency_sum"] == {"async": 0.0004, "unmatched": 20.0}


async def test_a_topic_name_with_a_trailing_newline_is_refused_every_time(
    http: httpx.AsyncClient,
) -> None:
    # The name check's pattern once ended in "$", which also matches before a final
    # newline: "events\n" passed as a valid name (and the check is now remembered).
    for _ in range(2):
        answer = await http.post("/async/events%0A", content=b"x")
        assert answer.status_code == 400, answer.text
        assert answer.json()["error_code"] == 40002
    assert (await http.post("/async/events", content=b"x")).status_code == 202
