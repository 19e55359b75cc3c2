"""Confluent's REST v3 against the embedded broker: clusters, topics (list, get, create,
delete) and produce records (one per request here; streaming in test_v3_stream.py),
in Confluent's shapes and error codes."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from _gateway_support import read_all

from pykaf.broker import BlockingCluster
from pykaf.gateway import Gateway


async def cluster_id(http: httpx.AsyncClient) -> str:
    answer = await http.get("/v3/clusters")
    assert answer.status_code == 200, answer.text
    return str(answer.json()["data"][0]["cluster_id"])


def read_back(kafka: BlockingCluster, topic: str, count: int) -> dict[tuple[int, int], Any]:
    """``count`` records of ``topic`` by (partition, offset)."""
    return {(part, r.offset): r for part, r in read_all(kafka, topic, count)}


async def produce(http: httpx.AsyncClient, cid: str, body: Any, topic: str = "events") -> Any:
    return await http.post(f"/v3/clusters/{cid}/topics/{topic}/records", json=body)


# -- clusters -----------------------------------------------------------------------------


async def test_clusters_list_and_get_in_confluent_shape(
    http: httpx.AsyncClient, kafka: BlockingCluster
) -> None:
    listing = (await http.get("/v3/clusters")).json()
    assert listing["kind"] == "KafkaClusterList"
    assert listing["metadata"] == {"self": "http://gateway/v3/clusters", "next": None}
    (cluster,) = listing["data"]
    cid = cluster["cluster_id"]
    assert cid
    assert isinstance(cid, str)
    url = f"http://gateway/v3/clusters/{cid}"
    assert cluster["kind"] == "KafkaCluster"
    assert cluster["metadata"] == {"self": url, "resource_name": f"crn:///kafka={cid}"}
    assert cluster["topics"] == {"related": f"{url}/topics"}
    assert cluster["controller"]["related"].startswith(f"{url}/brokers/")
    for link in ("acls", "brokers", "broker_configs", "consumer_groups"):
        assert cluster[link]["related"].startswith(url)
    one = await http.get(f"/v3/clusters/{cid}")
    assert one.status_code == 200
    assert one.json() == cluster


async def test_an_unknown_cluster_is_404_on_every_route(http: httpx.AsyncClient) -> None:
    base = "/v3/clusters/no-such-cluster"
    answers = [
        await http.get(base),
        await http.get(f"{base}/topics"),
        await http.get(f"{base}/topics/events"),
        await http.post(f"{base}/topics", json={"topic_name": "x"}),
        await http.delete(f"{base}/topics/events"),
        await http.post(f"{base}/topics/events/records", json={}),
    ]
    for answer in answers:
        assert answer.status_code == 404, answer.text
        assert answer.json() == {
            "error_code": 404,
            "message": "Cluster no-such-cluster cannot be found.",
        }


async def test_the_configured_cluster_id_is_shown(kafka: BlockingCluster, tmp_path: Any) -> None:
    from pykaf.gateway import GatewaySettings, create_app

    app = create_app(GatewaySettings(bootstrap=kafka.bootstrap, cluster_id="cluster-1"))
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            assert await cluster_id(http) == "cluster-1"
            topic = await http.get("/v3/clusters/cluster-1/topics/events")
            assert topic.json()["cluster_id"] == "cluster-1"
    finally:
        await app.close(5)


# -- topics -------------------------------------------------------------------------------


async def test_topics_list_and_get(http: httpx.AsyncClient, kafka: BlockingCluster) -> None:
    kafka.create_topic("another", 1)
    cid = await cluster_id(http)
    listing = (await http.get(f"/v3/clusters/{cid}/topics")).json()
    assert listing["kind"] == "KafkaTopicList"
    assert listing["metadata"]["self"] == f"http://gateway/v3/clusters/{cid}/topics"
    assert [t["topic_name"] for t in listing["data"]] == ["another", "events"]
    events = listing["data"][1]
    url = f"http://gateway/v3/clusters/{cid}/topics/events"
    assert events == {
        "kind": "KafkaTopic",
        "metadata": {"self": url, "resource_name": f"crn:///kafka={cid}/topic=events"},
        "cluster_id": cid,
        "topic_name": "events",
        "is_internal": False,
        "replication_factor": 1,
        "partitions_count": 3,
        "partitions": {"related": f"{url}/partitions"},
        "configs": {"related": f"{url}/configs"},
        "partition_reassignments": {"related": f"{url}/partitions/-/reassignment"},
    }
    one = await http.get(f"/v3/clusters/{cid}/topics/events")
    assert one.status_code == 200
    assert one.json() == events


async def test_an_unknown_topic_is_404_40403(http: httpx.AsyncClient) -> None:
    cid = await cluster_id(http)
    for answer in (
        await http.get(f"/v3/clusters/{cid}/topics/missing"),
        await http.delete(f"/v3/clusters/{cid}/topics/missing"),
        await produce(http, cid, {"value": {"type": "STRING", "data": "x"}}, topic="missing"),
    ):
        assert answer.status_code == 404, answer.text
        assert answer.json()["error_code"] == 40403


async def test_create_then_delete_a_topic(http: httpx.AsyncClient, kafka: BlockingCluster) -> None:
    cid = await cluster_id(http)
    request = {
        "topic_name": "orders",
        "partitions_count": 4,
        "replication_factor": 1,
        "configs": [
            {"name": "cleanup.policy", "value": "compact"},
            {"name": "retention.ms", "value": None},  # null: the broker's default
        ],
    }
    created = await http.post(f"/v3/clusters/{cid}/topics", json=request)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["kind"] == "KafkaTopic"
    assert (body["topic_name"], body["partitions_count"], body["replication_factor"]) == (
        "orders",
        4,
        1,
    )
    assert body["metadata"]["self"] == f"http://gateway/v3/clusters/{cid}/topics/orders"
    described = (await http.get(f"/v3/clusters/{cid}/topics/orders")).json()
    assert described["partitions_count"] == 4
    again = await http.post(f"/v3/clusters/{cid}/topics", json=request)
    assert again.status_code == 400
    assert again.json()["error_code"] == 40002
    assert "already exists" in again.json()["message"]
    deleted = await http.delete(f"/v3/clusters/{cid}/topics/orders")
    assert deleted.status_code == 204
    assert deleted.content == b""
    gone = await http.get(f"/v3/clusters/{cid}/topics/orders")
    assert gone.json()["error_code"] == 40403


async def test_create_with_replicas_assignments(http: httpx.AsyncClient) -> None:
    cid = await cluster_id(http)
    created = await http.post(
        f"/v3/clusters/{cid}/topics",
        json={"topic_name": "placed", "replicas_assignments": {"0": [1], "1": [1]}},
    )
    assert created.status_code == 201, created.text
    assert created.json()["partitions_count"] == 2


async def test_create_validate_only_answers_200_and_creates_nothing(
    http: httpx.AsyncClient,
) -> None:
    cid = await cluster_id(http)
    dry = await http.post(
        f"/v3/clusters/{cid}/topics",
        json={"topic_name": "dry", "partitions_count": 2, "validate_only": True},
    )
    assert dry.status_code == 200, dry.text
    assert dry.json()["partitions_count"] == 2
    assert (await http.get(f"/v3/clusters/{cid}/topics/dry")).status_code == 404


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        ({"partitions_count": 1}, 400, "topic_name is required"),
        ({"topic_name": "bad name!"}, 40002, "not a valid topic name"),
        ({"topic_name": "t", "partitions_count": "2"}, 400, "partitions_count must be"),
        ({"topic_name": "t", "partitions_count": 0}, 40002, "between 1 and 2147483647"),
        ({"topic_name": "t", "replication_factor": 3}, 40002, "Replication factor: 3"),
        ({"topic_name": "t", "configs": [{"value": "x"}]}, 400, "configs must be"),
        # Past what Kafka's CreateTopics can carry: refused here, not a 500.
        ({"topic_name": "t", "replication_factor": 2**32}, 40002, "between 1 and 32767"),
        ({"topic_name": "t", "partitions_count": 2**40}, 40002, "between 1 and 2147483647"),
        ({"topic_name": "t", "replicas_assignments": {"x": [1]}}, 40002, "partition ids"),
        ({"topic_name": "t", "replicas_assignments": {"0": [1.5]}}, 40002, "broker ids"),
        ({"topic_name": "t", "replicas_assignments": {"0": [2**40]}}, 40002, "broker ids"),
        ([1], 400, "JSON object"),
    ],
)
async def test_create_refuses_bad_requests_with_confluent_codes(
    http: httpx.AsyncClient, body: Any, code: int, words: str
) -> None:
    cid = await cluster_id(http)
    answer = await http.post(f"/v3/clusters/{cid}/topics", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error_code"] == code
    assert words in answer.json()["message"]


async def test_permissions_decide_each_v3_route(kafka: BlockingCluster) -> None:
    from pykaf.gateway import GatewaySettings, SecuritySettings, create_app

    kafka.create_topic("secret", 1)
    security = SecuritySettings(
        tokens={"t-reader": "reader", "t-writer": "writer"},
        permissions={
            "reader": {"*": ["describe"]},
            "writer": {"events": ["produce", "describe"], "new-*": ["create", "delete"]},
        },
    )
    app = create_app(GatewaySettings(bootstrap=kafka.bootstrap, security=security))
    transport = httpx.ASGITransport(app=app)
    reader = httpx.AsyncClient(
        transport=transport, base_url="http://gw", headers={"authorization": "Bearer t-reader"}
    )
    writer = httpx.AsyncClient(
        transport=transport, base_url="http://gw", headers={"authorization": "Bearer t-writer"}
    )
    nobody = httpx.AsyncClient(transport=transport, base_url="http://gw")
    try:
        cid = await cluster_id(reader)
        topics = f"/v3/clusters/{cid}/topics"
        one = {"value": {"type": "STRING", "data": "x"}}

        async def status(client: httpx.AsyncClient, method: str, url: str, **kw: Any) -> Any:
            answer = await client.request(method, url, **kw)
            if answer.status_code == 403:
                assert answer.json()["error_code"] == 40301
            return answer.status_code

        names = [t["topic_name"] for t in (await reader.get(topics)).json()["data"]]
        assert names == ["events", "secret"]
        assert await status(reader, "GET", f"{topics}/secret") == 200
        assert await status(reader, "POST", topics, json={"topic_name": "new-1"}) == 403
        assert await status(reader, "POST", f"{topics}/events/records", json=one) == 403
        # The writer lists and reads only the topics it may describe.
        names = [t["topic_name"] for t in (await writer.get(topics)).json()["data"]]
        assert names == ["events"]
        assert await status(writer, "GET", f"{topics}/secret") == 403
        assert await status(writer, "POST", f"{topics}/events/records", json=one) == 200
        assert await status(writer, "POST", f"{topics}/secret/records", json=one) == 403
        assert await status(writer, "POST", topics, json={"topic_name": "new-1"}) == 201
        assert await status(writer, "POST", topics, json={"topic_name": "other"}) == 403
        assert await status(writer, "DELETE", f"{topics}/new-1") == 204
        assert await status(writer, "DELETE", f"{topics}/events") == 403
        assert await status(nobody, "GET", "/v3/clusters") == 401
    finally:
        for client in (reader, writer, nobody):
            await client.aclose()
        await app.close(5)


# -- records ------------------------------------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


async def test_produce_every_format_and_read_it_back(
    http: httpx.AsyncClient, kafka: BlockingCluster
) -> None:
    cid = await cluster_id(http)
    requests: list[dict[str, Any]] = [
        {"key": {"type": "BINARY", "data": b64(b"\x00k")}, "value": {"type": "BINARY",
                                                                      "data": b64(b"\xffv")}},
        {"key": {"type": "JSON", "data": [1, "a"]}, "value": {"type": "JSON", "data": {"x": 1}}},
        {"key": {"type": "STRING", "data": "clé"}, "value": {"type": "STRING", "data": "été"}},
        {"value": {"type": "STRING", "data": "no key"}},
        {"key": {"type": "BINARY", "data": None}, "value": {"type": "JSON", "data": None}},
        {},
    ]  # fmt: skip
    expected = [
        (b"\x00k", b"\xffv"),
        (b'[1,"a"]', b'{"x":1}'),
        ("clé".encode(), "été".encode()),
        (None, b"no key"),
        (None, None),
        (None, None),
    ]
    reports = []
    for request in requests:
        answer = await produce(http, cid, {"partition_id": 1, **request})
        assert answer.status_code == 200, answer.text
        reports.append(answer.json())
    assert [r["offset"] for r in reports] == list(range(6))
    assert reports[0]["key"] == {"type": "BINARY", "size": 2}
    assert reports[1]["value"] == {"type": "JSON", "size": 7}
    assert reports[2]["key"] == {"type": "STRING", "size": len("clé".encode())}
    assert "key" not in reports[3]  # no key in the request: none in the report (Confluent)
    assert reports[4]["key"] == {"type": "BINARY", "size": -1}  # null: Kafka's -1
    assert "key" not in reports[5]
    assert "value" not in reports[5]
    first = reports[0]
    assert first["error_code"] == 200
    assert (first["cluster_id"], first["topic_name"], first["partition_id"]) == (cid, "events", 1)
    assert first["timestamp"].endswith("Z")
    found = read_back(kafka, "events", 6)
    assert [(found[1, o].key, found[1, o].value) for o in range(6)] == expected


async def test_produce_headers_partition_and_timestamp(
    http: httpx.AsyncClient, kafka: BlockingCluster
) -> None:
    cid = await cluster_id(http)
    answer = await produce(
        http,
        cid,
        {
            "partition_id": 2,
            "headers": [
                {"name": "Header-1", "value": b64(b"one")},
                {"name": "Header-1", "value": b64(b"again")},
                {"name": "empty", "value": None},
            ],
            "value": {"type": "STRING", "data": "v"},
            "timestamp": "2021-02-05T19:14:42.123Z",
        },
    )
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["partition_id"] == 2
    assert report["timestamp"] == "2021-02-05T19:14:42.123Z"
    record = read_back(kafka, "events", 1)[2, 0]
    assert list(record.headers) == [("Header-1", b"one"), ("Header-1", b"again"), ("empty", None)]
    assert record.timestamp == 1612552482123


async def test_the_principal_header_is_written_by_the_gateway_only(
    kafka: BlockingCluster,
) -> None:
    from pykaf.gateway import GatewaySettings, SecuritySettings, create_app

    security = SecuritySettings(tokens={"t-alice": "alice"}, principal_header="x-principal")
    app = create_app(GatewaySettings(bootstrap=kafka.bootstrap, security=security))
    try:
        transport = httpx.ASGITransport(app=app)
        alice = {"authorization": "Bearer t-alice"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gw", headers=alice
        ) as http:
            cid = await cluster_id(http)
            forged = [{"name": "x-principal", "value": b64(b"mallory")}]
            answer = await produce(http, cid, {"partition_id": 0, "headers": forged, "value": None})
            assert answer.status_code == 200, answer.text
    finally:
        await app.close(5)
    record = read_back(kafka, "events", 1)[0, 0]
    assert list(record.headers) == [("x-principal", b"alice")]


@pytest.mark.parametrize(
    ("request_body", "words"),
    [
        ({"value": {"type": "BINARY", "data": "not base64!"}}, "is not a base64 string"),
        ({"value": {"type": "BINARY", "data": 1}}, "is not a base64 string"),
        ({"headers": [{"name": "h", "value": "%%%"}]}, "headers[0].value"),
        ({"value": {"type": "STRING", "data": 5}}, "must be a string for type STRING"),
        ({"value": {"type": "XML", "data": "x"}}, "must be BINARY, JSON or STRING"),
        ({"value": {"type": "AVRO", "data": "x"}}, "Schema Registry"),
        ({"value": {"type": "BINARY", "schema_id": 1}}, "Schema Registry"),
        ({"value": {"data": "x"}}, "value.type is required"),
        ({"value": "plain"}, "value must be an object"),
        ({"partition_id": -1}, "partition_id must be an integer >= 0"),
        ({"partition_id": "1"}, "partition_id must be an integer >= 0"),
        ({"timestamp": "yesterday"}, "timestamp must be an ISO-8601"),
        ({"timestamp": "2021-02-05T19:14:42"}, "with a zone"),
        ({"valeu": {"type": "STRING", "data": "typo"}}, "unknown field(s) valeu"),
        ([1, 2], "a record must be a JSON object"),
    ],
)
async def test_a_bad_record_is_a_400_that_says_what_to_fix(
    http: httpx.AsyncClient, request_body: Any, words: str
) -> None:
    cid = await cluster_id(http)
    answer = await produce(http, cid, request_body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error_code"] == 400
    assert words in answer.json()["message"]


async def test_bad_json_empty_body_and_wrong_media_type(http: httpx.AsyncClient) -> None:
    cid = await cluster_id(http)
    url = f"/v3/clusters/{cid}/topics/events/records"
    bad = await http.post(url, content=b'{"value": ', headers={"content-type": "application/json"})
    assert bad.status_code == 400
    assert "not valid JSON" in bad.json()["message"]
    empty = await http.post(url, content=b"  \n")
    assert empty.status_code == 422
    assert empty.json()["error_code"] == 422
    text = await http.post(url, content=b"{}", headers={"content-type": "text/plain"})
    assert text.status_code == 415
    assert text.json()["error_code"] == 415


async def test_a_partition_the_topic_lacks_is_refused(http: httpx.AsyncClient) -> None:
    cid = await cluster_id(http)
    answer = await produce(http, cid, {"partition_id": 7, "value": None})
    assert answer.status_code == 400
    assert "partition 7" in answer.json()["message"]


async def test_custody_per_request_for_records(app: Gateway, http: httpx.AsyncClient) -> None:
    cid = await cluster_id(http)
    url = f"/v3/clusters/{cid}/topics/events/records"
    for custody in ("memory", "journal", "journal_sync"):
        answer = await http.post(
            url, params={"custody": custody}, json={"value": {"type": "STRING", "data": custody}}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["error_code"] == 200
    wrong = await http.post(url, params={"custody": "disk"}, json={})
    assert wrong.status_code == 400


async def test_the_first_record_waits_for_a_slow_metadata_answer(
    http: httpx.AsyncClient, kafka: BlockingCluster
) -> None:
    # The memory producer opens on the first record and waits only max_block (50 ms)
    # for its topic's metadata; a busy Kafka answering slower failed that first record.
    cid = await cluster_id(http)
    kafka.faults.set_latency(0.3, api="Metadata")
    answer = await produce(http, cid, {"partition_id": 0, "value": {"type": "STRING", "data": "a"}})
    assert answer.status_code == 200, answer.text
    assert answer.json()["error_code"] == 200
    kafka.faults.set_latency(0, api="Metadata")
    assert read_back(kafka, "events", 1)[0, 0].value == b"a"
