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
from pykaf.protocol._fetch_response import FetchAnswer
from pykaf.protocol._framing import ClientConnection, Request, Response, ServerConnection
from pykaf.protocol._messages import build_request, decode_response, encode_request
from pykaf.protocol._records import encode_batch, iter_batch_headers

LIMIT = 10.0
VERSIONS = (4, 5, 7, 11, 12, 13, 15, 16, 18)


def fetch_fields(topic: str, topic_id: Any, *, max_bytes: int = 1 << 30) -> dict[str, Any]:
    return {
        "replica_id": -1,
        "max_wait": 0,
        "min_bytes": 1,
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
    request = build_request("Fetch", version, **fetch_fields(name, topic_id))
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
