"""Bad input: typed errors that say what to do (async and blocking consumers)."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from consumer_helpers import data_batch, produce_raw, values

from pykaf._client._async_client import AsyncClient
from pykaf._consumer._async_consumer import AsyncConsumer
from pykaf._consumer._consumer import Consumer
from pykaf._consumer._records import TopicPartition
from pykaf._errors import (
    ConsumerClosedError,
    ConsumerStateError,
    InvalidRegexError,
    NoOffsetError,
    NotAssignedError,
)
from pykaf._kafka_errors import OffsetOutOfRangeError, UnknownTopicOrPartitionError
from pykaf.broker import Cluster

LIMIT = 20.0
T0 = TopicPartition("t", 0)


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster(brokers=1, auto_create_topics=False) as running:
        await running.create_topic("t", 2)
        async with AsyncClient(running.bootstrap) as client:
            await produce_raw(client, "t", 0, data_batch(values("v", 10)))
        yield running


async def test_unknown_topic_and_partition(cluster: Cluster) -> None:
    async with AsyncConsumer(cluster.bootstrap) as consumer:
        with pytest.raises(UnknownTopicOrPartitionError, match="'nope' does not exist"):
            await consumer.assign([TopicPartition("nope", 0)])
        with pytest.raises(UnknownTopicOrPartitionError, match="has 2 partition"):
            await consumer.assign([TopicPartition("t", 5)])
        with pytest.raises(UnknownTopicOrPartitionError, match="'nope'"):
            await consumer.end_offsets([TopicPartition("nope", 0)])
        assert consumer.assignment() == set()
    consumer = AsyncConsumer(cluster.bootstrap, topics=["t", "nope"])
    # The topics are looked up in the background: a poll returns within its timeout,
    # and one after the lookup failed raises what is wrong.
    with pytest.raises(UnknownTopicOrPartitionError, match="'nope'"):
        async with asyncio.timeout(LIMIT):
            await poll_until_error(consumer)
    await consumer.close()


async def poll_until_error(consumer: AsyncConsumer) -> None:
    while True:
        await consumer.poll(timeout=1)


@pytest.mark.parametrize("policy", ["earliest", "latest", "error"])
async def test_seek_past_the_end(cluster: Cluster, policy: str) -> None:
    async with AsyncConsumer(
        cluster.bootstrap, auto_offset_reset=policy, retry_backoff=0.01
    ) as consumer:
        await consumer.assign([T0])
        await consumer.seek(T0, 1000)  # accepted: the broker decides at the next fetch
        assert await consumer.position(T0) == 1000
        async with asyncio.timeout(LIMIT):
            if policy == "error":
                with pytest.raises(OffsetOutOfRangeError, match="seek to a valid offset"):
                    await poll_until_error(consumer)
                await consumer.seek(T0, 8)  # the cure the message names
                assert [r.offset for r in await consumer.poll(timeout=5)] == [8, 9]
            elif policy == "earliest":
                got = await consumer.poll(timeout=5)
                assert [r.offset for r in got] == list(range(10))
            else:
                while await consumer.position(T0) != 10:
                    assert await consumer.poll(timeout=0.05) == []


async def test_no_committed_offset_with_reset_error(cluster: Cluster) -> None:
    async with AsyncConsumer(cluster.bootstrap, auto_offset_reset="error") as consumer:
        await consumer.assign([T0])
        with pytest.raises(NoOffsetError, match="seek"):
            await consumer.poll(timeout=1)


async def test_not_assigned_and_bad_arguments(cluster: Cluster) -> None:
    async with AsyncConsumer(cluster.bootstrap) as consumer:
        await consumer.assign([T0])
        other = TopicPartition("t", 1)
        for call in (
            consumer.seek(other, 0),
            consumer.position(other),
            consumer.seek_to_beginning(other),
            consumer.seek_to_timestamp(other, 0),
        ):
            with pytest.raises(NotAssignedError, match="assign\\(\\) or subscribe\\(\\) first"):
                await call
        with pytest.raises(NotAssignedError):
            consumer.pause(other)
        with pytest.raises(ValueError, match="offset >= 0"):
            await consumer.seek(T0, -1)
        with pytest.raises(ValueError, match="max_records"):
            await consumer.poll(max_records=0)
        with pytest.raises(ValueError, match="timeout"):
            await consumer.poll(timeout=-1)
        with pytest.raises(TypeError, match="TopicPartition"):
            await consumer.assign([("t", 0)])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="milliseconds"):
            await consumer.offsets_for_times({T0: -5})
        with pytest.raises(ConsumerStateError, match="group_id"):
            await consumer.commit()
        with pytest.raises(ConsumerStateError, match="group_id"):
            await consumer.committed([T0])
        with pytest.raises(ConsumerStateError, match="group_id"):
            await consumer.subscribe(["t"])
    with pytest.raises(ValueError, match="group_id"):
        AsyncConsumer(cluster.bootstrap, group_id="")
    with pytest.raises(ConsumerStateError, match="group_id"):
        AsyncConsumer(cluster.bootstrap, topics="^t.*")


async def test_invalid_pattern_and_subscribe_after_assign(cluster: Cluster) -> None:
    async with AsyncConsumer(cluster.bootstrap, group_id="g") as consumer:
        with pytest.raises(InvalidRegexError, match="invalid topic pattern"):
            await consumer.subscribe("^[unclosed")
        with pytest.raises(ValueError):
            await consumer.subscribe([])
        await consumer.assign([T0])
        with pytest.raises(ConsumerStateError, match="assign"):
            await consumer.subscribe(["t"])


async def test_pattern_matching_nothing_is_no_error(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    assigned: list[frozenset[TopicPartition]] = []
    async with AsyncConsumer(
        cluster.bootstrap, group_id="g-none", session_timeout=6, heartbeat_interval=1
    ) as consumer:
        with caplog.at_level(logging.WARNING, logger="pykaf.consumer"):
            await consumer.subscribe(re.compile("^nothing-.*"), on_assigned=assigned.append)
        assert "matches no topic" in caplog.text
        assert await consumer.poll(timeout=0.5) == []
        assert consumer.assignment() == set()
        assert assigned == [frozenset()]


async def test_closed_consumer_is_not_reused(cluster: Cluster) -> None:
    consumer = AsyncConsumer(cluster.bootstrap)
    await consumer.assign([T0])
    await consumer.close()
    await consumer.close()  # twice is fine
    for call in (
        consumer.poll(timeout=0),
        consumer.assign([T0]),
        consumer.seek(T0, 0),
        consumer.position(T0),
        consumer.end_offsets([T0]),
    ):
        with pytest.raises(ConsumerClosedError, match="create a new consumer"):
            await call
    with pytest.raises(ConsumerClosedError):
        async for _ in consumer:
            pass

    def blocking() -> None:
        sync = Consumer(cluster.bootstrap)
        sync.assign([T0])
        sync.close()
        sync.close()
        with pytest.raises(ConsumerClosedError, match="create a new Consumer"):
            sync.poll(0)
        with pytest.raises(ConsumerClosedError):
            sync.seek(T0, 0)
        with pytest.raises(ConsumerClosedError):
            next(iter(sync))

    await asyncio.wait_for(asyncio.to_thread(blocking), LIMIT)


async def test_close_wakes_a_blocked_iteration(cluster: Cluster) -> None:
    def blocking() -> None:
        sync = Consumer(cluster.bootstrap)  # latest: nothing will come
        sync.assign([T0])
        it = iter(sync)
        timer = threading.Timer(0.2, sync.close)  # from another thread, while it waits
        timer.start()
        with pytest.raises(ConsumerClosedError):
            next(it)
        timer.join()

    await asyncio.wait_for(asyncio.to_thread(blocking), LIMIT)


def test_settings_are_checked_before_anything_starts() -> None:
    with pytest.raises(TypeError, match="did you mean auto_offset_reset"):
        AsyncConsumer("127.0.0.1:1", auto_offset_rest="earliest")
    with pytest.raises(ValueError, match="'error' is Java's 'none'"):
        Consumer("127.0.0.1:1", auto_offset_reset="none")


async def test_topic_deleted_while_consuming(cluster: Cluster) -> None:
    async with AsyncConsumer(
        cluster.bootstrap, auto_offset_reset="earliest", retry_backoff=0.01
    ) as consumer:
        await consumer.assign([T0])
        assert len(await consumer.poll(timeout=5)) == 10
        await cluster.delete_topic("t")
        async with asyncio.timeout(LIMIT):
            with pytest.raises(UnknownTopicOrPartitionError, match="'t' does not exist"):
                await poll_until_error(consumer)
        await consumer.assign([])  # the cure the message names
        assert await consumer.poll(timeout=0.05) == []
