"""``list_offsets`` on each real peer; max timestamp on a broker below ListOffsets v7 is a
typed error for that partition alone. (DeleteRecords: neither peer has it; tansu drops
the connection on it and on a max-timestamp query, so neither is asked of tansu.)"""

from __future__ import annotations

import asyncio

import pytest
from peers.mock_cluster import MockCluster
from peers.tansu import Tansu

from pykaf import AsyncAdmin, AsyncProducer
from pykaf._consumer._records import TopicPartition
from pykaf.errors import NoCommonVersionError, UnsupportedVersionError

pytestmark = pytest.mark.peer

LIMIT = 30.0
FAST = {"retry_backoff": 0.01, "request_timeout": 5.0}
LIST_OFFSETS = 2


def tp(partition: int) -> TopicPartition:
    return TopicPartition("peer", partition)


async def fill(bootstrap: str) -> None:
    async with AsyncProducer(bootstrap) as producer:
        for i in range(6):
            await producer.produce("peer", b"x", partition=0, timestamp=1_000 + i)
        assert await producer.flush(LIMIT) == 0


async def test_mock_cluster_offsets_and_an_old_list_offsets(
    mock_cluster_factory: object,
) -> None:
    assert callable(mock_cluster_factory)
    new: MockCluster = mock_cluster_factory()
    old: MockCluster = mock_cluster_factory()
    old.set_apiversion(LIST_OFFSETS, 0, 6)
    for cluster in (new, old):
        cluster.create_topic("peer", 2, 1)
        await fill(cluster.bootstrap)
    async with asyncio.timeout(LIMIT), AsyncAdmin(new.bootstrap, **FAST) as admin:
        listed = await admin.list_offsets({tp(0): "latest", tp(1): "earliest"})
        assert (listed[tp(0)].offset, listed[tp(1)].offset) == (6, 0)
        # The mock answers time lookups (max timestamp included) with -1: asked, not checked.
        assert (await admin.list_offsets({tp(0): "max_timestamp"}))[tp(0)].offset in (-1, 5)
        assert isinstance(
            (await admin.delete_records({tp(0): 1})).errors[tp(0)], NoCommonVersionError
        )
    async with asyncio.timeout(LIMIT), AsyncAdmin(old.bootstrap, **FAST) as admin:
        listed = await admin.list_offsets({tp(0): "max_timestamp", tp(1): "latest"})
        assert listed.ok[tp(1)].offset == 0
        with pytest.raises(UnsupportedVersionError, match="max_timestamp needs ListOffsets v7"):
            listed[tp(0)]


async def test_tansu_offsets(tansu: Tansu) -> None:
    tansu.create_topic("peer", 2)
    await fill(tansu.bootstrap)
    async with asyncio.timeout(LIMIT), AsyncAdmin(tansu.bootstrap, **FAST) as admin:
        listed = await admin.list_offsets({tp(0): "earliest", tp(1): "earliest"})
        assert (listed[tp(0)].offset, listed[tp(1)].offset) == (0, 0)
        # tansu's latest offsets can be too low (DESIGN.md): only answered, not exact.
        assert (await admin.list_offsets({tp(0): "latest"}))[tp(0)].offset >= 0
