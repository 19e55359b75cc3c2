"""``list_offsets`` and ``delete_records`` against the embedded broker, async and blocking.

Answers match what confluent-kafka reads on the same cluster; one bad partition fails
alone; leaders that moved are asked again (bounded); bad input is refused before sending.
"""

from __future__ import annotations

import asyncio
from typing import Any

import confluent_kafka
import pytest

from pykaf import Admin, AsyncAdmin, AsyncProducer
from pykaf._admin._item_retries import MAX_ATTEMPTS
from pykaf._consumer._records import TopicPartition
from pykaf.admin import ListedOffset, OffsetSpec
from pykaf.broker import BlockingCluster, Cluster
from pykaf.errors import (
    NotLeaderOrFollowerError,
    OffsetOutOfRangeError,
    UnknownTopicOrPartitionError,
)

LIMIT = 20.0
FAST = {"retry_backoff": 0.01, "request_timeout": 5.0}
NOT_LEADER_OR_FOLLOWER = 6
TS = 1_000  # record i of a partition has timestamp TS + 10 * i


def tp(partition: int, topic: str = "log") -> TopicPartition:
    return TopicPartition(topic, partition)


async def fill(cluster: Cluster, counts: dict[int, int], topic: str = "log") -> None:
    await cluster.create_topic(topic, len(counts), replication_factor=3)
    async with AsyncProducer(cluster.bootstrap) as producer:
        for partition, count in counts.items():
            for i in range(count):
                await producer.produce(topic, b"x", partition=partition, timestamp=TS + 10 * i)
        assert await producer.flush(LIMIT) == 0


def confluent_view(bootstrap: str, topic: str, partitions: int) -> dict[int, tuple[int, int, int]]:
    """(low, high, offset for time TS + 25) per partition, as librdkafka reads them."""
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "view"})
    try:
        out = {}
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(
                confluent_kafka.TopicPartition(topic, p), timeout=LIMIT
            )
            [at] = consumer.offsets_for_times(
                [confluent_kafka.TopicPartition(topic, p, TS + 25)], timeout=LIMIT
            )
            out[p] = (low, high, at.offset)
        return out
    finally:
        consumer.close()


async def test_list_offsets_earliest_latest_by_time_max_timestamp(kafka_cluster: Cluster) -> None:
    await fill(kafka_cluster, {0: 8, 1: 3, 2: 0})
    async with asyncio.timeout(LIMIT), AsyncAdmin(kafka_cluster.bootstrap, **FAST) as admin:
        listed = await admin.list_offsets(
            {
                tp(0): "earliest",
                tp(1): "latest",
                tp(2): OffsetSpec.LATEST,
                tp(5): "latest",
                tp(0, "missing"): "earliest",
            }
        )
        assert listed[tp(0)] == ListedOffset(
            topic="log", partition=0, offset=0, timestamp=None, leader_epoch=0
        )
        assert (listed[tp(1)].offset, listed[tp(2)].offset) == (3, 0)
        for bad in (tp(5), tp(0, "missing")):
            with pytest.raises(UnknownTopicOrPartitionError, match=bad.topic):
                listed[bad]

        by_time = await admin.list_offsets(
            {tp(0): OffsetSpec.at(TS + 25), tp(1): OffsetSpec.at(TS + 10**6)}
        )
        assert (by_time[tp(0)].offset, by_time[tp(0)].timestamp) == (3, TS + 30)
        assert by_time[tp(1)].offset == -1  # nothing at or after that time
        newest = await admin.list_offsets({tp(0): "max_timestamp"}, isolation="read_committed")
        assert (newest[tp(0)].offset, newest[tp(0)].timestamp) == (7, TS + 70)

        theirs = await asyncio.to_thread(confluent_view, kafka_cluster.bootstrap, "log", 2)
        ours = await admin.list_offsets({tp(0): "latest", tp(1): "latest"})
        ends = {p: ours[tp(p)].offset for p in range(2)}
        assert ends == {p: high for p, (_, high, _) in theirs.items()}
        assert theirs[0][2] == by_time[tp(0)].offset


async def test_delete_records_moves_the_low_watermark(kafka_cluster: Cluster) -> None:
    await fill(kafka_cluster, {0: 8, 1: 3})
    async with asyncio.timeout(LIMIT), AsyncAdmin(kafka_cluster.bootstrap, **FAST) as admin:
        deleted = await admin.delete_records({tp(0): 5, tp(1): -1, tp(3): 1})
        assert deleted.ok == {tp(0): 5, tp(1): 3}
        assert isinstance(deleted.errors[tp(3)], UnknownTopicOrPartitionError)
        past = await admin.delete_records({tp(0): 99})
        with pytest.raises(OffsetOutOfRangeError, match="below 99"):
            past[tp(0)]
        earliest = await admin.list_offsets({tp(0): "earliest", tp(1): "earliest"})
        assert (earliest[tp(0)].offset, earliest[tp(1)].offset) == (5, 3)
        theirs = await asyncio.to_thread(confluent_view, kafka_cluster.bootstrap, "log", 2)
        assert (theirs[0][0], theirs[1][0]) == (5, 3)


async def test_leader_moves_are_asked_again_and_bounded(kafka_cluster: Cluster) -> None:
    await fill(kafka_cluster, {0: 4, 1: 4})
    faults = kafka_cluster.faults
    async with asyncio.timeout(LIMIT), AsyncAdmin(kafka_cluster.bootstrap, **FAST) as admin:
        assert (await admin.list_offsets({tp(0): "latest"}))[tp(0)].offset == 4  # cached
        leader = kafka_cluster.state.partition("log", 0).leader
        faults.move_leader("log", 0, next(n for n in (1, 2, 3) if n != leader))
        assert (await admin.list_offsets({tp(0): "latest"}))[tp(0)].offset == 4
        faults.move_leader("log", 0, leader)
        assert dict(await admin.delete_records({tp(0): 1})) == {tp(0): 1}

        faults.push_errors("ListOffsets", [NOT_LEADER_OR_FOLLOWER] * 2)
        assert (await admin.list_offsets({tp(1): "earliest"}))[tp(1)].offset == 0
        faults.push_errors("DeleteRecords", [NOT_LEADER_OR_FOLLOWER] * (MAX_ATTEMPTS + 3))
        stuck = await admin.delete_records({tp(1): 2})
        with pytest.raises(NotLeaderOrFollowerError, match="log-1"):
            stuck[tp(1)]
        assert faults.pending_errors("DeleteRecords") == 3
        faults.clear()


async def test_a_retry_backoff_above_a_second_is_taken(kafka_cluster: Cluster) -> None:
    # Before: every call that asked again (settle) raised ValueError("maximum backoff
    # (1.0) must be >= the initial (2.0)") with retry_backoff=2.0, found in review.
    await fill(kafka_cluster, {0: 4, 1: 4})
    async with (
        asyncio.timeout(LIMIT),
        AsyncAdmin(kafka_cluster.bootstrap, retry_backoff=2.0) as admin,
    ):
        assert (await admin.list_offsets({tp(0): "latest"}))[tp(0)].offset == 4


def test_blocking_admin_lists_and_deletes(kafka_cluster_sync: BlockingCluster) -> None:
    kafka_cluster_sync.create_topic("log", 1, replication_factor=1)
    producer = confluent_kafka.Producer({"bootstrap.servers": kafka_cluster_sync.bootstrap})
    for i in range(6):
        producer.produce("log", b"x", partition=0, timestamp=TS + 10 * i)
    assert producer.flush(LIMIT) == 0
    with Admin(kafka_cluster_sync.bootstrap, **FAST) as admin:
        assert admin.list_offsets({tp(0): "latest"})[tp(0)].offset == 6
        assert dict(admin.delete_records({tp(0): 2})) == {tp(0): 2}
        assert admin.list_offsets({tp(0): "earliest"})[tp(0)].offset == 2
        assert admin.list_offsets({tp(0): OffsetSpec.at(TS + 40)})[tp(0)].offset == 4


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda a: a.list_offsets([tp(0)]), TypeError, "mapping"),
        (lambda a: a.list_offsets({("log", 0): "latest"}), TypeError, "TopicPartition"),
        (lambda a: a.list_offsets({tp(0): "newest"}), ValueError, "offset spec"),
        (lambda a: a.list_offsets({tp(0): 5}), ValueError, "offset spec"),
        (lambda a: a.list_offsets({tp(0): "latest"}, isolation="dirty"), ValueError, "isolation"),
        (lambda a: a.delete_records({tp(0): -2}), ValueError, "-1: the high watermark"),
        (lambda a: a.delete_records({tp(0): "5"}), ValueError, "offset >= 0"),
        (lambda a: a.delete_records({tp(0): 1}, timeout=-1), ValueError, "timeout"),
    ],
)
async def test_bad_input_is_refused_before_sending(
    call: Any, error: type[Exception], match: str
) -> None:
    async with asyncio.timeout(LIMIT), AsyncAdmin("127.0.0.1:1", connect_timeout=0.2) as admin:
        with pytest.raises(error, match=match):
            await call(admin)
