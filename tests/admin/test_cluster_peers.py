"""The admin calls against the real peers: what tansu and librdkafka's mock cluster
answer, and a clear UNSUPPORTED_VERSION error, per item or per broker, for what they
lack (tansu: CreatePartitions, DescribeLogDirs; the mock cluster: every topic and config
API, DescribeCluster, DescribeLogDirs)."""

from __future__ import annotations

import asyncio
from typing import Any, Final

import pytest

from pykaf import AsyncAdmin
from pykaf.admin import ConfigChange, ConfigResource, NewTopic
from pykaf.errors import UnknownTopicOrPartitionError, UnsupportedVersionError

pytestmark = pytest.mark.peer

_LIMIT: Final = 20.0


async def test_tansu(tansu: Any) -> None:
    async with asyncio.timeout(_LIMIT), AsyncAdmin(tansu.bootstrap) as admin:
        created = await admin.create_topics(
            [
                NewTopic(name="orders", partitions=3, replication_factor=1),
                NewTopic(name="audit", partitions=1, replication_factor=1),
            ]
        )
        assert created.errors == {}
        listed = await admin.list_topics()
        assert {n: t.partitions for n, t in listed.items()} == {"orders": 3, "audit": 1}
        described = await admin.describe_topics(["orders", "missing"])
        assert [p.partition for p in described["orders"].partitions] == [0, 1, 2]
        assert described["orders"].topic_id == listed["orders"].topic_id
        assert isinstance(described.errors["missing"], UnknownTopicOrPartitionError)

        cluster = await admin.describe_cluster()
        (broker,) = cluster.brokers
        assert cluster.controller_id == broker.node_id
        assert list(await admin.api_versions()) == [broker.node_id]

        topic = ConfigResource("topic", "orders")
        altered = await admin.alter_configs({topic: [ConfigChange("retention.ms", "3600000")]})
        assert altered.errors == {}
        configs = (await admin.describe_configs([topic]))[topic]
        assert configs["retention.ms"].value == "3600000"

        with pytest.raises(UnsupportedVersionError, match="CreatePartitions"):
            await admin.create_partitions({"orders": 4})  # tansu has none
        dirs = await admin.describe_log_dirs()
        assert isinstance(dirs.errors[broker.node_id], UnsupportedVersionError)

        deleted = await admin.delete_topics(["audit"])
        assert deleted.errors == {}
        assert set(await admin.list_topics()) == {"orders"}


async def test_mock_cluster(mock_cluster: Any) -> None:
    mock_cluster.create_topic("orders", 3, 1)
    async with asyncio.timeout(_LIMIT), AsyncAdmin(mock_cluster.bootstrap) as admin:
        listed = await admin.list_topics()
        assert {n: t.partitions for n, t in listed.items()} == {"orders": 3}
        described = await admin.describe_topics(["orders", "missing"])
        assert [p.leader >= 0 for p in described["orders"].partitions] == [True] * 3
        assert isinstance(described.errors["missing"], UnknownTopicOrPartitionError)

        cluster = await admin.describe_cluster()  # from Metadata: no DescribeCluster
        assert cluster.cluster_id
        node_ids = [b.node_id for b in cluster.brokers]
        assert sorted(await admin.api_versions()) == node_ids

        # The APIs the mock lacks: each call says so with a typed error, before sending.
        with pytest.raises(UnsupportedVersionError, match="CreateTopics"):
            await admin.create_topics(["new"])
        with pytest.raises(UnsupportedVersionError, match="DeleteTopics"):
            await admin.delete_topics(["orders"])
        with pytest.raises(UnsupportedVersionError, match="CreatePartitions"):
            await admin.create_partitions({"orders": 4})
        topic = ConfigResource("topic", "orders")
        described_configs = await admin.describe_configs([topic])
        assert isinstance(described_configs.errors[topic], UnsupportedVersionError)
        altered = await admin.alter_configs({topic: [ConfigChange("retention.ms", "1")]})
        assert isinstance(altered.errors[topic], UnsupportedVersionError)
        dirs = await admin.describe_log_dirs()
        assert sorted(dirs.errors) == node_ids
        assert all(isinstance(e, UnsupportedVersionError) for e in dirs.errors.values())
