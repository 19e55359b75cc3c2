"""The pytest fixtures, the interceptor seam and the asyncio Cluster."""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

import pytest
from wire_client import WireClient

from pykaf.broker import BlockingCluster, CloseConnection, Cluster, RequestContext
from pykaf.broker._server import CallNext
from pykaf.protocol._framing import NEED_DATA, ClientConnection
from pykaf.protocol._messages import build_request


async def ask(address: str, api: str, version: int, **fields: Any) -> Any:
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        conn = ClientConnection(client_id="async-test")
        writer.write(conn.send(build_request(api, version, **fields)))
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                conn.receive_data(await asyncio.wait_for(reader.read(65536), 10))
                continue
            return event.response
    finally:
        writer.close()


async def test_async_fixture_serves_in_the_test_loop(kafka_cluster: Cluster) -> None:
    assert len(kafka_cluster.brokers) == 3
    await kafka_cluster.create_topic("async", 2)
    response = await ask(
        str(kafka_cluster.brokers[0]),
        "Metadata",
        12,
        topics=[{"name": "async"}],
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=False,
    )
    assert [b.node_id for b in response.brokers] == [1, 2, 3]
    assert len(response.topics[0].partitions) == 2


def test_sync_fixture(kafka_cluster_sync: BlockingCluster) -> None:
    with WireClient(str(kafka_cluster_sync.brokers[2])) as client:
        assert client.request("ApiVersions", 0).error_code == 0


def _two_free_ports_in_a_row(rng: random.Random) -> int:
    """A base port with base and base + 1 free right now (someone may still take them)."""
    for _ in range(50):
        base = rng.randrange(20_000, 60_000)
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", base))
                b.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base
    raise RuntimeError("no two consecutive free ports found in 50 tries")


async def test_cluster_on_fixed_ports() -> None:
    rng = random.Random()
    for _attempt in range(5):  # a port can be taken between the probe and the bind
        base = _two_free_ports_in_a_row(rng)
        try:
            cluster = Cluster(brokers=2, port=base)
            await cluster.start()
        except OSError:
            continue
        try:
            assert [b.port for b in cluster.brokers] == [base, base + 1]
            assert cluster.bootstrap == f"127.0.0.1:{base},127.0.0.1:{base + 1}"
        finally:
            await cluster.stop()
        return
    pytest.fail("could not start a cluster on fixed ports in 5 attempts")


def test_interceptor_sees_every_request_and_can_answer(cluster: BlockingCluster) -> None:
    seen: list[tuple[int, int]] = []

    async def intercept(ctx: RequestContext, request: Any, call_next: CallNext) -> Any:
        seen.append((ctx.node_id, ctx.api_key))
        if ctx.api_key == 3 and ctx.client_id == "refused":
            raise CloseConnection("test asked for it")
        if ctx.api_key == 60:  # DescribeCluster: an injected error instead of the handler
            return ctx.respond(
                throttle_time=0, error_code=7, error_message="injected", cluster_id="", brokers=[]
            )
        return await call_next(ctx, request)

    cluster.set_interceptor(intercept)
    address = str(cluster.brokers[0])
    with WireClient(address) as client:
        assert client.request("ApiVersions", 0).error_code == 0
        assert (
            client.request(
                "DescribeCluster", 0, include_cluster_authorized_operations=False
            ).error_code
            == 7
        )
    with WireClient(address, client_id="refused") as client:
        client.send("Metadata", 1, topics=None)
        assert client.is_closed_by_peer()
    assert (1, 18) in seen
    assert (1, 60) in seen
    assert (1, 3) in seen
    cluster.set_interceptor(None)
    with WireClient(address) as client:
        response = client.request("DescribeCluster", 0, include_cluster_authorized_operations=False)
        assert response.error_code == 0
        assert len(response.brokers) == 3
