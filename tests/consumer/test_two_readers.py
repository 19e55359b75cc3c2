"""Two tasks reading one ``AsyncConsumer`` at once, by ``poll()`` and ``async for`` or by
two ``async for``: between them every record is handed out once, and the position never
passes a record not handed yet.

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


async def test_two_iterations_never_put_the_position_past_what_was_handed(
    cluster: BlockingCluster,
) -> None:
    """The position (what a commit writes) never passes a record not handed yet. Before:
    a second ``async for`` that took the next chunk while the first was mid-way replaced
    the first one's chunk without cutting it, and the position followed the second: the
    first one's records not handed yet were behind it (a commit then, and a crash, would
    have lost them)."""
    first: list[int] = []
    second: list[int] = []
    holding, resume = asyncio.Event(), asyncio.Event()
    positions: list[int] = []
    tp = TopicPartition("t", 0)
    async with AsyncConsumer(cluster.bootstrap, auto_offset_reset="earliest") as consumer:
        await consumer.assign([tp])

        async def iteration(got: list[int], hold: bool) -> None:
            async for record in consumer:
                got.append(record.offset)
                if hold and len(got) == 1:
                    holding.set()  # mid-chunk: it handed one record of the first 100
                    await resume.wait()
                elif not hold:
                    positions.append(await consumer.position(tp))
                    if len(set(first) | set(second)) >= 150:
                        return

        holder = asyncio.create_task(iteration(first, True))  # takes the first chunk
        await asyncio.sleep(0)
        other = asyncio.create_task(iteration(second, False))
        # (Before, the second waited for ever here: the first one held records 1-99.)
        async with asyncio.timeout(BOUND / 3):
            await asyncio.to_thread(produce, cluster, 0, 100)
            await holding.wait()
            await asyncio.to_thread(produce, cluster, 100, 50)
            await other
        resume.set()
        holder.cancel()
    handed = set(first) | set(second)
    for position in positions:  # nothing before a position is left unhanded
        assert set(range(position)) <= handed, position
    assert sorted(first + second) == list(range(150))
