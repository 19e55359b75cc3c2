"""The broker at the byte level, through pykaf.protocol and raw sockets."""

from __future__ import annotations

import logging
import socket
import struct
import uuid
from typing import Any

import pytest
from wire_client import WireClient, raw_frame

from pykaf._errors import RemoteProtocolError
from pykaf.broker import BlockingCluster
from pykaf.broker._bad_clients import BadClients
from pykaf.protocol._messages import decode_response
from pykaf.protocol._records import decode_batches, encode_batch, iter_batch_headers

PRODUCE_V = 9
FETCH_V = 12


def leader_address(cluster: BlockingCluster, topic: str, partition: int = 0) -> str:
    leader = cluster.state.partition(topic, partition)
    assert leader is not None
    node = cluster.state.brokers[leader.leader]
    return f"{node.host}:{node.port}"


def produce(
    client: WireClient, topic: str, data: bytes, *, partition: int = 0, acks: int = -1
) -> Any:
    fields = {
        "transactional_id": None,
        "acks": acks,
        "timeout": 5000,
        "topic_data": [{"name": topic, "partition_data": [{"index": partition, "records": data}]}],
    }
    if acks == 0:
        client.send("Produce", PRODUCE_V, **fields)
        return None
    response = client.request("Produce", PRODUCE_V, **fields)
    return response.responses[0].partition_responses[0]


def fetch_request(
    topic: str, offset: int, *, max_wait: int = 0, partition: int = 0
) -> dict[str, Any]:
    return {
        "replica_id": -1,
        "max_wait": max_wait,
        "min_bytes": 1,
        "max_bytes": 1 << 20,
        "isolation_level": 0,
        "session_id": 0,
        "session_epoch": -1,
        "topics": [
            {
                "topic": topic,
                "partitions": [
                    {"partition": partition, "fetch_offset": offset, "partition_max_bytes": 1 << 20}
                ],
            }
        ],
        "forgotten_topics_data": [],
        "rack_id": "",
    }


def fetch(client: WireClient, topic: str, offset: int, **kwargs: Any) -> Any:
    response = client.request("Fetch", FETCH_V, **fetch_request(topic, offset, **kwargs))
    return response.responses[0].partitions[0]


def values(records: bytes | None) -> list[bytes | None]:
    return [r.value for b in decode_batches(records or b"") for r in b.records]


def one_batch(*vals: bytes, pid: int = -1, epoch: int = -1, seq: int = -1) -> bytes:
    return encode_batch(
        [(None, v, None, 1000) for v in vals],
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
    )


def test_api_versions_come_from_the_registry(cluster: BlockingCluster) -> None:
    with WireClient(cluster.brokers[0].__str__()) as client:
        response = client.request(
            "ApiVersions", 3, client_software_name="wire-test", client_software_version="1.0"
        )
    assert response.error_code == 0
    ranges = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
    assert ranges[0] == (3, 13)  # Produce, from the KIP-896 floor to kio's newest
    assert ranges[1] == (4, 18)  # Fetch
    assert 18 in ranges
    assert 3 in ranges
    # Group and offset APIs: every version kio knows, for old clients (Kafka 3.x did)
    assert ranges[11] == (0, 9)  # JoinGroup
    assert ranges[8] == (0, 10)  # OffsetCommit (v0-v1 are ours, kio lacks them)
    assert 68 not in ranges  # ConsumerGroupHeartbeat (KIP-848): no handler registered


def test_unsupported_api_versions_version_gets_a_v0_answer(cluster: BlockingCluster) -> None:
    with WireClient(str(cluster.brokers[0])) as client:
        client.send_raw(raw_frame(18, 99, 42, b""))
        (size,) = struct.unpack(">i", client.sock.recv(4, socket.MSG_WAITALL))
        payload = client.sock.recv(size, socket.MSG_WAITALL)
    correlation_id, body = decode_response(18, 0, payload)
    assert correlation_id == 42
    assert body.error_code == 35  # UNSUPPORTED_VERSION
    assert any(k.api_key == 18 and k.max_version == 4 for k in body.api_keys)


@pytest.mark.parametrize(
    "garbage",
    [
        raw_frame(999, 0, 1, b""),  # unknown API key
        raw_frame(3, 99, 1, b""),  # unknown Metadata version: Kafka closes
        raw_frame(3, 12, 1, b"\x07\x01\x02"),  # a Metadata body that does not decode
        struct.pack(">i", -5),  # negative length
        struct.pack(">i", 2**31 - 1) + b"x",  # huge length
        struct.pack(">i", 600_000) + b"x" * 100,  # over the first-frame limit
        b"GET / HTTP/1.1\r\n\r\n",  # not Kafka at all
    ],
    ids=["unknown-api", "unknown-version", "bad-body", "negative", "huge", "first-frame", "http"],
)
def test_bad_requests_close_only_their_connection(cluster: BlockingCluster, garbage: bytes) -> None:
    address = str(cluster.brokers[0])
    with WireClient(address) as good, WireClient(address) as bad:
        bad.send_raw(garbage)
        assert bad.is_closed_by_peer()
        response = good.request(
            "Metadata",
            12,
            include_topic_authorized_operations=False,
            topics=[],
            allow_auto_topic_creation=False,
        )
        assert len(response.brokers) == 3


def test_large_frames_are_fine_after_the_first_one(cluster: BlockingCluster) -> None:
    cluster.create_topic("big", 1)
    with WireClient(leader_address(cluster, "big")) as client:
        client.request("ApiVersions", 0)
        result = produce(client, "big", one_batch(b"x" * 900_000))
    assert (result.error_code, result.base_offset) == (0, 0)


def test_idempotent_duplicates_and_gaps(cluster: BlockingCluster) -> None:
    cluster.create_topic("idem", 1)
    with WireClient(leader_address(cluster, "idem")) as client:
        init = client.request("InitProducerId", 4, transactional_id=None, transaction_timeout=60000)
        pid, epoch = init.producer_id, init.producer_epoch
        assert init.error_code == 0
        assert pid >= 0
        assert epoch == 0
        first = one_batch(b"a", b"b", pid=pid, epoch=epoch, seq=0)
        assert produce(client, "idem", first).base_offset == 0
        assert (
            produce(client, "idem", one_batch(b"c", pid=pid, epoch=epoch, seq=2)).base_offset == 2
        )
        again = produce(client, "idem", first)  # a retry of the first batch
        assert (again.error_code, again.base_offset) == (0, 0)
        gap = produce(client, "idem", one_batch(b"z", pid=pid, epoch=epoch, seq=9))
        assert gap.error_code == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
        old = produce(client, "idem", one_batch(b"z", pid=pid, epoch=epoch - 1, seq=3))
        assert old.error_code == 47  # INVALID_PRODUCER_EPOCH
        part = fetch(client, "idem", 0)
    assert values(part.records) == [b"a", b"b", b"c"]  # stored once
    assert part.high_watermark == 3


def test_produce_validation(cluster: BlockingCluster) -> None:
    cluster.create_topic("small", 1, configs={"max.message.bytes": "1000"})
    with WireClient(leader_address(cluster, "small")) as client:
        assert produce(client, "small", one_batch(b"x" * 2000)).error_code == 10
        corrupt = bytearray(one_batch(b"hello"))
        corrupt[-1] ^= 0xFF
        assert produce(client, "small", bytes(corrupt)).error_code == 2  # CORRUPT_MESSAGE
        assert produce(client, "small", one_batch(b"a") + one_batch(b"b")).error_code == 87
        assert produce(client, "small", one_batch(b"a")[:-3]).error_code == 2
        assert produce(client, "small", one_batch(b"ok")).error_code == 0
        assert fetch(client, "small", 0).high_watermark == 1


def test_produce_to_a_missing_topic_or_bad_acks_is_answered_not_dropped(
    cluster: BlockingCluster,
) -> None:
    # v8+ answers carry record_errors: a missing one made the broker drop the connection.
    cluster.create_topic("here", 1)
    with WireClient(leader_address(cluster, "here")) as client:
        assert produce(client, "gone", one_batch(b"x")).error_code == 3
        assert produce(client, "here", one_batch(b"x"), acks=2).error_code == 21
        fields = {
            "transactional_id": None,
            "acks": -1,
            "timeout": 5000,
            "topic_data": [
                {
                    "topic_id": uuid.uuid4(),
                    "partition_data": [{"index": 0, "records": one_batch(b"x")}],
                }
            ],
        }
        answer = client.request("Produce", 13, **fields).responses[0].partition_responses[0]
        assert answer.error_code == 100  # UNKNOWN_TOPIC_ID
        assert produce(client, "here", one_batch(b"ok")).error_code == 0  # still connected


def test_not_leader(cluster: BlockingCluster) -> None:
    cluster.create_topic("led", 1)
    partition = cluster.state.partition("led", 0)
    assert partition is not None
    other = next(b for b in cluster.brokers if b.node_id != partition.leader)
    with WireClient(str(other)) as client:
        result = produce(client, "led", one_batch(b"x"))
        assert result.error_code == 6
        assert fetch(client, "led", 0).error_code == 6


def test_acks_zero_gets_no_response(cluster: BlockingCluster) -> None:
    cluster.create_topic("fire", 1)
    with WireClient(leader_address(cluster, "fire")) as client:
        produce(client, "fire", one_batch(b"1"), acks=0)
        produce(client, "fire", one_batch(b"2"), acks=0)
        # The next answer on the connection is the fetch's: nothing was sent for acks=0.
        assert values(fetch(client, "fire", 0).records) == [b"1", b"2"]


def test_fetch_long_poll_is_woken_by_a_produce(cluster: BlockingCluster) -> None:
    cluster.create_topic("poll", 1)
    address = leader_address(cluster, "poll")
    with WireClient(address, timeout=20.0) as waiter, WireClient(address) as writer:
        # 60 s of max wait: only an append can answer it before the socket timeout.
        waiter.send("Fetch", FETCH_V, **fetch_request("poll", 0, max_wait=60_000))
        # Metadata on another connection proves the waiting fetch blocks nobody else.
        assert writer.request(
            "Metadata",
            12,
            include_topic_authorized_operations=False,
            topics=None,
            allow_auto_topic_creation=False,
        )
        produce(writer, "poll", one_batch(b"wake"))
        part = waiter.receive().responses[0].partitions[0]
    assert values(part.records) == [b"wake"]


def test_fetch_errors_and_offsets(cluster: BlockingCluster) -> None:
    cluster.create_topic("range", 1)
    with WireClient(leader_address(cluster, "range")) as client:
        for i in range(3):
            produce(client, "range", one_batch(b"%d" % i, b"%d" % i))
        assert fetch(client, "range", 7).error_code == 1  # OFFSET_OUT_OF_RANGE
        end = fetch(client, "range", 6)  # at the end: empty, no error
        assert (end.error_code, end.records, end.high_watermark) == (0, b"", 6)
        missing = client.request("Fetch", FETCH_V, **fetch_request("nope", 0))
        assert missing.responses[0].partitions[0].error_code == 3
        deleted = client.request(
            "DeleteRecords",
            2,
            topics=[{"name": "range", "partitions": [{"partition_index": 0, "offset": 3}]}],
            timeout=1000,
        )
        assert deleted.topics[0].partitions[0].low_watermark == 3
        assert fetch(client, "range", 2).error_code == 1
        part = fetch(client, "range", 3)
        assert part.log_start_offset == 3
        # Whole batches: the one holding offset 3 starts at 2.
        first = next(iter_batch_headers(part.records))[1]
        assert first.base_offset == 2


def test_fetch_by_topic_id(cluster: BlockingCluster) -> None:
    topic = cluster.create_topic("ids", 1)
    with WireClient(leader_address(cluster, "ids")) as client:
        produce(client, "ids", one_batch(b"v"))
        request = fetch_request("ids", 0)
        request["topics"][0]["topic_id"] = topic.topic_id
        response = client.request("Fetch", 16, **request)
    assert response.responses[0].topic_id == topic.topic_id
    assert values(response.responses[0].partitions[0].records) == [b"v"]


def test_list_offsets(cluster: BlockingCluster) -> None:
    cluster.create_topic("times", 1)
    with WireClient(leader_address(cluster, "times")) as client:
        produce(client, "times", encode_batch([(None, b"a", None, 100), (None, b"b", None, 200)]))
        produce(client, "times", encode_batch([(None, b"c", None, 300)]))

        def lookup(ts: int) -> tuple[int, int]:
            response = client.request(
                "ListOffsets",
                7,
                replica_id=-1,
                isolation_level=0,
                topics=[{"name": "times", "partitions": [{"partition_index": 0, "timestamp": ts}]}],
            )
            part = response.topics[0].partitions[0]
            assert part.error_code == 0
            return part.offset, part.timestamp

        assert lookup(-2)[0] == 0
        assert lookup(-1)[0] == 3
        assert lookup(-3) == (2, 300)
        assert lookup(150) == (1, 200)
        assert lookup(301) == (-1, -1)


def test_metadata_auto_create_and_down_brokers(cluster: BlockingCluster) -> None:
    with WireClient(str(cluster.brokers[0])) as client:
        off = client.request(
            "Metadata",
            12,
            include_topic_authorized_operations=False,
            topics=[{"name": "auto"}],
            allow_auto_topic_creation=False,
        )
        assert off.topics[0].error_code == 3
        on = client.request(
            "Metadata",
            12,
            include_topic_authorized_operations=False,
            topics=[{"name": "auto"}],
            allow_auto_topic_creation=True,
        )
        assert on.topics[0].error_code == 0
        assert len(on.topics[0].partitions) == 1
        bad = client.request(
            "Metadata",
            12,
            include_topic_authorized_operations=False,
            topics=[{"name": "no/slash"}],
            allow_auto_topic_creation=True,
        )
        assert bad.topics[0].error_code == 17
        cluster.create_topic("spread", 6)
        spread = client.request(
            "Metadata",
            12,
            include_topic_authorized_operations=False,
            topics=[{"name": "spread"}],
            allow_auto_topic_creation=False,
        )
        assert {p.leader_id for p in spread.topics[0].partitions} == {1, 2, 3}

        cluster.call(lambda: cluster.state.set_broker_up(2, False))
        down = client.request(
            "Metadata",
            12,
            include_topic_authorized_operations=False,
            topics=None,
            allow_auto_topic_creation=False,
        )
        assert sorted(b.node_id for b in down.brokers) == [1, 3]
        for topic in down.topics:
            for p in topic.partitions:
                assert p.leader_id in (1, 3)
                assert 2 not in p.isr_nodes


def test_no_auto_create_when_disabled() -> None:
    with BlockingCluster(brokers=1, auto_create_topics=False) as cluster:
        with WireClient(str(cluster.brokers[0])) as client:
            response = client.request("Metadata", 1, topics=[{"name": "absent"}])
        assert response.topics[0].error_code == 3
        assert "absent" not in cluster.state.topics


def test_trailing_request_bytes_are_ignored_as_kafka_does(cluster: BlockingCluster) -> None:
    # librdkafka 2.x's "all topics" Metadata v13 request, byte for byte: 3 bytes follow
    # the body's tagged fields. Kafka ignores them, so must we.
    frame = bytes.fromhex("0003000d00000003000772646b61666b610000000000010000")
    with WireClient(str(cluster.brokers[0])) as client:
        client.send_raw(struct.pack(">i", len(frame)) + frame)
        (size,) = struct.unpack(">i", client.sock.recv(4, socket.MSG_WAITALL))
        payload = client.sock.recv(size, socket.MSG_WAITALL)
    correlation_id, response = decode_response(3, 13, payload)
    assert correlation_id == 3
    assert len(response.brokers) == 3


def test_fetch_limits_across_partitions(cluster: BlockingCluster) -> None:
    topic = cluster.create_topic("limits", 2, replication_factor=1)
    # Both partitions on one leader, so that one fetch can ask for both.
    cluster.call(lambda: cluster.state.move_leader(topic.partitions[1], topic.partitions[0].leader))
    big = one_batch(b"x" * 5000)
    with WireClient(leader_address(cluster, "limits")) as client:
        for partition in (0, 1):
            produce(client, "limits", big, partition=partition)
            produce(client, "limits", big, partition=partition)
        request = fetch_request("limits", 0)
        request["max_bytes"] = 100  # below one batch
        request["topics"][0]["partitions"].append(
            {"partition": 1, "fetch_offset": 0, "partition_max_bytes": 1 << 20}
        )
        first, second = client.request("Fetch", FETCH_V, **request).responses[0].partitions
        # KIP-74: the first partition with data returns one batch anyway; the next nothing.
        assert len(values(first.records)) == 1
        assert second.records == b""
        request["max_bytes"] = 3 * len(big)
        first, second = client.request("Fetch", FETCH_V, **request).responses[0].partitions
        assert (len(values(first.records)), len(values(second.records))) == (2, 1)
        # min_bytes not reached: the answer comes after max_wait with what there is.
        request.update(max_bytes=1 << 20, min_bytes=1 << 20, max_wait=50)
        first, second = client.request("Fetch", FETCH_V, **request).responses[0].partitions
        assert len(values(first.records)) == len(values(second.records)) == 2


def test_admin_requests_on_the_wire(cluster: BlockingCluster) -> None:
    with WireClient(str(cluster.brokers[0])) as client:
        created = client.request(
            "CreateTopics",
            7,
            topics=[
                {
                    "name": "placed",
                    "num_partitions": -1,
                    "replication_factor": -1,
                    "assignments": [
                        {"partition_index": 0, "broker_ids": [3, 1]},
                        {"partition_index": 1, "broker_ids": [2, 3]},
                    ],
                    "configs": [{"name": "message.timestamp.type", "value": "LogAppendTime"}],
                },
                {
                    "name": "bad",
                    "num_partitions": 0,
                    "replication_factor": 1,
                    "assignments": [],
                    "configs": [],
                },
                {
                    "name": "toomany",
                    "num_partitions": 1,
                    "replication_factor": 4,
                    "assignments": [],
                    "configs": [],
                },
            ],
            timeout=5000,
            validate_only=False,
        )
        placed, bad, toomany = created.topics
        assert (placed.error_code, placed.num_partitions, placed.replication_factor) == (0, 2, 2)
        assert bad.error_code == 37  # INVALID_PARTITIONS
        assert toomany.error_code == 38  # INVALID_REPLICATION_FACTOR
        state = cluster.state.topics["placed"]
        assert [p.leader for p in state.partitions] == [3, 2]
        assert state.log_append_time

        epochs = client.request(
            "OffsetForLeaderEpoch",
            4,
            replica_id=-1,
            topics=[
                {
                    "topic": "placed",
                    "partitions": [{"partition": 0, "current_leader_epoch": -1, "leader_epoch": 0}],
                }
            ],
        )
        assert epochs.topics[0].partitions[0].error_code == 6  # broker 1 is not the leader

        deleted = client.request(
            "DeleteTopics", 6, topics=[{"name": None, "topic_id": placed.topic_id}], timeout=5000
        )
        assert (deleted.responses[0].error_code, deleted.responses[0].name) == (0, "placed")
        assert "placed" not in cluster.state.topics


def test_offset_for_leader_epoch_after_a_leader_move(cluster: BlockingCluster) -> None:
    topic = cluster.create_topic("epochs", 1)
    partition = topic.partitions[0]
    with WireClient(leader_address(cluster, "epochs")) as client:
        produce(client, "epochs", one_batch(b"a", b"b"))
    new_leader = next(r for r in partition.replicas if r != partition.leader)
    cluster.call(lambda: cluster.state.move_leader(partition, new_leader))
    with WireClient(leader_address(cluster, "epochs")) as client:
        produce(client, "epochs", one_batch(b"c"))

        def end_of(epoch: int, current: int = -1) -> tuple[int, int, int]:
            response = client.request(
                "OffsetForLeaderEpoch",
                4,
                replica_id=-1,
                topics=[
                    {
                        "topic": "epochs",
                        "partitions": [
                            {"partition": 0, "current_leader_epoch": current, "leader_epoch": epoch}
                        ],
                    }
                ],
            )
            p = response.topics[0].partitions[0]
            return p.error_code, p.leader_epoch, p.end_offset

        assert end_of(0) == (0, 0, 2)
        assert end_of(1) == (0, 1, 3)
        assert end_of(0, current=0)[0] == 74  # FENCED_LEADER_EPOCH: the client is behind
        assert end_of(0, current=5)[0] == 75  # UNKNOWN_LEADER_EPOCH: the client is ahead


def test_a_flood_of_bad_clients_is_one_warning_and_a_count(
    cluster: BlockingCluster, caplog: pytest.LogCaptureFixture
) -> None:
    # One WARNING per bad connection let any client write the broker's log (and block a
    # broker whose stderr nobody read: 5,000 connections of garbage, then no answers).
    address = str(cluster.brokers[0])
    with caplog.at_level(logging.WARNING, logger="pykaf.broker"):
        for _ in range(20):
            with WireClient(address) as bad:
                bad.send_raw(raw_frame(999, 0, 1, b""))
                assert bad.is_closed_by_peer()
    lines = [r.getMessage() for r in caplog.records if "closing connection" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "at most once a minute" in lines[0]
    assert cluster.cluster.servers[0].bad_clients.count == 20


def test_bad_clients_are_said_again_after_a_quiet_minute_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    bad = BadClients(logging.getLogger("test.bad"), 1, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.bad"):
        for i in range(4):
            bad.closed(f"peer:{i}", RemoteProtocolError("a frame too short"))
        now[0] += 61.0
        bad.closed("peer:9", RemoteProtocolError("an unknown API"))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "peer:0" in lines[0]
    assert "peer:9: an unknown API; 3 more connection(s)" in lines[1]
