"""AsyncClient against both real peers: librdkafka's mock cluster and tansu.

Bootstrap, version negotiation, metadata for 1 and 100 topics, a raw Produce of a batch
from pykaf's encoder, a raw Fetch that returns it byte for byte, ListOffsets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from aio_requests import create_topics, fetch, list_offsets, metadata, produce

from pykaf._client._async_client import AsyncClient
from pykaf._client._targets import Leader
from pykaf.protocol._records import decode_batches, encode_batch

pytestmark = pytest.mark.peer

_LIMIT = 20.0  # seconds: a bound on each test's client work, far above what it needs


@dataclass
class Peer:
    name: str
    bootstrap: str
    create_topic: Callable[[str, int], None]
    # tansu's high watermarks and latest offsets can be too low (see DESIGN.md).
    exact_offsets: bool
    # The mock cluster cannot create topics through CreateTopics.
    create_topics_api: bool


@pytest.fixture(params=["mock_cluster", "tansu"])
def peer(request: pytest.FixtureRequest) -> Iterator[Peer]:
    if request.param == "mock_cluster":
        cluster = request.getfixturevalue("mock_cluster")
        yield Peer(
            name="mock_cluster",
            bootstrap=cluster.bootstrap,
            create_topic=lambda t, n: cluster.create_topic(t, n, 1),
            exact_offsets=True,
            create_topics_api=False,
        )
    else:
        broker = request.getfixturevalue("tansu")
        yield Peer(
            name="tansu",
            bootstrap=broker.bootstrap,
            create_topic=broker.create_topic,
            exact_offsets=False,
            create_topics_api=True,
        )


async def test_bootstrap_and_negotiation(peer: Peer) -> None:
    async with asyncio.timeout(_LIMIT), AsyncClient(peer.bootstrap) as client:
        versions = await client.api_versions()
        # Every API negotiated is within both sides' ranges, and the basics are there.
        for key, version in versions.negotiated.items():
            low, high = versions.ranges[key]
            assert low <= version <= high
        for api in ("ApiVersions", "Metadata", "Produce", "Fetch", "ListOffsets"):
            assert versions.version(api) >= 0
        view = await client.metadata([])
        assert view.brokers  # a broker-only answer names the brokers
        for node_id in view.brokers:
            node_versions = await client.api_versions(node_id)
            assert node_versions.node_id == node_id
            assert node_versions.address == str(view.brokers[node_id].address)


async def test_metadata_for_one_topic(peer: Peer) -> None:
    peer.create_topic("one", 3)
    async with asyncio.timeout(_LIMIT), AsyncClient(peer.bootstrap) as client:
        view = await client.metadata(["one"])
        info = view.topics["one"]
        assert info.error_code == 0
        assert [p.partition for p in info.partitions] == [0, 1, 2]
        for part in info.partitions:
            assert part.leader in view.brokers
            assert part.leader_epoch >= 0
        assert info.topic_id is not None
        # A raw Metadata request at the negotiated version says the same.
        version = (await client.api_versions()).version("Metadata")
        raw = await client.request(metadata(version, ["one"]))
        (topic,) = raw.topics
        assert topic.name == "one"
        assert sorted(int(p.leader_id) for p in topic.partitions) == sorted(
            p.leader for p in info.partitions
        )


async def test_metadata_for_a_hundred_topics(peer: Peer) -> None:
    names = [f"many-{i:03d}" for i in range(100)]
    async with asyncio.timeout(_LIMIT), AsyncClient(peer.bootstrap) as client:
        if peer.create_topics_api:
            version = (await client.api_versions()).version("CreateTopics")
            response = await client.request(create_topics(version, names, 2), to="controller")
            assert {t.name for t in response.topics} == set(names)
            assert all(int(t.error_code) == 0 for t in response.topics)
        else:
            for name in names:
                peer.create_topic(name, 2)
        view = await client.metadata(names)
        assert sorted(view.topics) == names
        for info in view.topics.values():
            assert info.error_code == 0
            assert len(info.partitions) == 2
        everything = await client.metadata()
        assert set(names) <= set(everything.topics)


async def test_raw_produce_fetch_byte_for_byte_and_list_offsets(peer: Peer) -> None:
    peer.create_topic("raw", 2)
    records = [
        (b"k%d" % i, b"value-%d" % i, [("h", b"x")], 1_700_000_000_000 + i) for i in range(5)
    ]
    async with asyncio.timeout(_LIMIT), AsyncClient(peer.bootstrap) as client:
        view = await client.metadata(["raw"])
        info = view.topics["raw"]
        part = info.partitions[1]
        # The batch carries the leader epoch a broker stamps on append, so the stored
        # batch can equal the sent one byte for byte.
        batch = encode_batch(records, partition_leader_epoch=part.leader_epoch)
        versions = await client.api_versions(part.leader)
        answer = await client.request(
            produce(versions.version("Produce"), "raw", info.topic_id, 1, batch),
            to=Leader("raw", 1),
            purpose="produce",
        )
        (presp,) = answer.responses[0].partition_responses
        assert int(presp.error_code) == 0
        assert presp.base_offset == 0

        answer = await client.request(
            fetch(versions.version("Fetch"), "raw", info.topic_id, 1),
            to=Leader("raw", 1),
            purpose="fetch",
        )
        (fresp,) = answer.responses[0].partitions
        assert int(fresp.error_code) == 0
        assert fresp.records == batch  # both peers store the batch as sent
        (decoded,) = decode_batches(fresp.records)
        assert [(r.key, r.value, r.timestamp) for r in decoded.records] == [
            (k, v, ts) for k, v, _, ts in records
        ]
        assert [list(r.headers) for r in decoded.records] == [[("h", b"x")]] * 5

        version = versions.version("ListOffsets")
        earliest = await client.request(list_offsets(version, "raw", 1, -2), to=Leader("raw", 1))
        latest = await client.request(list_offsets(version, "raw", 1, -1), to=Leader("raw", 1))
        (low,) = earliest.topics[0].partitions
        (high,) = latest.topics[0].partitions
        assert int(low.error_code) == int(high.error_code) == 0
        assert low.offset == 0
        if peer.exact_offsets:
            assert high.offset == len(records)
        else:
            assert 0 < high.offset <= len(records)
