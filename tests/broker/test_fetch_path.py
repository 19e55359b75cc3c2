"""The broker's fetch path: stored batches go out as they are, in every Fetch version,
and interceptors still see kio entities."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest

from pykaf._errors import LocalProtocolError
from pykaf.broker import Cluster
from pykaf.broker._registry import ConnectionInfo, RequestContext
from pykaf.broker._server import BrokerServer
from pykaf.broker.apis.fetch import ANSWER_TARGET
from pykaf.protocol._fetch_response import FetchAnswer
from pykaf.protocol._framing import ClientConnection, Request, Response, ServerConnection
from pykaf.protocol._messages import build_request, decode_response, encode_request
from pykaf.protocol._records import encode_batch, iter_batch_headers

LIMIT = 10.0
VERSIONS = (4, 5, 7, 11, 12, 13, 15, 16, 18)


def fetch_fields(
    topic: str, topic_id: Any, *, max_bytes: int = 1 << 30, min_bytes: int = 1
) -> dict[str, Any]:
    return {
        "replica_id": -1,
        "max_wait": 0,
        "min_bytes": min_bytes,
        "max_bytes": max_bytes,
        "isolation_level": 0,
        "session_id": 0,
        "session_epoch": -1,
        "topics": [
            {
                "topic": topic,
                "topic_id": topic_id,
                "partitions": [
                    {"partition": 0, "fetch_offset": 0, "partition_max_bytes": max_bytes}
                ],
            }
        ],
        "forgotten_topics_data": [],
        "rack_id": "",
    }


async def stored(cluster: Cluster, topic: str, *sizes: int) -> tuple[list[bytearray], BrokerServer]:
    """Topic ``topic`` with one batch per size (a value of that many bytes), appended to
    the log directly; returns the stored batch objects and the leader's listener."""
    await cluster.create_topic(topic, 1, replication_factor=1)
    part = cluster.state.partition(topic, 0)
    assert part is not None
    batches = []
    for size in sizes:
        data = bytearray(encode_batch([(None, b"v" * size, None, 1000)]))
        [(_, header)] = list(iter_batch_headers(data))
        assert part.log.append(data, header, leader_epoch=0, log_append_time=None).error == 0
        batches.append(data)
    [server] = [s for s in cluster.servers if s.node.node_id == part.leader]
    return batches, server


def context(cluster: Cluster, server: BrokerServer, version: int) -> RequestContext:
    return RequestContext(
        broker=server,
        state=cluster.state,
        connection=ConnectionInfo(connection_id=1, peer="test"),
        api_key=1,
        api_version=version,
        correlation_id=1,
        client_id="test",
    )


async def test_a_fetch_answer_holds_the_stored_batches_themselves(kafka_cluster: Cluster) -> None:
    batches, server = await stored(kafka_cluster, "served", 10, 20)
    topic_id = kafka_cluster.state.topics["served"].topic_id
    request = build_request("Fetch", 16, **fetch_fields("served", topic_id))
    answer = await server.dispatch(context(kafka_cluster, server, 16), request)
    assert isinstance(answer, FetchAnswer)
    [topic] = answer.topics
    [partition] = topic.partitions
    assert partition.records is not None
    assert len(partition.records) == 2
    # Not copies: the very objects the log holds (no decode, no join).
    assert partition.records[0] is batches[0]
    assert partition.records[1] is batches[1]


async def test_an_interceptor_sees_a_kio_fetch_response(kafka_cluster: Cluster) -> None:
    batches, server = await stored(kafka_cluster, "watched", 10, 20)
    seen: list[Any] = []

    async def spy(ctx: RequestContext, request: Any, call_next: Any) -> Any:
        response = await call_next(ctx, request)
        seen.append(response)
        return response

    kafka_cluster.set_interceptor(spy)
    request = build_request("Fetch", 12, **fetch_fields("watched", None))
    await server.dispatch(context(kafka_cluster, server, 12), request)
    [response] = seen
    assert type(response).__name__ == "FetchResponse"
    assert response.responses[0].partitions[0].records == b"".join(batches)


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


# Big batches over the listener's 8 MiB high water (the writer drains between buffers),
# a small one between them, and many small ones (joined before writing): every byte must
# arrive, in order.
SHAPES = {"big": (4 << 20, 100, 5 << 20), "small": (100,) * 300 + (20_000,) + (50,) * 300}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("version", VERSIONS)
async def test_every_version_reads_back_with_kio(
    kafka_cluster: Cluster, version: int, shape: str
) -> None:
    name = f"{shape}{version}"
    batches, server = await stored(kafka_cluster, name, *SHAPES[shape])
    topic_id = kafka_cluster.state.topics[name].topic_id
    # min_bytes asks for everything: one answer of it all, over the 8 MiB high water
    # (without it the answer target would split the big shape into several answers).
    everything = sum(map(len, batches))
    request = build_request("Fetch", version, **fetch_fields(name, topic_id, min_bytes=everything))
    async with asyncio.timeout(LIMIT):
        reader, writer = await asyncio.open_connection(server.node.host, server.node.port)
        try:
            writer.write(encode_request(request, correlation_id=7, client_id="test"))
            frame = await read_frame(reader)
        finally:
            writer.close()
    correlation_id, response = decode_response(1, version, frame, strict=True)
    assert correlation_id == 7
    [partition] = response.responses[0].partitions
    assert partition.error_code == 0
    assert partition.high_watermark == len(SHAPES[shape])
    assert partition.records == b"".join(batches)


def test_the_server_connection_frames_fetch_answers_in_request_order() -> None:
    client, server = ClientConnection(client_id="c"), ServerConnection()
    fetch = build_request("Fetch", 12, **fetch_fields("t", None))
    server.receive_data(client.send(fetch) + client.send(build_request("ApiVersions", 0)))
    first, second = server.next_event(), server.next_event()
    assert isinstance(first, Request)
    assert isinstance(second, Request)
    with pytest.raises(LocalProtocolError, match="out of order"):
        server.send_fetch_response(second, FetchAnswer())
    client.receive_data(b"".join(server.send_fetch_response(first, FetchAnswer(session_id=5))))
    event = client.next_event()
    assert isinstance(event, Response)
    assert event.response.session_id == 5
    with pytest.raises(LocalProtocolError, match="a Fetch answer given for API key 18"):
        server.send_fetch_response(second, FetchAnswer())


async def spread(
    cluster: Cluster, topic: str, sizes_per_partition: list[list[int]]
) -> tuple[list[list[bytearray]], BrokerServer]:
    """Topic ``topic`` with one partition per list of batch sizes, every partition led by
    one broker (so one Fetch asks for all of them); returns the stored batches and that
    broker's listener."""
    created = await cluster.create_topic(topic, len(sizes_per_partition), replication_factor=1)
    leader = created.partitions[0].leader
    stored_batches = []
    for part, sizes in zip(created.partitions, sizes_per_partition, strict=True):
        cluster.state.move_leader(part, leader)
        batches = []
        for size in sizes:
            data = bytearray(encode_batch([(None, b"v" * size, None, 1000)]))
            [(_, header)] = list(iter_batch_headers(data))
            result = part.log.append(
                data, header, leader_epoch=part.leader_epoch, log_append_time=None
            )
            assert result.error == 0
            batches.append(data)
        stored_batches.append(batches)
    [server] = [s for s in cluster.servers if s.node.node_id == leader]
    return stored_batches, server


async def fetch_partitions(
    cluster: Cluster,
    server: BrokerServer,
    topic: str,
    offsets: list[int],
    *,
    min_bytes: int = 1,
    max_wait: int = 0,
) -> list[list[bytes | bytearray]]:
    """One Fetch (v16) of every partition from ``offsets``, with a librdkafka consumer's
    limits (50 MiB an answer, 10 MiB a partition): each partition's batches."""
    fields = fetch_fields(topic, cluster.state.topics[topic].topic_id, min_bytes=min_bytes)
    fields.update(max_bytes=50 << 20, max_wait=max_wait)
    fields["topics"][0]["partitions"] = [
        {"partition": p, "fetch_offset": offset, "partition_max_bytes": 10 << 20}
        for p, offset in enumerate(offsets)
    ]
    answer = await server.dispatch(
        context(cluster, server, 16), build_request("Fetch", 16, **fields)
    )
    assert isinstance(answer, FetchAnswer)
    [topic_answer] = answer.topics
    return [list(p.records or ()) for p in topic_answer.partitions]


async def test_an_answer_shares_its_bytes_among_the_requested_partitions(
    kafka_cluster: Cluster,
) -> None:
    # 4 partitions of 10 batches each, 2.5x the answer target in all: a client allowing
    # 50 MiB gets answers of about ANSWER_TARGET, every partition in each of them.
    batch = ANSWER_TARGET // 16
    stored_batches, server = await spread(kafka_cluster, "shared", [[batch] * 10] * 4)
    share = ANSWER_TARGET // 4
    offsets = [0, 0, 0, 0]
    received: list[list[bytes | bytearray]] = [[], [], [], []]
    for _ in range(10):  # bounded: 10 batches a partition, at least one an answer
        if offsets == [10] * 4:
            break
        answer = await fetch_partitions(kafka_cluster, server, "shared", offsets)
        assert sum(len(b) for part in answer for b in part) <= ANSWER_TARGET
        for index, part in enumerate(answer):
            assert 0 < sum(map(len, part)) <= share or offsets[index] == 10
            received[index].extend(part)
            offsets[index] += len(part)
    # In order, whole, nothing lost or repeated.
    assert received == stored_batches


async def test_a_batch_larger_than_the_share_is_still_served(kafka_cluster: Cluster) -> None:
    # Partition 1's batches are over its share (half the target): it still gets one per
    # answer, as the client's limits allow, and partition 0 its share.
    small, big = ANSWER_TARGET // 8, ANSWER_TARGET
    stored_batches, server = await spread(kafka_cluster, "lopsided", [[small] * 8, [big] * 2])
    first, second = await fetch_partitions(kafka_cluster, server, "lopsided", [0, 0])
    assert second == stored_batches[1][:1]
    assert first == stored_batches[0][: len(first)]
    assert 0 < sum(map(len, first)) <= ANSWER_TARGET // 2


async def test_min_bytes_beyond_the_answer_target_is_answered_from_the_client_limits(
    kafka_cluster: Cluster,
) -> None:
    # min_bytes above what the shared read gathers but within what is stored: the answer
    # holds min_bytes at once (the target must not make the fetch wait for max_wait and
    # then answer short).
    stored_batches, server = await spread(kafka_cluster, "needy", [[ANSWER_TARGET // 4] * 12])
    wanted = ANSWER_TARGET + ANSWER_TARGET // 2
    [part] = await fetch_partitions(
        kafka_cluster, server, "needy", [0], min_bytes=wanted, max_wait=200
    )
    assert sum(map(len, part)) >= wanted
    assert part == stored_batches[0][: len(part)]
