"""The group calls each real peer supports, and a clear typed error for the rest.

librdkafka's mock cluster has no ListGroups, DescribeGroups, DeleteGroups or OffsetDelete
(and answers "every partition" OffsetFetch with nothing); tansu has no OffsetDelete.
Group joins are slow on tansu, so the groups here have no members: an admin commit
(generation -1) creates them.
"""

from __future__ import annotations

import asyncio

import pytest
from peers.mock_cluster import MockCluster
from peers.tansu import Tansu

from pykaf import AsyncAdmin, AsyncProducer
from pykaf._consumer._records import TopicPartition
from pykaf.errors import AdminItemsError, NoCommonVersionError

pytestmark = pytest.mark.peer

LIMIT = 30.0
FAST = {"retry_backoff": 0.01, "request_timeout": 5.0}


def tp(partition: int) -> TopicPartition:
    return TopicPartition("peer", partition)


async def fill(bootstrap: str) -> None:
    async with AsyncProducer(bootstrap) as producer:
        for i in range(6):
            await producer.produce("peer", b"x", partition=i % 2)
        assert await producer.flush(LIMIT) == 0


async def test_mock_cluster_group_offsets(mock_cluster: MockCluster) -> None:
    mock_cluster.create_topic("peer", 2, 1)
    await fill(mock_cluster.bootstrap)
    async with asyncio.timeout(LIMIT), AsyncAdmin(mock_cluster.bootstrap, **FAST) as admin:
        moved = await admin.alter_group_offsets("g", {tp(0): 1, tp(1): "latest"})
        assert dict(moved) == {tp(0): 1, tp(1): 3}
        offsets = await admin.list_group_offsets("g", [tp(0), tp(1)])
        assert {t.partition: (o.committed, o.end_offset, o.lag) for t, o in offsets.items()} == {
            0: (1, 3, 2),
            1: (3, 3, 0),
        }
        # The mock answers "every partition" with a null list: nothing, not a crash.
        assert dict(await admin.list_group_offsets("g")) == {}
        for outcomes in (
            await admin.describe_groups(["g"]),
            await admin.delete_groups(["g"]),
            await admin.delete_group_offsets("g", [tp(0)]),
        ):
            assert all(isinstance(e, NoCommonVersionError) for e in outcomes.errors.values())
            assert len(outcomes.errors) == len(outcomes)
        with pytest.raises(AdminItemsError, match="ListGroups"):
            await admin.list_groups()


async def test_tansu_groups_without_members(tansu: Tansu) -> None:
    tansu.create_topic("peer", 2)
    await fill(tansu.bootstrap)
    async with asyncio.timeout(LIMIT), AsyncAdmin(tansu.bootstrap, **FAST) as admin:
        assert dict(await admin.alter_group_offsets("g", {tp(0): 1, tp(1): 2})) == {
            tp(0): 1,
            tp(1): 2,
        }
        offsets = await admin.list_group_offsets("g")
        # tansu's end offsets can be too low (DESIGN.md): only the committed ones are exact.
        assert {t.partition: o.committed for t, o in offsets.items()} == {0: 1, 1: 2}
        assert all(o.end_offset is not None for o in offsets.values())
        [listed] = await admin.list_groups()
        assert (listed.group_id, listed.protocol_type) == ("g", "consumer")
        described = (await admin.describe_groups(["g"]))["g"]
        assert (described.state, described.members) == ("Empty", ())
        gone = await admin.delete_group_offsets("g", [tp(0)])
        assert isinstance(gone.errors[tp(0)], NoCommonVersionError)
        assert dict(await admin.delete_groups(["g"])) == {"g": None}
        assert await admin.list_groups() == []
