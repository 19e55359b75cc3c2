"""The cluster through AsyncAdmin and Admin against the embedded broker: describe_cluster
(DescribeCluster, and Metadata where a broker lacks it), api_versions of every broker,
describe_log_dirs in memory and on disk, and a clear per-broker error where a broker
lacks DescribeLogDirs."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path
from typing import Any, Final

import pytest

from pykaf import Admin, AsyncAdmin, AsyncProducer
from pykaf.admin import ConfigResource
from pykaf.broker import BlockingCluster, CallNext, Cluster, RequestContext
from pykaf.errors import UnsupportedVersionError

_LIMIT = 20.0
API_VERSIONS: Final = 18
METADATA: Final = 3
DESCRIBE_LOG_DIRS: Final = 35
DESCRIBE_CLUSTER: Final = 60


def _hiding(api_key: int, seen: list[int]) -> Any:
    """An interceptor making the brokers look older: ``api_key`` is not offered."""

    async def intercept(ctx: RequestContext, request: Any, call_next: CallNext) -> Any:
        seen.append(ctx.api_key)
        response = await call_next(ctx, request)
        if ctx.api_key == API_VERSIONS:
            keys = tuple(k for k in response.api_keys if k.api_key != api_key)
            return dataclasses.replace(response, api_keys=keys)
        return response

    return intercept


async def test_describe_cluster(kafka_cluster: Cluster) -> None:
    seen: list[int] = []
    kafka_cluster.set_interceptor(_hiding(-1, seen))
    async with asyncio.timeout(_LIMIT), AsyncAdmin(kafka_cluster.bootstrap) as admin:
        described = await admin.describe_cluster()
    state = kafka_cluster.state
    assert described.cluster_id == state.cluster_id
    assert described.controller_id == state.controller_id
    assert [(b.node_id, b.host, b.port) for b in described.brokers] == [
        (a.node_id, a.host, a.port) for a in kafka_cluster.brokers
    ]
    assert DESCRIBE_CLUSTER in seen


@pytest.mark.parametrize("processed", [False, True])
async def test_a_read_whose_connection_broke_is_asked_again(
    kafka_cluster: Cluster, processed: bool
) -> None:
    # Before: BrokerConnectionError, where asking again costs nothing (an admin fault
    # sweep: describe_cluster raised in 4 of 40 rounds, describe_configs failed its item).
    await kafka_cluster.create_topic("read", 1)
    async with asyncio.timeout(_LIMIT), AsyncAdmin(kafka_cluster.bootstrap) as admin:
        await admin.describe_cluster()  # connected
        kafka_cluster.faults.drop_connection_after("DescribeCluster", before_response=processed)
        described = await admin.describe_cluster()
        kafka_cluster.faults.drop_connection_after("DescribeConfigs", before_response=processed)
        configs = await admin.describe_configs([ConfigResource("topic", "read")])
    assert described.cluster_id == kafka_cluster.state.cluster_id
    assert configs.errors == {}
    assert kafka_cluster.faults.summary()["drops"] == {}  # both connections were dropped


async def test_describe_cluster_from_metadata_on_an_older_broker(kafka_cluster: Cluster) -> None:
    seen: list[int] = []
    kafka_cluster.set_interceptor(_hiding(DESCRIBE_CLUSTER, seen))
    async with asyncio.timeout(_LIMIT), AsyncAdmin(kafka_cluster.bootstrap) as admin:
        described = await admin.describe_cluster()
    assert described.cluster_id == kafka_cluster.state.cluster_id
    assert described.controller_id == kafka_cluster.state.controller_id
    assert [b.node_id for b in described.brokers] == [1, 2, 3]
    assert DESCRIBE_CLUSTER not in seen
    assert METADATA in seen


async def test_api_versions_of_every_broker(kafka_cluster: Cluster) -> None:
    async with asyncio.timeout(_LIMIT), AsyncAdmin(kafka_cluster.bootstrap) as admin:
        versions = await admin.api_versions()
    assert versions.errors == {}
    assert sorted(versions) == [1, 2, 3]
    for node_id, broker in versions.items():
        assert broker.node_id == node_id
        assert broker.version("IncrementalAlterConfigs") >= 0
        assert broker.version("DescribeLogDirs") >= 0


async def test_describe_log_dirs_in_memory(kafka_cluster: Cluster) -> None:
    await kafka_cluster.create_topic("sized", 2, replication_factor=2)
    async with asyncio.timeout(_LIMIT):
        async with AsyncProducer(kafka_cluster.bootstrap) as producer:
            for i in range(20):
                await producer.produce("sized", b"x" * 100, partition=i % 2)
        async with AsyncAdmin(kafka_cluster.bootstrap) as admin:
            dirs = await admin.describe_log_dirs()
            only_two = await admin.describe_log_dirs([2])
    assert sorted(dirs) == [1, 2, 3]
    topic = kafka_cluster.state.topics["sized"]
    for node_id in (1, 2, 3):
        (log_dir,) = dirs[node_id]
        assert log_dir.path == f"memory:broker-{node_id}"
        assert log_dir.total_bytes is None
        expected = {
            p.index: p.log.bytes_available(p.log.log_start_offset)
            for p in topic.partitions
            if node_id in p.replicas
        }
        assert {p.partition: p.size for p in log_dir.partitions} == expected
    assert sum(p.size for p in dirs[1][0].partitions + dirs[2][0].partitions) > 2000
    assert list(only_two) == [2]


async def test_describe_log_dirs_on_disk(tmp_path: Path) -> None:
    async with asyncio.timeout(_LIMIT), Cluster(brokers=1, data_dir=tmp_path) as cluster:
        await cluster.create_topic("kept", 1)
        async with AsyncAdmin(cluster.bootstrap) as admin:
            (log_dir,) = (await admin.describe_log_dirs())[1]
    assert log_dir.path == os.fspath(tmp_path.resolve())
    assert log_dir.total_bytes is not None
    assert log_dir.usable_bytes is not None
    assert 0 < log_dir.usable_bytes <= log_dir.total_bytes
    assert [(p.topic, p.partition) for p in log_dir.partitions] == [("kept", 0)]


async def test_describe_log_dirs_where_a_broker_lacks_it(kafka_cluster: Cluster) -> None:
    seen: list[int] = []
    kafka_cluster.set_interceptor(_hiding(DESCRIBE_LOG_DIRS, seen))
    async with asyncio.timeout(_LIMIT), AsyncAdmin(kafka_cluster.bootstrap) as admin:
        dirs = await admin.describe_log_dirs([1, 3])
    assert dirs.ok == {}
    for node_id in (1, 3):
        error = dirs.errors[node_id]
        assert isinstance(error, UnsupportedVersionError)
        assert f"broker {node_id}" in str(error)
        assert "DescribeLogDirs" in str(error)
    assert DESCRIBE_LOG_DIRS not in seen


async def test_unknown_broker_fails_alone(kafka_cluster: Cluster) -> None:
    async with asyncio.timeout(_LIMIT), AsyncAdmin(kafka_cluster.bootstrap) as admin:
        dirs = await admin.describe_log_dirs([1, 9])
    assert list(dirs.ok) == [1]
    assert "node id 9" in str(dirs.errors[9])


@pytest.mark.parametrize(
    ("brokers", "error", "says"),
    [
        (1, TypeError, "wrap a single"),
        (["1"], ValueError, "node id"),
        ([-1], ValueError, "node id"),
        ([1, 1], ValueError, "repeated"),
    ],
)
async def test_bad_input_is_refused_before_sending(brokers: Any, error: Any, says: str) -> None:
    async with AsyncAdmin("127.0.0.1:1", request_timeout=1) as admin:
        with pytest.raises(error) as caught:
            await admin.describe_log_dirs(brokers)
    assert says in str(caught.value)


def test_the_blocking_admin(kafka_cluster_sync: BlockingCluster) -> None:
    with Admin(kafka_cluster_sync.bootstrap, request_timeout=_LIMIT) as admin:
        described = admin.describe_cluster()
        versions = admin.api_versions()
        dirs = admin.describe_log_dirs()
    assert described.cluster_id == kafka_cluster_sync.state.cluster_id
    assert sorted(versions.ok) == [b.node_id for b in described.brokers]
    assert sorted(dirs.ok) == [1, 2, 3]
