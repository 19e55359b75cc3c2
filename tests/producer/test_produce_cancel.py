"""A cancelled ``AsyncProducer.produce()`` took nothing; one that returned took its record.

What ``asyncio.wait_for`` (or ``asyncio.timeout``, or a task cancelled) does to a
``produce()`` waiting for room or for a topic's metadata. The caller's word must be true:
a record whose ``produce()`` raised ``CancelledError`` is neither sent nor reported (a
caller that produces it again must not send it twice), and one whose ``produce()``
returned gets exactly one report and arrives once, in order.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pykaf import AsyncConsumer, TopicPartition
from pykaf._producer._async_producer import AsyncProducer
from pykaf._producer._batches import PYTHON_RECORD_COST, PYTHON_REPORT_COST
from pykaf.broker import Cluster

# What a sent 300-byte record with a future holds, at least (as test_producer_async.py).
HELD_300 = 500 + PYTHON_RECORD_COST + PYTHON_REPORT_COST + 300
FAST: dict[str, Any] = {"request_timeout": 5.0, "delivery_timeout": 20.0, "max_block": 10.0}


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster(brokers=1) as running:
        yield running


async def read_back(cluster: Cluster, tps: list[TopicPartition], count: int) -> list[Any]:
    """Every record of ``tps``, once ``count`` have come (20 s at most)."""
    records: list[Any] = []
    async with AsyncConsumer(cluster.bootstrap, auto_offset_reset="earliest") as consumer:
        await consumer.assign(tps)
        async with asyncio.timeout(20):
            while len(records) < count:
                records.extend(await consumer.poll(0.5))
        records.extend(await consumer.poll(0.2))  # nothing more may come
    return records


async def fill_the_buffer(cluster: Cluster, producer: AsyncProducer, topic: str) -> Any:
    """Two 300-byte records in flight, their answers held: the buffer is full."""
    await producer.send(topic, b"warm")
    hold = cluster.faults.hold_responses("Produce")
    first = producer.send(topic, b"x" * 300)
    second = producer.send(topic, b"y" * 300)
    async with asyncio.timeout(10):
        while producer._accumulator.used < 2 * HELD_300:
            await asyncio.sleep(0.002)
    return hold, [first, second]


async def the_cancelled_one_is_not_there(
    cluster: Cluster, producer: AsyncProducer, topic: str, hold: Any, in_flight: list[Any]
) -> None:
    """Send "after", let the held answers go: the topic holds the records before the
    cancelled one and "after", nothing between."""
    after = producer.send(topic, b"after")
    hold.release()
    await asyncio.gather(*in_flight)
    assert (await after).offset == 3
    values = [r.value for r in await read_back(cluster, [TopicPartition(topic, 0)], 4)]
    assert values == [b"warm", b"x" * 300, b"y" * 300, b"after"]


async def test_a_produce_cancelled_while_it_waits_for_room_is_not_taken(cluster: Cluster) -> None:
    await cluster.create_topic("room", 1)
    reports: list[Any] = []
    options = dict(FAST, buffer_memory=2500, batch_size=500, linger=0)
    async with AsyncProducer(cluster.bootstrap, **options) as producer:
        hold, in_flight = await fill_the_buffer(cluster, producer, "room")

        def report(metadata: Any, error: Any) -> None:
            reports.append((metadata, error))

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(producer.produce("room", b"cancelled", on_delivery=report), 0.1)
        # "after" is behind it in the line, had it stayed.
        await the_cancelled_one_is_not_there(cluster, producer, "room", hold, in_flight)
    # Before: the cancelled record was taken once memory came back, sent and reported.
    assert reports == []


async def test_a_send_whose_future_is_cancelled_before_it_is_taken_takes_nothing(
    cluster: Cluster,
) -> None:
    await cluster.create_topic("gone", 1)
    options = dict(FAST, buffer_memory=2500, batch_size=500, linger=0)
    async with AsyncProducer(cluster.bootstrap, **options) as producer:
        hold, in_flight = await fill_the_buffer(cluster, producer, "gone")
        waiting = producer.send("gone", b"cancelled")  # waits in the backlog for room
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(waiting, 0.1)  # cancels the future
        await the_cancelled_one_is_not_there(cluster, producer, "gone", hold, in_flight)


async def test_a_cancelled_produce_batch_took_a_prefix_and_reported_each_of_it(
    cluster: Cluster,
) -> None:
    await cluster.create_topic("prefix", 1)
    reported: list[bytes] = []
    options = dict(FAST, buffer_memory=2500, batch_size=500, linger=0)
    async with AsyncProducer(cluster.bootstrap, **options) as producer:
        hold, in_flight = await fill_the_buffer(cluster, producer, "prefix")
        items = [b"%03d" % i + b"z" * 297 for i in range(8)]

        def report(metadata: Any, error: Any) -> None:
            assert error is None
            reported.append(items[metadata.offset - 3])

        batch = asyncio.ensure_future(producer.produce_batch("prefix", items, on_delivery=report))
        await asyncio.sleep(0.1)
        batch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await batch
        hold.release()
        await asyncio.gather(*in_flight)
        assert await producer.flush(10) == 0
    records = await read_back(cluster, [TopicPartition("prefix", 0)], 3)
    taken = [r.value for r in records[3:]]
    assert taken == items[: len(taken)]  # a prefix, in order: nothing after a gap
    assert reported == taken


@pytest.mark.parametrize(("custody", "seed"), [("memory", 1), ("journal", 2)])
async def test_random_cancels_take_exactly_the_records_whose_produce_returned(
    cluster: Cluster, tmp_path: Path, custody: str, seed: int
) -> None:
    """Each ``produce()`` under a random timeout (0 to 10 ms, or a second), a small buffer
    (calls wait for room) and a new topic every 100 records (calls wait for metadata).
    Before: 45-73 of 3,000 cancelled calls had their records sent and reported (the
    backlog's task took a record in the same turn of the loop as the cancel, or after it)."""
    await cluster.create_topic("t", 3)
    rnd = random.Random(seed)
    reports: Counter[int] = Counter()

    def report_of(index: int) -> Any:
        def report(_metadata: Any, error: Any) -> None:
            assert error is None, error
            reports[index] += 1

        return report

    options: dict[str, Any] = dict(FAST, buffer_memory=64 * 1024, batch_size=16 * 1024)
    if custody == "journal":
        options.update(custody="journal", journal_dir=str(tmp_path / "journal"))
    returned, cancelled, topics = set(), set(), {"t"}
    async with AsyncProducer(cluster.bootstrap, linger=0.001, **options) as producer:
        for index in range(1500):
            topic = "t" if index % 100 else f"new{index}"
            timeout = rnd.choice([0, 0.0001, 0.001, 0.01, 1.0])
            value = b"%08d" % index + b"v" * 2000
            try:
                await asyncio.wait_for(
                    producer.produce(topic, value, on_delivery=report_of(index)), timeout
                )
                returned.add(index)
                topics.add(topic)
            except TimeoutError:
                cancelled.add(index)
        assert await producer.flush(30) == 0
    assert len(cancelled) > 100  # the sweep did cancel calls, also while they waited
    tps = [TopicPartition(t, p) for t in sorted(topics) for p in range(3 if t == "t" else 1)]
    records = await read_back(cluster, tps, len(returned))
    arrived: Counter[int] = Counter(int(r.value[:8]) for r in records)
    order: defaultdict[tuple[str, int], list[int]] = defaultdict(list)
    for r in records:
        order[(r.topic, r.partition)].append(int(r.value[:8]))
    assert sorted(arrived) == sorted(returned)  # nothing lost, nothing cancelled sent
    assert max(arrived.values()) == 1  # nothing twice
    assert all(run == sorted(run) for run in order.values())  # in call order
    assert {i for i, n in reports.items() if n} == returned
    assert max(reports.values()) == 1


@pytest.mark.parametrize("turns", [1, 3, 13])
async def test_a_close_cancelled_midway_can_be_called_again_and_reports_every_record(
    cluster: Cluster, turns: int
) -> None:
    """Before: the second close() raised CancelledError (the first one's cancelled
    future), in a task nobody had cancelled, every time."""
    await cluster.create_topic("closing", 3)
    reports: Counter[int] = Counter()

    def report_of(index: int) -> Any:
        def report(_metadata: Any, _error: Any) -> None:
            reports[index] += 1

        return report

    producer = AsyncProducer(cluster.bootstrap, linger=0.001, **FAST)
    await producer.send("closing", b"warm")
    hold = cluster.faults.hold_responses("Produce")
    for index in range(200):
        await producer.produce("closing", b"%d" % index, on_delivery=report_of(index))
    closing = asyncio.ensure_future(producer.close(2.0))
    for _ in range(turns):
        await asyncio.sleep(0)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    hold.release()
    async with asyncio.timeout(10):
        failed = await producer.close(2.0)  # finishes what the cancel cut short
    assert failed == 200  # cut short: it waited no more, each record failed with its report
    assert producer.closed
    assert sorted(reports) == list(range(200))
    assert max(reports.values()) == 1
    assert not producer._client._pool._conns
