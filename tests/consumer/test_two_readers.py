"""Two tasks reading one ``AsyncConsumer`` at once, by ``poll()`` and by ``async for``:
between them, every record is handed out once.

Before: records came twice (7 to 168 of 20,000 in a script of two such readers). A
``poll()`` waiting for data woke after the iteration had taken a chunk and stopped
mid-way, took the records after that chunk, and its next call cut the chunk and fetched
its partition again from the first record the iteration had not handed: the records the
poll had already came again. Here that interleaving is made on purpose."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import pytest

from pykaf import AsyncConsumer, Producer, TopicPartition
from pykaf.broker import BlockingCluster

BOUND = 30.0


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=1) as running:
        running.create_topic("t", 1)
        yield running


def produce(cluster: BlockingCluster, first: int, count: int) -> None:
    with Producer(cluster.bootstrap) as producer:
        for i in range(first, first + count):
            producer.produce("t", b"%d" % i)
        assert producer.flush(BOUND) == 0


async def test_a_poll_and_an_iteration_together_hand_each_record_once(
    cluster: BlockingCluster,
) -> None:
    polled: list[int] = []
    iterated: list[int] = []
    holding, resume = asyncio.Event(), asyncio.Event()
    async with AsyncConsumer(cluster.bootstrap, auto_offset_reset="earliest") as consumer:
        await consumer.assign([TopicPartition("t", 0)])

        async def iteration() -> None:
            async for record in consumer:
                iterated.append(record.offset)
                if len(iterated) == 1:
                    holding.set()  # mid-chunk: it handed one record of the first 100
                    await resume.wait()

        async def poller() -> None:
            while len(set(polled) | set(iterated)) < 150:
                polled.extend(r.offset for r in await consumer.poll(timeout=1.0))

        reading = asyncio.create_task(iteration())  # waits for data first: takes the chunk
        await asyncio.sleep(0)
        polling = asyncio.create_task(poller())
        async with asyncio.timeout(BOUND):
            await asyncio.to_thread(produce, cluster, 0, 100)
            await holding.wait()
            await asyncio.to_thread(produce, cluster, 100, 50)  # wakes the waiting poll
            await polling
        resume.set()
        reading.cancel()
    twice = {offset: n for offset, n in Counter(polled + iterated).items() if n > 1}
    assert twice == {}
    assert sorted(polled + iterated) == list(range(150))
