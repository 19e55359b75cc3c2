"""``AsyncConsumer`` calls cancelled (``asyncio.wait_for``, ``asyncio.timeout``, a task
cancelled) take and lose nothing.

``poll()`` and ``async for`` under random timeouts hand out every record once and in
order. A cancelled ``close()`` still closes the connections: it is cut short at one of
its awaits, and before, the cancel skipped the steps after that await: the consumer said
closed, its client never was, its connections stayed open for good, and a second close()
returned at once (4 of 52 cancelled closes in a sweep of random timeouts).
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from pykaf._consumer._async_consumer import AsyncConsumer
from pykaf._consumer._records import TopicPartition
from pykaf._errors import ConsumerClosedError
from pykaf._producer._async_producer import AsyncProducer
from pykaf.broker import Cluster

TURNS = range(8)  # how many turns of the loop close() gets before the cancel


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster(brokers=1) as running:
        await running.create_topic("t", 3)
        async with AsyncProducer(running.bootstrap) as producer:
            for i in range(30):
                await producer.produce("t", b"%d" % i, partition=i % 3)
        yield running


async def cancel_after(consumer: AsyncConsumer, turns: int) -> None:
    """close() cancelled after ``turns`` turns of the loop, then close() again."""
    closing = asyncio.ensure_future(consumer.close())
    for _ in range(turns):
        await asyncio.sleep(0)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    async with asyncio.timeout(10):
        await consumer.close()  # waits for what the first one left running
    assert consumer.closed
    assert consumer._client.closed  # before: False after 1-3 turns
    assert not consumer._client._pool._conns  # before: 2 connections open for good


@pytest.mark.parametrize("turns", TURNS)
async def test_a_cancelled_close_of_an_assigned_consumer_closes_its_connections(
    cluster: Cluster, turns: int
) -> None:
    consumer = AsyncConsumer(cluster.bootstrap, auto_offset_reset="earliest")
    await consumer.assign([TopicPartition("t", p) for p in range(3)])
    async with asyncio.timeout(10):
        while not await consumer.poll(0.5):
            pass
    await cancel_after(consumer, turns)


@pytest.mark.parametrize("turns", [0, 5, 10, 20])
async def test_a_cancelled_close_of_a_group_member_closes_its_connections(
    cluster: Cluster, turns: int
) -> None:
    consumer = AsyncConsumer(
        cluster.bootstrap, group_id="g", auto_offset_reset="earliest", session_timeout=6.0
    )
    await consumer.subscribe(["t"])
    async with asyncio.timeout(20):
        while not await consumer.poll(0.5):
            pass
    await cancel_after(consumer, turns)


@pytest.mark.parametrize(("group", "seed"), [(False, 1), (True, 2)])
async def test_polls_under_random_timeouts_hand_out_every_record_once_in_order(
    group: bool, seed: int
) -> None:
    rnd = random.Random(seed)
    per_partition = 1000
    async with Cluster(brokers=1) as cluster:
        await cluster.create_topic("many", 3)
        async with AsyncProducer(cluster.bootstrap, linger=0.002) as producer:
            for partition in range(3):
                values = [b"%d" % i for i in range(per_partition)]
                await producer.produce_batch("many", values, partition=partition)
        options: dict[str, Any] = {"auto_offset_reset": "earliest", "enable_auto_commit": False}
        seen: defaultdict[int, list[int]] = defaultdict(list)
        cancelled = 0
        if group:
            consumer = AsyncConsumer(cluster.bootstrap, group_id="sweep", **options)
            await consumer.subscribe(["many"])
        else:
            consumer = AsyncConsumer(cluster.bootstrap, **options)
            await consumer.assign([TopicPartition("many", p) for p in range(3)])
        calls = 0
        async with consumer, asyncio.timeout(60):
            # At least 200 calls: past the end of the log too, where polls wait.
            while sum(len(v) for v in seen.values()) < 3 * per_partition or calls < 200:
                calls += 1
                timeout = rnd.choice([0, 1e-4, 1e-3, 1e-2, 0.1])
                try:
                    if rnd.random() < 0.7:
                        wait, most = rnd.choice([0, 0.001, 0.05]), rnd.choice([1, 7, 100, 500])
                        records = await asyncio.wait_for(consumer.poll(wait, most), timeout)
                        for r in records:
                            seen[r.partition].append(r.offset)
                    else:
                        async with asyncio.timeout(timeout):
                            async for r in consumer:
                                seen[r.partition].append(r.offset)
                                if rnd.random() < 0.05:
                                    break
                except TimeoutError:
                    cancelled += 1
            for r in await consumer.poll(0.3):  # nothing more may come
                seen[r.partition].append(r.offset)
    assert cancelled >= 20  # the sweep did cancel calls
    assert dict(seen) == {p: list(range(per_partition)) for p in range(3)}


@pytest.mark.parametrize("group", [False, True])
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.3])
async def test_a_poll_waiting_when_another_task_closes_raises_consumer_closed(
    cluster: Cluster, group: bool, delay: float
) -> None:
    """Before, in a group: AttributeError (the join's look after its wait, at 0-0.05 s)
    or ClientClosedError (the membership's), which ``except ConsumerClosedError`` missed."""
    if group:
        consumer = AsyncConsumer(cluster.bootstrap, group_id="closing", session_timeout=6.0)
        await consumer.subscribe(["t"])
    else:
        consumer = AsyncConsumer(cluster.bootstrap)
        await consumer.assign([TopicPartition("t", 0)])  # at its end: nothing comes
    polling = asyncio.ensure_future(consumer.poll(10.0))
    await asyncio.sleep(delay)
    async with asyncio.timeout(10):
        await consumer.close()
        with pytest.raises(ConsumerClosedError):
            await polling


CALLS_CLOSED_MIDWAY: dict[str, tuple[str, Callable[[AsyncConsumer], Awaitable[Any]]]] = {
    # name: (the API whose answers are held, the call)
    "position": ("ListOffsets", lambda c: c.position(TopicPartition("t", 0))),
    "end_offsets": ("ListOffsets", lambda c: c.end_offsets([TopicPartition("t", 0)])),
    "committed": ("OffsetFetch", lambda c: c.committed([TopicPartition("t", 0)])),
    "commit": ("OffsetCommit", lambda c: c.commit({TopicPartition("t", 0): 5})),
}


@pytest.mark.parametrize("name", sorted(CALLS_CLOSED_MIDWAY))
async def test_a_call_that_close_ends_midway_raises_consumer_closed(
    cluster: Cluster, name: str
) -> None:
    """Its broker's answer held, the call waits; another task closes the consumer.
    Before: position() waited out request_timeout (30 s; KafkaTimeoutError), end_offsets
    and committed raised ClientClosedError, commit RebalancingCommitError ("poll, then
    commit again", which a closed consumer cannot)."""
    api, call = CALLS_CLOSED_MIDWAY[name]
    consumer = AsyncConsumer(cluster.bootstrap, group_id=f"midway-{name}", session_timeout=6.0)
    await consumer.assign([TopicPartition("t", 0)])
    held = cluster.faults.hold_responses(api)
    try:
        calling = asyncio.ensure_future(call(consumer))
        async with asyncio.timeout(5):
            await held.wait_held(1)
            await consumer.close(1.0)
            with pytest.raises(ConsumerClosedError):
                await calling
    finally:
        held.release()


async def test_a_subscribe_cancelled_while_it_looks_up_its_pattern_changes_nothing(
    cluster: Cluster,
) -> None:
    """Before: the pattern was set before the lookup, and the topic watch followed it
    although the call that set it had been cancelled."""
    consumer = AsyncConsumer(cluster.bootstrap, group_id="pattern", session_timeout=6.0)
    await consumer.subscribe(["t"])
    membership = consumer._assignment.membership
    held = cluster.faults.hold_responses("Metadata")
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(consumer.subscribe(re.compile("other.*")), 0.2)
    finally:
        held.release()
    assert membership._topics.pattern is None
    assert membership._state.subscription == frozenset({"t"})
    await consumer.close()
